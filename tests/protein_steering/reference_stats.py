"""A straightforward per-latent reference for :mod:`saes.annotation_stats` (tests and benchmark).

One latent at a time and one concept at a time (domain maxima with ``np.maximum.reduceat``), with numpy and
``scipy.stats.fisher_exact`` — the way the seed code computed its counts — so the vectorised
implementation can be checked number for number and timed against it.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import fisher_exact


def bh_loop(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg step-up, written out."""
    flat = p.ravel()
    m = len(flat)
    order = np.argsort(flat, kind="stable")
    q = np.empty(m)
    running = 1.0
    for r in range(m - 1, -1, -1):
        running = min(running, flat[order[r]] * m / (r + 1))
        q[order[r]] = running
    return q.reshape(p.shape)


def reference_stats(acts, labels, domains, *, latents=None, latent_max=None, raw_thresholds=(0.01, 0.1, 1.0),
                    norm_thresholds=(0.0, 0.15, 0.5, 0.6, 0.8), fdr=True) -> dict:
    """``acts`` (N, F) dense numpy or a column getter ``f -> (N,)``; ``labels`` (N, C) bool;
    ``domains``: list over concepts of lists of row-index arrays. Returns the metrics dict of
    ``AnnotationCounts.metrics()`` restricted to ``latents`` (all by default)."""
    get = acts if callable(acts) else (lambda f: acts[:, f])
    N, C = labels.shape
    latents = list(range(acts.shape[1])) if latents is None else list(latents)
    R, T, L = len(raw_thresholds), len(norm_thresholds), len(latents)
    out = {k: np.zeros((C, L, R)) for k in ("pos_above", "neg_above")}
    out.update({k: np.zeros((C, L, T)) for k in ("precision", "recall_residue", "recall_domain", "f1", "f1_residue")})
    out.update({k: np.zeros((C, L)) for k in ("fisher_p", "odds_ratio")})
    # per concept: the rows of its domains back to back, and where each domain starts
    flat_domains = [(np.concatenate(d) if d else np.zeros(0, int),
                     np.cumsum([0] + [len(r) for r in d[:-1]]) if d else []) for d in domains]
    for j, f in enumerate(latents):
        a = np.asarray(get(f), dtype=np.float64)
        mx = float(latent_max[f]) if latent_max is not None else float(a.max(initial=0.0))
        an = a / max(mx, np.finfo(np.float32).tiny)
        dmax = [np.maximum.reduceat(an[cat], off) if len(off) else np.zeros(0) for cat, off in flat_domains]
        for c in range(C):
            pos = labels[:, c]
            for r, t in enumerate(raw_thresholds):
                out["pos_above"][c, j, r] = np.sum((a > t) & pos)
                out["neg_above"][c, j, r] = np.sum((a > t) & ~pos)
            for r, t in enumerate(norm_thresholds):
                active = an > t
                tp = np.sum(active & pos)
                prec = tp / active.sum() if active.sum() else 0.0
                rec = tp / pos.sum() if pos.sum() else 0.0
                hit = int(np.sum(dmax[c] > t))
                rec_d = hit / len(domains[c]) if domains[c] else 0.0
                out["precision"][c, j, r], out["recall_residue"][c, j, r] = prec, rec
                out["recall_domain"][c, j, r] = rec_d
                out["f1"][c, j, r] = 2 * prec * rec_d / (prec + rec_d) if prec + rec_d else 0.0
                out["f1_residue"][c, j, r] = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
            active = a > 0
            k, n, K = int(np.sum(active & pos)), int(active.sum()), int(pos.sum())
            odds, p = fisher_exact([[k, n - k], [K - k, N - K - n + k]], alternative="greater")
            out["fisher_p"][c, j], out["odds_ratio"][c, j] = p, odds
    if fdr:
        out["fdr_q"] = bh_loop(out["fisher_p"])
    return out
