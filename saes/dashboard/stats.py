"""Per-latent summaries of :class:`~saes.dashboard.gather.LatentActivations`, all latents at once.

    s = summarize(acts, top_k=20, n_bands=5, band_size=4, seed=0)
    s.density[f], s.max[f], s.mean[f]         # fraction of rows where f fires, max, mean when firing
    s.top[f]                                   # rows of f's top_k activations, largest first
    s.bands[f]                                 # [(lo, hi, count, rows sampled in (lo, hi])], highest band first
    s.hist_counts[f], s.hist_edges(f)          # histogram of f's non-zero activations

Definitions follow SAEDashboard (``sae_dashboard/sequence_data_generator.py``,
``get_indices_dict``): the top-k group is the k largest activations; the interval groups split
``[0, max]`` into ``n_bands`` equal intervals and show a uniform random sample of ``band_size``
tokens from each, labelled with the share of all tokens that fall in it. One difference: their
lowest interval also holds the tokens where the latent is 0 (most tokens); ours holds only
tokens where it fires, so every sampled context shows the latent active. Zero-activation tokens
are counted in ``density`` instead. The histogram (``n_bins`` equal bins over ``(0, max]``) is
SAEDashboard's ``ActsHistogramData`` of non-zero activations. No Python loop over latents:
one sort of the non-zeros by (latent, value) serves every statistic.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .gather import LatentActivations


@dataclass
class Summary:
    n_rows: int
    density: np.ndarray      # (F,)
    count: np.ndarray        # (F,) rows where the latent fires
    max: np.ndarray          # (F,)
    mean: np.ndarray         # (F,) mean over firing rows (0 for dead latents)
    top: list                # per latent: int64 rows, largest activation first (<= top_k)
    top_vals: list           # per latent: their activations
    bands: list              # per latent: list of dicts {lo, hi, count, rows, vals}, highest band first
    hist_counts: np.ndarray  # (F, n_bins)
    n_bins: int

    def hist_edges(self, f: int) -> np.ndarray:
        return np.linspace(0.0, float(self.max[f]), self.n_bins + 1)


def summarize(acts: LatentActivations, *, top_k: int = 20, n_bands: int = 5, band_size: int = 4, n_bins: int = 32,
              seed: int = 0) -> Summary:
    F, R = acts.n_latents, acts.n_rows
    cols, vals, rows = acts.cols.astype(np.int64), acts.vals, acts.rows
    order = np.lexsort((-vals, cols))                      # by latent, then value descending
    cols, vals, rows = cols[order], vals[order], rows[order]
    count = np.bincount(cols, minlength=F)
    start = np.zeros(F + 1, dtype=np.int64)
    np.cumsum(count, out=start[1:])
    has = count > 0
    mx = np.zeros(F, np.float32)
    mx[has] = vals[start[:-1][has]]
    sums = np.bincount(cols, weights=vals, minlength=F)
    mean = np.where(has, sums / np.maximum(count, 1), 0.0)
    rank = np.arange(len(cols)) - start[cols]             # 0 = largest of its latent
    top, top_vals = _split(rows, vals, cols, rank < top_k, F)
    scale = np.where(mx > 0, mx, 1.0)[cols]
    frac = vals / scale
    hb = np.clip(np.ceil(frac * n_bins).astype(np.int64) - 1, 0, n_bins - 1)   # bins (lo, hi], first includes 0+
    hist = np.bincount(cols * n_bins + hb, minlength=F * n_bins).reshape(F, n_bins)
    bb = np.clip(np.ceil(frac * n_bands).astype(np.int64) - 1, 0, n_bands - 1)
    band_count = np.bincount(cols * n_bands + bb, minlength=F * n_bands).reshape(F, n_bands)
    # uniform sample without replacement per (latent, band): the band_size smallest random keys
    key = np.random.default_rng(seed).random(len(cols))
    grp = cols * n_bands + bb
    o2 = np.lexsort((key, grp))
    gstart = np.zeros(F * n_bands + 1, dtype=np.int64)
    np.cumsum(np.bincount(grp, minlength=F * n_bands), out=gstart[1:])
    keep = np.zeros(len(cols), bool)
    keep[o2[(np.arange(len(o2)) - gstart[grp[o2]]) < band_size]] = True
    bands = [[] for _ in range(F)]
    sel = np.flatnonzero(keep)
    sel = sel[np.lexsort((-vals[sel], -bb[sel], cols[sel]))]
    per_f = np.split(sel, np.searchsorted(cols[sel], np.arange(1, F)))
    for f in np.flatnonzero(has):
        s = per_f[f]
        for j in range(n_bands - 1, -1, -1):
            m = s[bb[s] == j]
            bands[f].append({"lo": float(mx[f]) * j / n_bands, "hi": float(mx[f]) * (j + 1) / n_bands,
                             "count": int(band_count[f, j]), "rows": rows[m], "vals": vals[m]})
    return Summary(R, count / max(R, 1), count, mx, mean, top, top_vals, bands, hist, n_bins)


def _split(rows, vals, cols, keep, F):
    idx = np.flatnonzero(keep)
    cuts = np.searchsorted(cols[idx], np.arange(1, F))
    return np.split(rows[idx], cuts), np.split(vals[idx], cuts)


def logit_effects(sae, model, *, k: int = 10, vocab_ids=None) -> dict:
    """Top promoted / suppressed tokens of every latent through the unembedding: ``W_dec @ W_U``.

    SAEDashboard's definition (``feature_data_generator.py``: ``feature_resid_dir @ W_U``): the
    direct path of the latent's decoder direction into the logits, without the final norm. For
    ESM the unembedding is the LM head's decoder (tied to the token embeddings; the head's
    dense/GELU/LayerNorm before it are skipped) and ``vocab_ids`` restricts it to the amino
    acids. Returns ``{"top_ids", "top_vals", "bottom_ids", "bottom_vals"}`` ((F, k) arrays) or
    ``{"unavailable": reason}`` when the model exposes no unembedding.
    """
    import torch

    W_U = unembedding(model)
    if W_U is None:
        return {"unavailable": "the model exposes no unembedding (get_output_embeddings / W_U / lm_head)"}
    W_dec = sae.W_dec.detach().float().cpu()
    if W_dec.shape[1] != W_U.shape[0]:
        return {"unavailable": f"the SAE writes {W_dec.shape[1]}-dim vectors but the unembedding reads "
                               f"{W_U.shape[0]} (the SAE's site is not in the residual stream)"}
    ids = torch.arange(W_U.shape[1]) if vocab_ids is None else torch.as_tensor(list(vocab_ids), dtype=torch.long)
    out = {"top_ids": [], "top_vals": [], "bottom_ids": [], "bottom_vals": []}
    k = min(k, len(ids))
    with torch.no_grad():
        for s in range(0, W_dec.shape[0], 1024):
            eff = W_dec[s:s + 1024] @ W_U[:, ids]
            t = eff.topk(k, dim=1)
            b = eff.topk(k, dim=1, largest=False)
            out["top_ids"].append(ids[t.indices].numpy())
            out["top_vals"].append(t.values.numpy())
            out["bottom_ids"].append(ids[b.indices].numpy())
            out["bottom_vals"].append(b.values.numpy())
    return {key: np.concatenate(v) for key, v in out.items()}


def unembedding(model):
    """``(d_model, vocab)`` float32 CPU unembedding of a wrapped model, or None."""
    import torch

    inner = model.model
    W = getattr(inner, "W_U", None)                         # TransformerLens: (d_model, vocab)
    if isinstance(W, torch.Tensor):
        return W.detach().float().cpu()
    get = getattr(inner, "get_output_embeddings", None)
    mod = get() if callable(get) else None
    if mod is None:                                          # fair-esm: lm_head.weight (vocab, d)
        head = getattr(inner, "lm_head", None)
        w = getattr(head, "weight", None)
        return w.detach().float().cpu().t() if isinstance(w, torch.Tensor) else None
    w = getattr(mod, "weight", None)
    return w.detach().float().cpu().t() if isinstance(w, torch.Tensor) else None
