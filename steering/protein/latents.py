"""SAE latent activations of cached residue activations (shared by the pipeline, its report,
the chance baselines and the steering arm).

    from steering.protein.latents import encode, latent_stream
    z = encode(sae, cache[0]["x"])            # (rows, d_sae) float32 on the CPU, encoded in chunks
    stats = annotation_stats(latent_stream(sae, cache), tracks, sae.cfg.d_sae, ...)
"""
from __future__ import annotations

import torch


@torch.no_grad()
def encode(sae, x: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    """``sae.encode`` over the rows of ``x`` in chunks of ``chunk`` rows (on the SAE's device and
    dtype), returned as float32 on the CPU."""
    dev, dt = sae.W_dec.device, sae.W_dec.dtype
    return torch.cat([sae.encode(x[i:i + chunk].to(dev, dt)).float().cpu() for i in range(0, len(x), chunk)])


def latent_stream(sae, cache: list):
    """A re-iterable of :class:`StatBatch` es for :func:`saes.annotation_stats.annotation_stats`."""
    from saes.annotation_stats import StatBatch

    return lambda: (StatBatch(encode(sae, c["x"]), c["labels"], c["domains"]) for c in cache)
