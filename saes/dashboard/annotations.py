"""Per-residue annotation tracks aligned with the dashboard's rows, and each latent's best F1.

    ann = {"TRANSMEM": [np.array([0, 0, 1, 1, ...], bool), ...],   # one array per example, one entry
           "ZN_FING":  [...]}                                        # per selected position (ESM: residue)
    labels = align(ann, acts)             # (rows, tracks) bool
    best = best_f1(acts, labels, list(ann), latent_max=summary.max)
    best["f1"][f], best["track"][f], best["threshold"][f]

The F1 is InterPLM's (Simon & Zou 2024), as :mod:`saes.annotation_stats` implements it: precision over residues where ``a / max_a > t`` against
per-domain recall, the best over the normalised thresholds and tracks. It is measured on the
dashboard's own data (in-sample, threshold chosen on it) — a ranking aid, not a held-out score;
``interp demo`` reports held-out F1s.
"""
from __future__ import annotations

import numpy as np

from ..errors import DataError
from .gather import LatentActivations


def align(annotations: dict, acts: LatentActivations) -> np.ndarray:
    """``(n_rows, n_tracks)`` bool labels: ``annotations[track][example][ordinal]`` for every row."""
    n_ex = len(acts.tokens)
    per_ex = np.bincount(acts.example_of_row, minlength=n_ex)
    out = np.zeros((acts.n_rows, len(annotations)), dtype=bool)
    for j, (track, masks) in enumerate(annotations.items()):
        masks = list(masks)
        if len(masks) < n_ex:
            raise DataError(f"Annotation track {track!r} has {len(masks)} examples but the data gave {n_ex}; "
                            "pass one mask per example, in data order.")
        lens = np.array([len(m) for m in masks[:n_ex]], dtype=np.int64)
        full = acts.meta.get("stopped_at_max_tokens") is False
        bad = np.flatnonzero(lens != per_ex) if full else np.flatnonzero(lens < per_ex)
        if len(bad):
            e = int(bad[0])
            raise DataError(f"Annotation track {track!r}, example {e}: {lens[e]} entries, but the SAE read "
                            f"{per_ex[e]} positions of it (ESM: residues). Masks must have one entry per selected "
                            f"position; {len(bad)} example(s) disagree.")
        off = np.zeros(n_ex + 1, dtype=np.int64)
        np.cumsum(lens, out=off[1:])
        flat = np.concatenate([np.asarray(m, dtype=bool) for m in masks[:n_ex]]) if n_ex else np.zeros(0, bool)
        out[:, j] = flat[off[acts.example_of_row] + acts.ordinal_of_row]
    return out


def best_f1(acts: LatentActivations, labels: np.ndarray, tracks: list, latent_max, *, chunk_rows: int = 16384) -> dict:
    """Each latent's best InterPLM F1 over ``tracks`` and thresholds (see module doc)."""
    import torch

    from ..annotation_stats import NORM_THRESHOLDS, StatBatch, annotation_stats

    F, R = acts.n_latents, acts.n_rows
    ex = acts.example_of_row
    # batches of whole examples (a domain must lie inside one batch)
    cuts, last = [0], 0
    for r in np.flatnonzero(np.diff(ex)) + 1:
        if r - last >= chunk_rows:
            cuts.append(int(r))
            last = r
    cuts.append(R)
    order = np.argsort(acts.rows, kind="stable")
    rows, cols, vals = acts.rows[order], acts.cols[order], acts.vals[order]

    def batches():
        for a, b in zip(cuts[:-1], cuts[1:]):
            i, j = np.searchsorted(rows, [a, b])
            idx = torch.from_numpy(np.stack([rows[i:j] - a, cols[i:j].astype(np.int64)]))
            x = torch.sparse_coo_tensor(idx, torch.from_numpy(vals[i:j]), (b - a, F),
                                        check_invariants=False).coalesce()
            yield StatBatch(x, torch.from_numpy(labels[a:b]), protein=torch.from_numpy(ex[a:b].astype(np.int64)))

    counts = annotation_stats(batches, tracks, F, latent_max=np.maximum(np.asarray(latent_max), 1e-12))
    f1 = counts.metrics()["f1"]                                # (C, F, T)
    C, _, T = f1.shape
    flat = f1.transpose(1, 0, 2).reshape(F, C * T)
    arg = flat.argmax(1)
    return {"f1": flat[np.arange(F), arg], "track": [tracks[a // T] for a in arg],
            "threshold": np.asarray(NORM_THRESHOLDS)[arg % T], "per_track": f1.max(2).T}
