"""Chance level of the best-latent F1: what an annotation's "best latent" is worth.

    from steering.protein.chance import always_on_f1, chance_f1
    always_on_f1(n_pos=893, n_tokens=1000)           # 2π/(1+π), π = 0.893: 0.943
    ch = chance_f1(sae, cache_va, cache_te, tracks, seed=0)
    ch["TRANSMEM"]    # {"always_on": .., "random_latent": .., "chance_f1": max of the two}

Two baselines for InterPLM's F1 (per-residue precision, per-domain recall; Simon & Zou 2024):

* **always on**: a latent active at every residue recalls every domain and has precision equal
  to the annotation's residue base rate π, so F1 = 2π / (1 + π). An annotation covering most
  residues (TMbed's "inside"/"outside" classes) gets a high F1 for free.
* **best random latent**: every latent's activations with the residues shuffled (one seeded
  permutation per batch of proteins, the same for all latents, labels left in place), then the
  pipeline's own selection — best (latent, threshold) on validation, F1 on test. This keeps each
  latent's sparsity and the selection's optimism over ``F`` latents × 5 thresholds, and removes
  only the link between activations and annotations (a permutation null).

An annotation's best latent "beats chance" when its test F1 exceeds both.
"""
from __future__ import annotations

import numpy as np
import torch


def always_on_f1(n_pos, n_tokens) -> float:
    """F1 (precision × domain recall) of a latent active at every residue: 2π/(1+π)."""
    pi = float(n_pos) / max(float(n_tokens), 1.0)
    return 2 * pi / (1 + pi) if n_pos > 0 else 0.0


def _shuffled_stream(sae, cache: list, seed: int):
    from saes.annotation_stats import StatBatch

    from .latents import encode

    def it():
        g = torch.Generator().manual_seed(seed)
        for c in cache:
            a = encode(sae, c["x"])
            yield StatBatch(a[torch.randperm(len(a), generator=g)], c["labels"], c["domains"])

    return it


def chance_f1(sae, cache_va: list, cache_te: list, tracks: list, test_counts, *, seed: int = 0) -> dict:
    """Per annotation: ``always_on`` (on test), ``random_latent`` (best shuffled latent chosen on
    validation, F1 on test) and ``chance_f1`` (the larger)."""
    from saes.annotation_stats import annotation_stats, best_pairs

    F = int(sae.cfg.d_sae)
    val = annotation_stats(_shuffled_stream(sae, cache_va, seed), tracks, F)
    test = annotation_stats(_shuffled_stream(sae, cache_te, seed + 1), tracks, F, latent_max=val.latent_max)
    best = best_pairs(val, test, top=1).set_index("concept")
    out = {}
    for i, t in enumerate(tracks):
        ao = always_on_f1(int(test_counts.n_pos[i]), test_counts.n_tokens)
        rl = float(best.loc[t, "test_f1"])
        out[t] = {"always_on": ao, "random_latent": rl, "random_latent_id": int(best.loc[t, "latent"]),
                  "chance_f1": max(ao, rl)}
    return out


def beats_chance(f1: float, chance: dict, margin: float = 0.0) -> bool:
    return bool(np.isfinite(f1) and f1 > chance["chance_f1"] + margin)
