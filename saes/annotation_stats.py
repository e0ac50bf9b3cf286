"""Latent ↔ annotation statistics: every latent × concept pair at once, over streamed token batches.

    from saes.annotation_stats import StatBatch, annotation_stats, best_pairs
    def batches_val():                  # a callable: called once per pass (or pass a list)
        for acts, labels, domains in my_stream("val"):   # acts (N, F), labels (N, C) bool
            yield StatBatch(acts, labels, domains)       # domains: DomainIndex or None (runs)
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
  (hypergeometric tail, :func:`hypergeom_sf`, vectorised over all pairs), Benjamini & Hochberg
  (1995) FDR q-values over all ``C × F`` pairs, and the odds ratio.

Every count is a histogram: each positive activation falls in one (raw, normalised) threshold
bucket and ``torch.bincount`` adds it to its ``(label set, latent, bucket)`` cell; each label
set's histogram is then added to its concepts (rows carry few distinct label sets; with many,
entries are expanded over their rows' labels instead). Per-domain maxima come from a
``scatter_reduce`` of the entries into a (domain, latent) buffer. No Python loop over latents
or concepts; memory is bounded by one batch; tensors stay on the activations' device (GPU or
CPU). Activations ``<= 0`` never count (every threshold is ``>= 0``), so sparse (TopK)
activations cost in proportion to their non-zeros; dense ``(N, F)`` tensors and
``torch.sparse`` COO tensors are both accepted. A domain must lie inside one batch (batch
whole proteins). Garcia & Ansuini (2025) choose ESM-2 SAE latents to steer by such
latent-annotation associations.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Optional, Sequence, Union

import numpy as np
import torch

from .errors import SAEError

RAW_THRESHOLDS = (0.01, 0.1, 1.0)
NORM_THRESHOLDS = (0.0, 0.15, 0.5, 0.6, 0.8)
_DENSE_LIMIT = 1 << 25       # cells of a per-batch dense histogram / buffer before switching to compact forms


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
        a = acts if acts.is_coalesced() else acts.coalesce()
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
        # joint (raw bucket, normalised bucket) histograms: one bincount serves both views
        self._acc = {"n_tokens": z(()), "n_pos": z(C), "n_domains": z(C), "act": z(F, R + 1, T + 1),
                     "pos": z(C, F, R + 1, T + 1), "dom": z(C, F, T + 1)}
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
        J = (R + 1) * (T + 1)
        a["n_tokens"] += N
        a["n_pos"] += labels.sum(0)
        a["n_domains"] += torch.bincount(doms.concept.to(dev), minlength=C)
        rows, cols, vals = _entries(acts)
        vals = vals.float()
        b_norm = torch.bucketize(vals / self._scale[cols], self._norm_b)      # a/max > t_j  <=>  bucket >= j + 1
        key = cols * J + torch.bucketize(vals, self._raw_b) * (T + 1) + b_norm   # (latent, raw bucket, norm bucket)
        a["act"] += torch.bincount(key, minlength=F * J).view(F, R + 1, T + 1)
        a["pos"] += self._positives(rows, key, labels, N, J).view(C, F, R + 1, T + 1)
        a["dom"] += self._domains(rows, cols, vals, doms, N, T).view(C, F, T + 1)

    def _positives(self, rows, key, labels, N, J) -> torch.Tensor:
        """(C, F*J) histogram of entries on rows labelled with each concept. Rows are grouped by
        their label set (few distinct sets: one bincount, then each set's histogram is added to
        its concepts); with too many distinct sets, entries are expanded over their labels."""
        C, FJ = self.C, self.F * J
        sets, inv = torch.unique(labels.to(torch.uint8), dim=0, return_inverse=True)   # (S, C), (N,)
        sets = sets.bool()
        expanded = int(labels.sum(1)[rows].sum())                           # entries x their labels
        if (sets.shape[0] + int(sets.sum())) * FJ <= min(_DENSE_LIMIT, 8 * expanded):
            hist = torch.bincount(inv[rows] * FJ + key, minlength=sets.shape[0] * FJ).view(-1, FJ)
            s_idx, c_idx = sets.nonzero(as_tuple=True)
            return torch.zeros(C, FJ, dtype=torch.long, device=hist.device).index_add_(0, c_idx, hist[s_idx])
        lr, lc = labels.nonzero(as_tuple=True)
        e, c = _expand(rows, lr, lc, N)
        return torch.bincount(c * FJ + key[e], minlength=C * FJ).view(C, FJ)

    def _domains(self, rows, cols, vals, doms: DomainIndex, N, T) -> torch.Tensor:
        """(C, F*(T+1)) histogram of per-domain maxima (each latent's maximum over a domain's rows)."""
        F, C, dev = self.F, self.C, rows.device
        out = torch.zeros(C * F * (T + 1), dtype=torch.long, device=dev)
        D = int(doms.concept.numel())
        if D == 0:
            return out
        d_rows = doms.rows.to(dev)
        order = torch.argsort(d_rows, stable=True)
        e, d = _expand(rows, d_rows[order], doms.domain.to(dev)[order], N)
        if e.numel() == 0:
            return out
        if D * F <= _DENSE_LIMIT:      # a dense (domain, latent) buffer
            buf = torch.zeros(D * F, dtype=vals.dtype, device=dev).scatter_reduce_(
                0, d * F + cols[e], vals[e], "amax", include_self=True)
            key = buf.nonzero().squeeze(1)
            dmax = buf[key]
        else:                          # compact: only the (domain, latent) pairs that occur
            key, inv = torch.unique(d * F + cols[e], return_inverse=True)
            dmax = torch.zeros(key.numel(), dtype=vals.dtype, device=dev).scatter_reduce_(
                0, inv, vals[e], "amax", include_self=False)
        f = key % F
        bd = torch.bucketize(dmax / self._scale[f], self._norm_b)
        dc = doms.concept.to(dev)[key // F]
        return out + torch.bincount((dc * F + f) * (T + 1) + bd, minlength=C * F * (T + 1))

    def result(self) -> "AnnotationCounts":
        if self._acc is None:
            raise AnnotationStatsError("No batches were given; the statistics need at least one token.")
        a = {k: v.cpu() for k, v in self._acc.items()}
        return AnnotationCounts(
            concepts=self.concepts, raw_thresholds=self.raw_t.numpy(), norm_thresholds=self.norm_t.numpy(),
            latent_max=self.latent_max.numpy(), n_tokens=int(a["n_tokens"]), n_pos=a["n_pos"].numpy(),
            n_domains=a["n_domains"].numpy(), active_raw=_above(a["act"].sum(-1)).numpy(),
            pos_raw=_above(a["pos"].sum(-1)).numpy(), active_norm=_above(a["act"].sum(-2)).numpy(),
            pos_norm=_above(a["pos"].sum(-2)).numpy(), dom_norm=_above(a["dom"]).numpy())


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
            raise AnnotationStatsError("Enrichment needs the normalised threshold 0 (a > 0); add it to "
                                       "norm_thresholds.")
        k, n = self.pos_norm[:, :, t0], self.active_norm[None, :, t0]
        p, odds, log10p = fisher_greater(k, n, self.n_pos[:, None], self.n_tokens)
        return {"pos_above": self.pos_raw, "neg_above": self.active_raw[None] - self.pos_raw,
                "precision": prec, "recall_residue": rec, "recall_domain": rec_d, "f1": f1, "f1_residue": f1_res,
                "fisher_p": p, "fisher_log10_p": log10p, "fdr_q": benjamini_hochberg(p), "odds_ratio": odds}


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


def hypergeom_sf(k, n, K, N) -> tuple:
    """``(P(X >= k), log P(X >= k))`` for ``X ~ Hypergeometric(N tokens, K positives, n draws)``,
    vectorised over broadcast integer arrays ``k, n, K``.

    Exact summation of the probability mass function from ``k`` upwards (``k`` at or above the
    mean) or of ``1 - P(X <= k - 1)`` downwards (below the mean), each started from the mass at
    its first point (``scipy.stats.hypergeom.logpmf``, in logs so nothing underflows) and
    continued with the ratio of successive masses until the terms no longer change the sum —
    a loop over summation steps on the still-unfinished pairs, never over pairs.
    ``scipy.stats.hypergeom.sf`` gives the same numbers (relative difference ~1e-13 for
    thousands of tokens, ~1e-9 for millions: the log-beta start) but sums each pair separately
    with Boost: about a millisecond per pair near the mean, minutes for 80,000 pairs.
    """
    from scipy.stats import hypergeom

    k, n, K = np.broadcast_arrays(*(np.asarray(x, dtype=np.int64) for x in (k, n, K)))
    shape, N = k.shape, int(N)
    k, n, K = k.ravel(), n.ravel(), K.ravel()
    lo, hi = np.maximum(0, n + K - N), np.minimum(n, K)
    logsf = np.where(k <= lo, 0.0, -np.inf)
    mid = np.flatnonzero((k > lo) & (k <= hi))
    up = n[mid] * K[mid] <= k[mid] * N                         # k at or above the mean: sum the upper tail
    x0 = np.where(up, k[mid], k[mid] - 1)
    nn, KK = n[mid], K[mid]
    logp0 = hypergeom.logpmf(x0, N, KK, nn)                      # scipy's log-beta form: no underflow
    total = np.ones(len(mid))
    term = np.ones(len(mid))
    x = x0.astype(float)
    act = np.arange(len(mid))
    lo_m, hi_m = lo[mid].astype(float), hi[mid].astype(float)
    while act.size:
        u, xa, na, Ka = up[act], x[act], nn[act].astype(float), KK[act].astype(float)
        ratio = np.where(u, (na - xa) * (Ka - xa) / ((xa + 1) * (N - Ka - na + xa + 1)),
                         xa * (N - Ka - na + xa) / np.maximum((na - xa + 1) * (Ka - xa + 1), 1))
        ta = term[act] * ratio
        term[act] = ta
        total[act] += ta
        x[act] = np.where(u, xa + 1, xa - 1)
        done = (ta <= total[act] * 1e-17) | np.where(u, x[act] >= hi_m[act], x[act] <= lo_m[act])
        act = act[~done]
    log_tail = logp0 + np.log(total)                            # log P(X >= k) (up) or log P(X <= k - 1)
    logsf[mid] = np.where(up, log_tail, np.log(-np.expm1(np.minimum(log_tail, 0.0))))
    logsf = np.minimum(logsf, 0.0)
    return np.exp(logsf).reshape(shape), logsf.reshape(shape)


def fisher_greater(k, n, K, N) -> tuple:
    """One-sided Fisher's exact test (enrichment) of the 2x2 tables ``[[k, n-k], [K-k, N-K-n+k]]``,
    vectorised (broadcast arrays): ``k`` positives among ``n`` active of ``N`` tokens with ``K``
    positives. Returns (p-values ``P(X >= k)`` under the hypergeometric null, sample odds ratios
    — ``inf`` where ``(n-k)(K-k) == 0``; p 1 and odds NaN when a margin is 0 — as
    ``scipy.stats.fisher_exact(table, alternative="greater")`` gives table by table, and
    ``log10`` p-values, finite where p underflows)."""
    k, n, K = np.broadcast_arrays(*(np.asarray(x, dtype=np.int64) for x in (k, n, K)))
    N = int(N)
    p, logp = hypergeom_sf(k, n, K, N)
    a, b, c, d = k, n - k, K - k, N - K - n + k
    with np.errstate(divide="ignore", invalid="ignore"):
        odds = np.where((b > 0) & (c > 0), (a.astype(float) * d) / (b.astype(float) * c), np.inf)
    empty = (n == 0) | (n == N) | (K == 0) | (K == N)        # a margin is zero: no information
    return np.where(empty, 1.0, p), np.where(empty, np.nan, odds), np.where(empty, 0.0, logp / np.log(10))


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
    cols.update({"test_fisher_p": mt["fisher_p"][ci, fi], "test_log10_p": mt["fisher_log10_p"][ci, fi],
                 "test_fdr_q": mt["fdr_q"][ci, fi],
                 "test_odds_ratio": mt["odds_ratio"][ci, fi], "val_fdr_q": mv["fdr_q"][ci, fi],
                 "test_n_pos": test.n_pos[ci], "test_n_domains": test.n_domains[ci],
                 "latent_max": val.latent_max[fi]})
    return pd.DataFrame(cols)
