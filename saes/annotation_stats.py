"""Latent ↔ annotation statistics: every latent × concept pair at once, over streamed token batches.

    from saes.annotation_stats import StatBatch, annotation_stats, best_pairs
    def batches():                      # re-iterable: called once per pass
        for acts, labels, domains in my_stream():      # acts (N, F), labels (N, C) bool
            yield StatBatch(acts, labels, domains)     # domains: DomainIndex or None (runs)
    val = annotation_stats(batches_val, concepts, n_latents=F)            # 2 passes: max, counts
    test = annotation_stats(batches_test, concepts, F, latent_max=val.latent_max)
    table = best_pairs(val, test, top=5)       # pandas: chosen on validation, reported on test
    m = test.metrics()                          # dict of (C, F[, T]) numpy arrays

Three views of each (latent f, concept c) pair, for activations ``a`` of ``F`` latents on ``N``
tokens labelled with ``C`` (multi-label) concepts:

* **counts** (the seed code's view): tokens with ``a > t`` for raw thresholds ``t`` in
  :data:`RAW_THRESHOLDS` among positive and among negative tokens of the concept;
* **InterPLM** (Simon & Zou 2024): ``a`` divided by the latent's maximum (over the data of the
  first pass, or ``latent_max``), thresholds :data:`NORM_THRESHOLDS`; precision = positives
  among active tokens; per-residue recall = active positives / positives; per-domain recall =
  domains (contiguous annotated spans, or the dataset's feature spans) with at least one active
  residue / domains; ``f1`` = F1 of precision and per-domain recall (InterPLM's score),
  ``f1_residue`` = F1 of precision and per-residue recall;
* **enrichment**: one-sided Fisher's exact test of "active (``a > 0``)" vs "in the concept"
  (hypergeometric survival function, vectorised over all pairs), Benjamini & Hochberg (1995)
  FDR q-values over all ``C × F`` pairs, and the odds ratio.

Every count is a histogram: each positive activation falls in one threshold bucket and
``torch.bincount`` adds it to its ``(concept, latent, bucket)`` cell — labels are joined to
activations by expanding each non-zero entry over its row's concepts (and over the domains
its row belongs to, for the per-domain maximum). No Python loop over latents or concepts;
device memory is bounded by one batch; tensors stay on the activations' device (GPU or CPU).
Activations ``<= 0`` never count (every threshold is ``>= 0``), so sparse (TopK) activations
cost in proportion to their non-zeros; dense ``(N, F)`` tensors and ``torch.sparse`` COO
tensors are both accepted. A domain must lie inside one batch (batch whole proteins).
Garcia & Ansuini (2025) use the same statistics to pick latents for steering ESM-2.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Optional, Sequence, Union

import numpy as np
import torch

from .errors import SAEError

RAW_THRESHOLDS = (0.01, 0.1, 1.0)
NORM_THRESHOLDS = (0.0, 0.15, 0.5, 0.6, 0.8)


class AnnotationStatsError(SAEError):
    """Inputs to the annotation statistics that do not fit together (shapes, thresholds, splits)."""


@dataclass
class DomainIndex:
    """Domains of one batch: ``rows[i]`` (token row) belongs to domain ``domain[i]``; domain ``d``
    is an instance of concept ``concept[d]``. A row may belong to several domains."""

    rows: torch.Tensor      # (M,) long
    domain: torch.Tensor    # (M,) long, 0..D-1
    concept: torch.Tensor   # (D,) long, 0..C-1


@dataclass
class StatBatch:
    acts: torch.Tensor                       # (N, F) float, dense or sparse COO
    labels: torch.Tensor                     # (N, C) bool
    domains: Optional[DomainIndex] = None    # None: maximal runs of each label (within ``protein``)
    protein: Optional[torch.Tensor] = None   # (N,) protein id per row, splits runs


def runs_as_domains(labels: torch.Tensor, protein: Optional[torch.Tensor] = None) -> DomainIndex:
    """Domains = maximal runs of consecutive positive rows of each concept (not crossing proteins)."""
    lab = labels.t().bool()                                   # (C, N)
    C, N = lab.shape
    prev = torch.zeros_like(lab)
    prev[:, 1:] = lab[:, :-1]
    if protein is not None:
        same = torch.ones(N, dtype=torch.bool, device=lab.device)
        same[1:] = protein[1:].to(lab.device) == protein[:-1].to(lab.device)
        prev &= same[None, :]
    start = lab & ~prev
    c_idx, rows = lab.nonzero(as_tuple=True)                  # concept-major, rows ascending
    run_id = start.flatten().cumsum(0) - 1                    # id of the run each entry is in
    dom = run_id[c_idx * N + rows]
    s_c, _ = start.nonzero(as_tuple=True)
    return DomainIndex(rows, dom, s_c)


def _entries(acts: torch.Tensor) -> tuple:
    """(rows, cols, values) of the positive entries of a dense or sparse (N, F) tensor."""
    if acts.is_sparse:
        a = acts.coalesce()
        (rows, cols), vals = a.indices(), a.values()
        keep = vals > 0
        return rows[keep], cols[keep], vals[keep]
    rows, cols = (acts > 0).nonzero(as_tuple=True)
    return rows, cols, acts[rows, cols]


def _expand(rows: torch.Tensor, group_rows: torch.Tensor, group_val: torch.Tensor, n_rows: int) -> tuple:
    """Join entries (at ``rows``) with a row-sorted membership list (``group_rows`` → ``group_val``):
    returns (entry index, member value) for every (entry, membership of its row) pair."""
    dev = rows.device
    cnt = torch.bincount(group_rows, minlength=n_rows)
    start = cnt.cumsum(0) - cnt
    k = cnt[rows]
    entry = torch.repeat_interleave(torch.arange(rows.numel(), device=dev), k)
    first = torch.repeat_interleave(k.cumsum(0) - k, k)
    offset = torch.arange(entry.numel(), device=dev) - first
    return entry, group_val[start[rows[entry]] + offset]


def _above(hist: torch.Tensor) -> torch.Tensor:
    """Bucket histogram (..., T+1) -> counts strictly above each of the T thresholds (..., T)."""
    return hist.flip(-1).cumsum(-1).flip(-1)[..., 1:]


def _check_thresholds(name, ts) -> torch.Tensor:
    t = torch.as_tensor(list(ts), dtype=torch.float64)
    if t.numel() == 0 or (t < 0).any() or (t[1:] <= t[:-1]).any():
        raise AnnotationStatsError(f"{name} must be increasing and >= 0, got {list(ts)}.")
    return t


class AnnotationAccumulator:
    """Streams :class:`StatBatch` es into the sufficient statistics of :class:`AnnotationCounts`.

    ``latent_max`` (F,) is the per-latent scale of the normalised thresholds (from a first
    pass, see :func:`latent_max_of`). ``device``: where counts live (default: each batch's).
    """

    def __init__(self, concepts: Sequence[str], n_latents: int, latent_max, *, raw_thresholds=RAW_THRESHOLDS,
                 norm_thresholds=NORM_THRESHOLDS, device=None):
        self.concepts, self.F = list(concepts), int(n_latents)
        self.C = len(self.concepts)
        if self.C == 0 or self.F < 1:
            raise AnnotationStatsError(f"Need >= 1 concept and latent, got {self.C} concepts, {self.F} latents.")
        self.raw_t = _check_thresholds("raw_thresholds", raw_thresholds)
        self.norm_t = _check_thresholds("norm_thresholds", norm_thresholds)
        lm = torch.as_tensor(latent_max, dtype=torch.float32).flatten()
        if lm.numel() != self.F:
            raise AnnotationStatsError(f"latent_max has {lm.numel()} values for {self.F} latents.")
        self.latent_max = lm
        self.device = torch.device(device) if device is not None else None
        self._acc: Optional[dict] = None

    def _init(self, dev):
        R, T, C, F = len(self.raw_t), len(self.norm_t), self.C, self.F
        z = lambda *s: torch.zeros(*s, dtype=torch.long, device=dev)  # noqa: E731
        self._acc = {"n_tokens": z(()), "n_pos": z(C), "n_domains": z(C), "act_raw": z(F, R + 1),
                     "pos_raw": z(C, F, R + 1), "act_norm": z(F, T + 1), "pos_norm": z(C, F, T + 1),
                     "dom_norm": z(C, F, T + 1)}
        self._dev = dev
        self._scale = self.latent_max.to(dev).clamp_min(torch.finfo(torch.float32).tiny)
        self._raw_b, self._norm_b = self.raw_t.float().to(dev), self.norm_t.float().to(dev)

    def update(self, batch: StatBatch) -> None:
        acts, labels = batch.acts, batch.labels
        if acts.dim() != 2 or acts.shape[1] != self.F:
            raise AnnotationStatsError(f"acts must be (N, {self.F}), got {tuple(acts.shape)}.")
        N = acts.shape[0]
        if tuple(labels.shape) != (N, self.C):
            raise AnnotationStatsError(f"labels must be (N={N}, C={self.C}) for concepts {self.concepts}, "
                                       f"got {tuple(labels.shape)}.")
        dev = self.device or acts.device
        if self._acc is None:
            self._init(dev)
        acts, labels = acts.to(dev), labels.to(dev).bool()
        doms = batch.domains if batch.domains is not None else runs_as_domains(labels, batch.protein)
        a, F, C, R, T = self._acc, self.F, self.C, len(self.raw_t), len(self.norm_t)
        a["n_tokens"] += N
        a["n_pos"] += labels.sum(0)
        a["n_domains"] += torch.bincount(doms.concept.to(dev), minlength=C)
        rows, cols, vals = _entries(acts)
        b_raw = torch.bucketize(vals.float(), self._raw_b)               # a > t_j  <=>  bucket >= j + 1
        b_norm = torch.bucketize(vals.float() / self._scale[cols], self._norm_b)
        a["act_raw"] += torch.bincount(cols * (R + 1) + b_raw, minlength=F * (R + 1)).view(F, R + 1)
        a["act_norm"] += torch.bincount(cols * (T + 1) + b_norm, minlength=F * (T + 1)).view(F, T + 1)
        lr, lc = labels.nonzero(as_tuple=True)
        e, c = _expand(rows, lr, lc, N)
        a["pos_raw"] += torch.bincount((c * F + cols[e]) * (R + 1) + b_raw[e],
                                       minlength=C * F * (R + 1)).view(C, F, R + 1)
        a["pos_norm"] += torch.bincount((c * F + cols[e]) * (T + 1) + b_norm[e],
                                        minlength=C * F * (T + 1)).view(C, F, T + 1)
        order = torch.argsort(doms.rows.to(dev), stable=True)
        e, d = _expand(rows, doms.rows.to(dev)[order], doms.domain.to(dev)[order], N)
        if e.numel():  # per-domain maximum of each latent, then its bucket
            key, inv = torch.unique(d * F + cols[e], return_inverse=True)
            dmax = torch.zeros(key.numel(), dtype=vals.dtype, device=dev).scatter_reduce_(
                0, inv, vals[e], "amax", include_self=False)
            f = key % F
            bd = torch.bucketize(dmax.float() / self._scale[f], self._norm_b)
            dc = doms.concept.to(dev)[key // F]
            a["dom_norm"] += torch.bincount((dc * F + f) * (T + 1) + bd, minlength=C * F * (T + 1)).view(C, F, T + 1)

    def result(self) -> "AnnotationCounts":
        if self._acc is None:
            raise AnnotationStatsError("No batches were given; the statistics need at least one token.")
        a = {k: v.cpu().numpy() for k, v in self._acc.items()}
        return AnnotationCounts(
            concepts=self.concepts, raw_thresholds=self.raw_t.numpy(), norm_thresholds=self.norm_t.numpy(),
            latent_max=self.latent_max.numpy(), n_tokens=int(a["n_tokens"]), n_pos=a["n_pos"],
            n_domains=a["n_domains"], active_raw=_above(torch.from_numpy(a["act_raw"])).numpy(),
            pos_raw=_above(torch.from_numpy(a["pos_raw"])).numpy(),
            active_norm=_above(torch.from_numpy(a["act_norm"])).numpy(),
            pos_norm=_above(torch.from_numpy(a["pos_norm"])).numpy(),
            dom_norm=_above(torch.from_numpy(a["dom_norm"])).numpy())


@dataclass
class AnnotationCounts:
    """Sufficient statistics of one split; ``metrics()`` turns them into the three views."""

    concepts: list
    raw_thresholds: np.ndarray   # (R,)
    norm_thresholds: np.ndarray  # (T,)
    latent_max: np.ndarray       # (F,)
    n_tokens: int
    n_pos: np.ndarray            # (C,) positive tokens
    n_domains: np.ndarray        # (C,)
    active_raw: np.ndarray       # (F, R) tokens with a > t
    pos_raw: np.ndarray          # (C, F, R) positive tokens with a > t
    active_norm: np.ndarray      # (F, T) tokens with a / max > t
    pos_norm: np.ndarray         # (C, F, T)
    dom_norm: np.ndarray         # (C, F, T) domains with max a / max > t

    def metrics(self) -> dict:
        """``{name: array}``: counts (C, F, R), InterPLM scores (C, F, T), enrichment (C, F)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            act = self.active_norm[None].astype(float)
            tp = self.pos_norm.astype(float)
            prec = np.where(act > 0, tp / act, 0.0)
            rec = np.where(self.n_pos[:, None, None] > 0, tp / self.n_pos[:, None, None], 0.0)
            rec_d = np.where(self.n_domains[:, None, None] > 0, self.dom_norm / self.n_domains[:, None, None], 0.0)
            f1 = np.where(prec + rec_d > 0, 2 * prec * rec_d / (prec + rec_d), 0.0)
            f1_res = np.where(prec + rec > 0, 2 * prec * rec / (prec + rec), 0.0)
        t0 = int(np.flatnonzero(self.norm_thresholds == 0)[0]) if (self.norm_thresholds == 0).any() else None
        if t0 is None:
            raise AnnotationStatsError("Enrichment needs the normalised threshold 0 (a > 0); add it to norm_thresholds.")
        k, n = self.pos_norm[:, :, t0], self.active_norm[None, :, t0]
        p, odds = fisher_greater(k, n, self.n_pos[:, None], self.n_tokens)
        return {"pos_above": self.pos_raw, "neg_above": self.active_raw[None] - self.pos_raw,
                "precision": prec, "recall_residue": rec, "recall_domain": rec_d, "f1": f1, "f1_residue": f1_res,
                "fisher_p": p, "fdr_q": benjamini_hochberg(p), "odds_ratio": odds}


def latent_max_of(batches: Iterable, n_latents: int, device=None) -> torch.Tensor:
    """Per-latent maximum activation over ``batches`` (StatBatch or tensors), on CPU."""
    m = None
    for b in batches:
        acts = b.acts if isinstance(b, StatBatch) else b
        acts = acts.to(device) if device is not None else acts
        if acts.dim() != 2 or acts.shape[1] != n_latents:
            raise AnnotationStatsError(f"acts must be (N, {n_latents}), got {tuple(acts.shape)}.")
        if acts.is_sparse:
            _, cols, vals = _entries(acts)
            cur = torch.zeros(n_latents, dtype=torch.float32, device=vals.device).scatter_reduce_(
                0, cols, vals.float(), "amax", include_self=True)
        else:
            cur = acts.float().amax(0).clamp_min(0) if acts.shape[0] else torch.zeros(n_latents, device=acts.device)
        m = cur if m is None else torch.maximum(m, cur.to(m.device))
    if m is None:
        raise AnnotationStatsError("No batches were given; the statistics need at least one token.")
    return m.cpu()


def annotation_stats(batches: Union[Callable[[], Iterable], Sequence], concepts: Sequence[str], n_latents: int, *,
                     latent_max=None, raw_thresholds=RAW_THRESHOLDS, norm_thresholds=NORM_THRESHOLDS,
                     device=None) -> AnnotationCounts:
    """Counts for one split. ``batches``: a list of :class:`StatBatch` or a callable returning a
    fresh iterator of them (called twice when ``latent_max`` is None: max pass, then counts)."""
    it = batches if callable(batches) else (lambda: iter(batches))
    if latent_max is None:
        latent_max = latent_max_of(it(), n_latents, device)
    acc = AnnotationAccumulator(concepts, n_latents, latent_max, raw_thresholds=raw_thresholds,
                                norm_thresholds=norm_thresholds, device=device)
    for b in it():
        acc.update(b)
    return acc.result()


def best_pairs(val: AnnotationCounts, test: Optional[AnnotationCounts] = None, *, top: int = 5, score: str = "f1"):
    """Top ``top`` latents per concept by ``score`` (max over thresholds) on ``val``, each with its
    best threshold chosen on ``val`` and every view reported on ``test`` (default: ``val``)."""
    return pairs_table(val, test if test is not None else val, top=top, score=score)


def fisher_greater(k, n, K, N) -> tuple:
    """One-sided Fisher's exact test (enrichment) of the 2x2 tables ``[[k, n-k], [K-k, N-K-n+k]]``,
    vectorised (broadcast arrays): ``k`` positives among ``n`` active of ``N`` tokens with ``K``
    positives. Returns (p-values ``P(X >= k)`` under the hypergeometric null, sample odds ratios;
    ``inf`` where ``(n-k)(K-k) == 0``; p 1 and odds NaN when a margin is 0), exactly as
    ``scipy.stats.fisher_exact(table, alternative="greater")`` does table by table."""
    from scipy.stats import hypergeom

    k, n, K = (np.asarray(x, dtype=np.int64) for x in (k, n, K))
    k, n, K = np.broadcast_arrays(k, n, K)
    N = int(N)
    p = hypergeom.sf(k - 1, N, K, n)
    a, b, c, d = k, n - k, K - k, N - K - n + k
    with np.errstate(divide="ignore", invalid="ignore"):
        odds = np.where((b > 0) & (c > 0), (a.astype(float) * d) / (b.astype(float) * c), np.inf)
    empty = (n == 0) | (n == N) | (K == 0) | (K == N)        # a margin is zero: no information
    return np.where(empty, 1.0, np.clip(p, 0.0, 1.0)), np.where(empty, np.nan, odds)


def benjamini_hochberg(p) -> np.ndarray:
    """Benjamini & Hochberg (1995) FDR q-values of all entries of ``p`` (any shape) at once."""
    p = np.asarray(p, dtype=float)
    flat = p.ravel()
    m = flat.size
    order = np.argsort(flat, kind="stable")
    ranked = flat[order] * m / np.arange(1, m + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(q, 1.0)
    return out.reshape(p.shape)


def pairs_table(val: AnnotationCounts, test: AnnotationCounts, *, top: int = 5, score: str = "f1"):
    """The table behind :func:`best_pairs` (one row per concept × rank)."""
    import pandas as pd

    if list(val.concepts) != list(test.concepts) or val.latent_max.shape != test.latent_max.shape:
        raise AnnotationStatsError("Validation and test statistics must cover the same concepts and latents.")
    if not np.array_equal(val.norm_thresholds, test.norm_thresholds):
        raise AnnotationStatsError("Validation and test statistics use different thresholds.")
    mv, mt = val.metrics(), test.metrics()
    if score not in ("f1", "f1_residue", "precision", "recall_domain", "recall_residue"):
        raise AnnotationStatsError(f"score must be one of f1, f1_residue, precision, recall_domain, recall_residue; "
                                   f"got {score!r}.")
    C, F = mv[score].shape[:2]
    top = max(1, min(int(top), F))
    bt = mv[score].argmax(-1)                                     # best threshold per pair, on validation
    best = np.take_along_axis(mv[score], bt[..., None], -1)[..., 0]
    order = np.argsort(-best, axis=1, kind="stable")[:, :top]     # (C, top)
    ci, fi = np.repeat(np.arange(C), top), order.ravel()
    ti = bt[ci, fi]
    cols = {"concept": np.asarray(val.concepts, dtype=object)[ci], "rank": np.tile(np.arange(1, top + 1), C),
            "latent": fi, "threshold": val.norm_thresholds[ti], f"val_{score}": best[ci, fi]}
    for name in ("precision", "recall_domain", "f1"):
        if f"val_{name}" not in cols:
            cols[f"val_{name}"] = mv[name][ci, fi, ti]
    for name in ("f1", "precision", "recall_domain", "recall_residue", "f1_residue"):
        cols[f"test_{name}"] = mt[name][ci, fi, ti]
    for j, t in enumerate(test.raw_thresholds):
        cols[f"test_pos_above_{t:g}"] = mt["pos_above"][ci, fi, j]
        cols[f"test_neg_above_{t:g}"] = mt["neg_above"][ci, fi, j]
    cols.update({"test_fisher_p": mt["fisher_p"][ci, fi], "test_fdr_q": mt["fdr_q"][ci, fi],
                 "test_odds_ratio": mt["odds_ratio"][ci, fi], "val_fdr_q": mv["fdr_q"][ci, fi],
                 "test_n_pos": test.n_pos[ci], "test_n_domains": test.n_domains[ci],
                 "latent_max": val.latent_max[fi]})
    return pd.DataFrame(cols)
