"""The modality gap per layer (Serra et al. 2025, Sec. 3).

Two measures on the residual stream (``resid_post.L``) of image and text tokens:

* cosine similarity between text-token and image-token residuals of the same example:
  median and interquartile range per layer (a large gap = low similarity);
* homogeneity of density-peak clusters with respect to the modality: residuals are
  L2-normalised, their intrinsic dimension estimated with Gride, log-densities with the
  k-NN estimator at that dimension, and clusters found with Advanced Density Peaks (Z = 1.2);
  scikit-learn's homogeneity score against the modality labels is 1 when no cluster mixes
  image and text tokens (the representations are segregated by modality).

    gap = modality_gap(hm, examples)          # DataFrame: layer × {cos_median, cos_q1, cos_q3, cos_iqr,
    gap.to_csv("gap.csv")                     #   homogeneity, n_clusters, intrinsic_dim, ...}

Uses :mod:`interp.geometry` (imported here, lazily) for Gride, densities and ADP.
"""
from __future__ import annotations

import numpy as np
import torch

from .errors import NarrowGateError


def _sample_positions(mask: torch.Tensor, k: int, g: torch.Generator) -> torch.Tensor:
    out = torch.zeros_like(mask)
    for b in range(mask.shape[0]):
        idx = mask[b].nonzero().flatten()
        out[b, idx[torch.randperm(len(idx), generator=g)[:k]]] = True
    return out


@torch.no_grad()
def collect_modality_tokens(hm, examples, *, layers=None, tokens_per_example: int = 16, batch_size: int = 8,
                            task: str = "vqa", template=None, seed: int = 0):
    """Residuals of up to ``tokens_per_example`` text and image tokens per example.

    Returns ``(reps, modality, example_index)``: ``reps[L]`` is ``(N, d)`` float32 on CPU,
    ``modality`` is ``(N,)`` with 1 = image, 0 = text.
    """
    import hooks

    from .ablations import layer_window
    from .layout import image_layout
    from .tasks import encode

    layers = layer_window(hm.n_layers, layers=layers)
    g = torch.Generator().manual_seed(seed)
    reps = {L: [] for L in layers}
    mods, owners = [], []
    for start in range(0, len(examples), batch_size):
        inputs = encode(hm, examples[start : start + batch_size], task, template)
        lay = image_layout(hm, inputs)
        img = _sample_positions(lay.image.cpu(), tokens_per_example, g)
        txt = _sample_positions(lay.text.cpu(), tokens_per_example, g)
        sel = (img | txt).to(lay.image.device)
        res = hm.run(inputs, [hooks.Cache([f"resid_post.{L}" for L in layers], positions=sel, layout="flat",
                                          dtype=torch.float32)])
        for L in layers:
            reps[L].append(res.cache[f"resid_post.{L}"])
        m = sel.cpu()
        mods.append(img[m].long())
        owners.append(torch.arange(m.shape[0]).repeat_interleave(m.sum(1)) + start)
    return {L: torch.cat(v) for L, v in reps.items()}, torch.cat(mods), torch.cat(owners)


def cosine_stats(X: torch.Tensor, modality: torch.Tensor, owner: torch.Tensor) -> dict:
    """Median / quartiles of cos(text token, image token) over same-example pairs."""
    Xn = torch.nn.functional.normalize(X.float(), dim=-1)
    vals = []
    for e in owner.unique():
        m = owner == e
        t, i = Xn[m & (modality == 0)], Xn[m & (modality == 1)]
        if len(t) and len(i):
            vals.append((t @ i.T).flatten())
    if not vals:
        raise NarrowGateError("No example has both text and image tokens; the modality gap needs both.")
    v = torch.cat(vals).numpy()
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return {"cos_median": float(med), "cos_q1": float(q1), "cos_q3": float(q3), "cos_iqr": float(q3 - q1),
            "n_pairs": int(len(v))}


def adp_homogeneity(X: torch.Tensor, modality: torch.Tensor, *, Z: float = 1.2, k: int = 16, maxk: int = 64,
                    gride_ranks=(8, 16)) -> dict:
    """Homogeneity of ADP clusters of L2-normalised residuals w.r.t. the modality labels."""
    from interp.geometry import compute_clustering_adp, compute_density_knn, compute_id_gride, homogeneity, knn

    Xn = torch.nn.functional.normalize(X.double(), dim=-1)
    Xn, inv = torch.unique(Xn, dim=0, return_inverse=True)  # identical points break the estimators
    first = torch.full((len(Xn),), len(inv), dtype=torch.long).scatter_reduce(0, inv, torch.arange(len(inv)), "amin")
    mod = modality[first]
    n = len(Xn)
    maxk = min(maxk, n - 1)
    if n < 2 * gride_ranks[1] or maxk < max(k, gride_ranks[1]):
        raise NarrowGateError(f"Only {n} distinct token representations; the ADP analysis needs at least "
                              f"{2 * gride_ranks[1]} (use more examples or tokens_per_example).")
    nb = knn(Xn, maxk, device="cpu")
    d = compute_id_gride(nb, n1=gride_ranks[0], n2=gride_ranks[1]).id
    dens = compute_density_knn(nb, k=k, intrinsic_dim=d)
    adp = compute_clustering_adp(nb, dens, Z=Z)
    return {"homogeneity": homogeneity(mod.numpy(), adp.labels.cpu().numpy()), "n_clusters": int(adp.n_clusters),
            "intrinsic_dim": float(d), "n_points": int(n)}


def modality_gap(hm, examples, *, layers=None, tokens_per_example: int = 16, adp: bool = True, Z: float = 1.2,
                 batch_size: int = 8, task: str = "vqa", template=None, seed: int = 0):
    """Per-layer cosine statistics and ADP homogeneity (see the module docstring); a DataFrame."""
    import pandas as pd

    reps, mod, owner = collect_modality_tokens(hm, examples, layers=layers, tokens_per_example=tokens_per_example,
                                               batch_size=batch_size, task=task, template=template, seed=seed)
    rows = []
    for L, X in reps.items():
        row = {"layer": L, **cosine_stats(X, mod, owner)}
        if adp:
            row.update(adp_homogeneity(X, mod, Z=Z))
        rows.append(row)
    return pd.DataFrame(rows).set_index("layer")
