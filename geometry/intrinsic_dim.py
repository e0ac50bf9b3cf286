"""Intrinsic dimension: TwoNN (Facco et al. 2017) and Gride (Denti et al. 2022).

Definitions, defaults and quirks follow DADApy 0.3.4 (``IdEstimation``):

* :func:`compute_id_2nn` -- TwoNN. mu_i = r2/r1; ``algorithm="base"`` fits
  ``-log(1 - F(mu)) = d log(mu)`` through the origin (least squares, as
  DADApy's ``curve_fit``) on the smallest ``int(N * mu_fraction)`` values
  (default ``mu_fraction=0.9``); ``algorithm="ml"`` is the maximum
  likelihood ``(N - 1) / sum(log mu)`` on all points. ``mu_fraction == 1``
  with ``"base"`` switches to ``"ml"`` (as DADApy). The error is 0 unless the
  data are decimated (``data_fraction < 1``): then ``n_iter`` random subsets
  (default ``round(1/data_fraction)``) are drawn with
  ``numpy.random.default_rng(seed).choice(N, n, replace=False)`` -- the
  same stream DADApy's ``Data(rng_seed=42)`` uses -- and the error is the
  standard error of the mean over them. The scale is the mean of r1 and r2.
* :func:`return_id_scaling_2nn` -- TwoNN by decimation over N, N/2, N/4, ...
  subsets larger than ``n_min`` (default 10), one RNG stream for the scan.
* :func:`compute_id_gride` / :func:`return_id_scaling_gride` -- Gride:
  maximum likelihood on mu = r_{n2}/r_{n1} (n2 = 2 n1 in the scan over
  n1 = 1, 2, 4, ... with ``2 n1 <= min(N, range_max)``, default
  ``range_max=64``). As in DADApy, ratios >= median + 20 (q95 - median) are
  dropped before the fit, ratios equal to 1 get +10 eps, the root of the
  score is found by bisection on [d0, d1] = [0.001, 1000] to ``eps=1e-7``,
  and the error is 1/sqrt(Fisher information) computed on all ratios. The
  scale is the mean of r_{n1} and r_{n2}.

Every function takes points (anything array-like, shape (N, D)) or a
precomputed :class:`~geometry.Neighbors` table.

Example::

    >>> import torch
    >>> from geometry import compute_id_2nn, return_id_scaling_gride
    >>> X = torch.rand(5000, 3) @ torch.randn(3, 50)   # a 3-d plane in 50-d
    >>> compute_id_2nn(X).id                            # doctest: +SKIP
    2.98...
    >>> ids, errs, scales = return_id_scaling_gride(X, range_max=64)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
import torch

from ._utils import small_ops
from .errors import GeometryInputError
from .neighbors import Neighbors, knn

__all__ = [
    "IDEstimate",
    "IDScaling",
    "compute_id_2nn",
    "return_id_scaling_2nn",
    "compute_id_gride",
    "return_id_scaling_gride",
    "twonn_from_mus",
]

_EPS64 = float(np.finfo(np.float64).eps)


class IDEstimate(NamedTuple):
    """An intrinsic dimension estimate; unpacks like DADApy's ``(id, err, scale)``."""

    id: float
    err: float
    scale: float


class IDScaling(NamedTuple):
    """IDs at several scales; unpacks like DADApy's ``(ids, errs, scales)``."""

    ids: torch.Tensor
    errs: torch.Tensor
    scales: torch.Tensor


def _neighbors(data: Any, k: int, **knn_kwargs) -> Neighbors:
    if isinstance(data, Neighbors):
        if data.k < k:
            raise GeometryInputError(
                f"this estimate needs the first {k} neighbours but the table holds {data.k}; "
                f"recompute it with knn(X, k={k}) or pass the points instead."
            )
        return data
    return knn(data, k, **knn_kwargs)


def twonn_from_mus(mus: torch.Tensor, mu_fraction: float = 0.9, algorithm: str = "base") -> float:
    """TwoNN estimate from the ratios mu = r2/r1 (DADApy ``_compute_id_2NN``)."""
    mus = mus.to(torch.float64)
    n = mus.shape[0]
    n_eff = int(n * mu_fraction)
    log_mus = torch.log(mus)
    if algorithm == "ml":
        return float((n - 1) / log_mus.sum())
    if algorithm != "base":
        raise GeometryInputError(f"algorithm must be 'base' or 'ml', got {algorithm!r}.")
    if n_eff < 1:
        raise GeometryInputError(f"mu_fraction={mu_fraction} keeps no point out of {n}; use a larger mu_fraction.")
    x = torch.sort(log_mus).values[:n_eff]
    y = -torch.log1p(-torch.arange(1, n_eff + 1, dtype=torch.float64, device=mus.device) / n)
    # least squares of y = d * x through the origin (what scipy's curve_fit converges to)
    return float((x * y).sum() / (x * x).sum())


def _check_fractions(mu_fraction: float, data_fraction: float) -> None:
    if not 0.0 < mu_fraction <= 1.0:
        raise GeometryInputError(f"mu_fraction must be in (0, 1], got {mu_fraction}.")
    if not 0.0 < data_fraction <= 1.0:
        raise GeometryInputError(f"data_fraction must be in (0, 1], got {data_fraction}.")


@small_ops
def compute_id_2nn(
    data: Any,
    *,
    algorithm: str = "base",
    mu_fraction: float = 0.9,
    data_fraction: float = 1.0,
    n_iter: int | None = None,
    seed: int = 42,
    rng: np.random.Generator | None = None,
    **knn_kwargs,
) -> IDEstimate:
    """TwoNN intrinsic dimension (Facco, d'Errico, Rodriguez, Laio, Sci. Rep. 7, 12140, 2017).

    Args:
        data: points (N, D) or a :class:`Neighbors` table (k >= 2). Decimation
            (``data_fraction < 1``) needs the points.
        algorithm: ``"base"`` (linear fit, default) or ``"ml"``.
        mu_fraction: fraction of the smallest mu kept by the fit (0.9).
        data_fraction: fraction of points per random subset (1 = all points).
        n_iter: number of random subsets (default ``round(1 / data_fraction)``).
        seed / rng: RNG of the subsets (``numpy.random.default_rng(seed)``).
        **knn_kwargs: forwarded to :func:`~geometry.knn` (metric, precision, device, ...).

    Returns:
        :class:`IDEstimate` ``(id, err, scale)``; ``err`` is 0 without decimation.
    """
    _check_fractions(mu_fraction, data_fraction)
    if math.isclose(mu_fraction, 1.0) and algorithm == "base":
        algorithm = "ml"
    if data_fraction == 1:
        nb = _neighbors(data, 2, **knn_kwargs)
        d = nb.distances
        idv = twonn_from_mus(d[:, 2] / d[:, 1], mu_fraction, algorithm)
        return IDEstimate(idv, 0.0, float(d[:, 1:3].mean()))
    if isinstance(data, Neighbors):
        raise GeometryInputError(
            "decimation (data_fraction < 1) recomputes neighbours on random subsets: pass the points, not a Neighbors table."
        )
    rng = rng if rng is not None else np.random.default_rng(seed)
    return _decimated_2nn(data, data_fraction, n_iter, mu_fraction, algorithm, rng, knn_kwargs)


def _decimated_2nn(X, data_fraction, n_iter, mu_fraction, algorithm, rng, knn_kwargs) -> IDEstimate:
    from ._utils import as_points, resolve_device

    dev = resolve_device(knn_kwargs.get("device"), X)
    Xt = X if isinstance(X, torch.Tensor) and X.dtype == torch.float64 and X.device == dev else as_points(X, dev)
    N = Xt.shape[0]
    n_subset = int(np.rint(N * data_fraction))
    if n_iter is None:
        n_iter = int(np.rint(1.0 / data_fraction))
    if n_subset < 3:
        raise GeometryInputError(f"data_fraction={data_fraction} leaves {n_subset} points; TwoNN needs at least 3.")
    subsets = [torch.as_tensor(rng.choice(N, size=n_subset, replace=False), device=dev) for _ in range(n_iter)]
    ids, rs = [], []
    for r1, r2 in _first_two_distances(Xt, subsets, knn_kwargs):
        ids.append(twonn_from_mus(r2 / r1, mu_fraction, algorithm))
        rs.append(float(torch.cat([r1, r2]).mean()))
    ids_a = np.asarray(ids)
    return IDEstimate(float(ids_a.mean()), float(ids_a.std() / math.sqrt(len(ids_a))), float(np.mean(rs)))


def _first_two_distances(X: torch.Tensor, subsets: list[torch.Tensor], knn_kwargs):
    """Yield (r1, r2) within each subset; small subsets are batched in float64."""
    n = len(subsets[0])
    metric = knn_kwargs.get("metric", "euclidean")
    if n > 1024 or knn_kwargs.get("period") is not None:
        for idx in subsets:
            nb = knn(X[idx], 2, **knn_kwargs)
            yield nb.distances[:, 1], nb.distances[:, 2]
        return
    Xs = X
    if metric == "cosine":
        Xs = X / X.norm(dim=1, keepdim=True)
    per_batch = max(1, (1 << 23) // (n * n))
    for b0 in range(0, len(subsets), per_batch):
        idx = torch.stack(subsets[b0 : b0 + per_batch])
        P = Xs[idx]
        P = P - P.mean(dim=1, keepdim=True)
        sq = (P * P).sum(-1)
        d2 = sq.unsqueeze(2) + sq.unsqueeze(1) - 2.0 * torch.bmm(P, P.transpose(1, 2))
        d2.clamp_(min=0.0)
        d2.diagonal(dim1=1, dim2=2).fill_(float("inf"))
        two = torch.topk(d2, 2, dim=2, largest=False, sorted=True).values
        dist = two / 2.0 if metric == "cosine" else two.sqrt()
        if bool((dist[..., 0] == 0).any()):
            raise GeometryInputError("a decimated subset contains identical points; remove duplicates first.")
        for b in range(dist.shape[0]):
            yield dist[b, :, 0], dist[b, :, 1]


@small_ops
def return_id_scaling_2nn(
    X: Any,
    *,
    n_min: int = 10,
    algorithm: str = "base",
    mu_fraction: float = 0.9,
    seed: int = 42,
    return_sizes: bool = False,
    neighbors: Neighbors | None = None,
    **knn_kwargs,
) -> IDScaling:
    """TwoNN at growing scales by decimation (DADApy ``return_id_scaling_2NN``).

    Subset sizes are ``round(N / 2**i)`` for ``i < int(log2 N) - 1``, keeping
    those ``> n_min``; each size is averaged over ``round(N / size)`` random
    subsets drawn from one ``numpy.random.default_rng(seed)`` stream.

    Returns:
        :class:`IDScaling` ``(ids, errs, scales)``; ``scales`` are the mean
        r1/r2 distances, or the subset sizes with ``return_sizes=True``.
    """
    from ._utils import as_points, resolve_device

    dev = resolve_device(knn_kwargs.get("device"), X)
    Xt = as_points(X, dev)
    N = Xt.shape[0]
    max_ndec = int(math.log(N, 2)) - 1
    sizes = np.round(N / np.array([2**i for i in range(max_ndec)], dtype=float)).astype(int)
    if n_min is not None:
        sizes = sizes[sizes > n_min]
    if len(sizes) == 0:
        raise GeometryInputError(f"N = {N} points leave no subset larger than n_min = {n_min}; lower n_min.")
    rng = np.random.default_rng(seed)
    ids, errs, rs = [], [], []
    for size in sizes:
        frac = size / N
        if frac == 1:
            est = compute_id_2nn(neighbors if neighbors is not None else Xt, algorithm=algorithm,
                                 mu_fraction=mu_fraction, **knn_kwargs)
        else:
            est = compute_id_2nn(Xt, algorithm=algorithm, mu_fraction=mu_fraction, data_fraction=frac,
                                 rng=rng, **knn_kwargs)
        ids.append(est.id)
        errs.append(est.err)
        rs.append(est.scale)
    scales = torch.as_tensor(sizes) if return_sizes else torch.tensor(rs, dtype=torch.float64)
    return IDScaling(torch.tensor(ids, dtype=torch.float64), torch.tensor(errs, dtype=torch.float64), scales)


# ---------------------------------------------------------------------------------- Gride


def _filter_mus(mus: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """DADApy ``_filter_mus``: nudge mu == 1, drop mu >= median + 20 (q95 - median).

    Returns (nudged ratios, mask of the kept ones).
    """
    mus = torch.where(mus == 1, mus + 10 * _EPS64, mus)
    q = torch.quantile(mus, torch.tensor([0.95, 0.5], dtype=mus.dtype, device=mus.device))
    mu_max = 20 * (q[0] - q[1]) + q[1]
    return mus, mus < mu_max


def _gride_ml(mus: torch.Tensor, keep: torch.Tensor, n1: torch.Tensor, n2: torch.Tensor,
              d0: float, d1: float, eps: float) -> torch.Tensor:
    """Bisection on the Gride score for several scales at once (columns of ``mus``).

    Same iterations as DADApy's ``_argmax_loglik``: the sign of the score at
    the midpoint is compared with its sign at the initial upper end.
    """
    log_mu = torch.where(keep, torch.log(mus), torch.zeros_like(mus))
    n_kept = keep.sum(dim=0).to(mus.dtype)
    a = (1 - n2 + n1).to(mus.dtype)
    b = (n2 - 1).to(mus.dtype)

    neg_log_mu = -torch.log(mus)  # 1 - mu^-d = -expm1(-d log mu): one exp per entry, no pow

    def score(d: torch.Tensor) -> torch.Tensor:
        one_m = torch.expm1(neg_log_mu * d).neg_().clamp_(min=2 * eps)
        return ((a / one_m + b) * log_mu).sum(dim=0) - (n_kept - 1) / d

    lo = torch.full_like(n_kept, d0)
    hi = torch.full_like(n_kept, d1)
    l1 = score(hi)
    active = (hi - lo).abs() > eps
    while bool(active.any()):
        mid = (lo + hi) / 2.0
        up = score(mid) * l1 > 0
        hi = torch.where(active & up, mid, hi)
        lo = torch.where(active & ~up, mid, lo)
        active = (hi - lo).abs() > eps
    return (lo + hi) / 2.0


def _gride_fisher_err(idv: torch.Tensor, mus: torch.Tensor, n1: torch.Tensor, n2: torch.Tensor) -> torch.Tensor:
    """1/sqrt(Fisher information) of the Gride likelihood (DADApy ``_fisher_info_scaling``)."""
    reg = 5 * _EPS64
    n = mus.shape[0]
    one_m = 1.0 - mus ** (-idv)
    one_m = torch.where(one_m < reg, torch.full_like(one_m, reg), one_m)
    j0 = n / idv**2
    tmp = (torch.log(mus) / one_m) ** 2 * mus ** (-idv)
    j1 = ((n2 - n1 - 1).to(mus.dtype) * tmp).sum(dim=0)
    return 1.0 / torch.sqrt(j0 + j1)


def _gride(mus: torch.Tensor, n1s: list[int], n2s: list[int], d0: float, d1: float, eps: float):
    mus = mus.to(torch.float64)
    if bool((mus <= 0).any()) or not bool(torch.isfinite(mus).all()):
        raise GeometryInputError(
            "some neighbour distances are zero (identical points); remove duplicates first "
            "(geometry.remove_identical_points)."
        )
    cols = [_filter_mus(mus[:, j]) for j in range(mus.shape[1])]
    mus_n = torch.stack([c[0] for c in cols], dim=1)
    keep = torch.stack([c[1] for c in cols], dim=1)
    n1 = torch.tensor(n1s, device=mus.device)
    n2 = torch.tensor(n2s, device=mus.device)
    ids = _gride_ml(mus_n, keep, n1, n2, d0, d1, eps)
    errs = _gride_fisher_err(ids, mus_n, n1, n2)
    return ids, errs


@small_ops
def compute_id_gride(
    data: Any,
    *,
    n1: int = 1,
    n2: int = 2,
    d0: float = 0.001,
    d1: float = 1000.0,
    eps: float = 1e-7,
    **knn_kwargs,
) -> IDEstimate:
    """Gride intrinsic dimension at one scale (Denti, Doimo, Laio, Mira, Sci. Rep. 12, 20005, 2022).

    Maximum likelihood of mu = r_{n2}/r_{n1} (n1 < n2). See the module
    docstring for the DADApy conventions used (outlier filter, bisection).

    Returns:
        :class:`IDEstimate` ``(id, err, scale)``; ``scale`` = mean of r_{n1} and r_{n2}.
    """
    if not 1 <= n1 < n2:
        raise GeometryInputError(f"need 1 <= n1 < n2, got n1={n1}, n2={n2}.")
    nb = _neighbors(data, n2, **knn_kwargs)
    d = nb.distances
    ids, errs = _gride((d[:, n2] / d[:, n1]).unsqueeze(1), [n1], [n2], d0, d1, eps)
    scale = float(torch.stack([d[:, n1], d[:, n2]]).mean())
    return IDEstimate(float(ids[0]), float(errs[0]), scale)


@small_ops
def return_id_scaling_gride(
    data: Any,
    *,
    range_max: int = 64,
    d0: float = 0.001,
    d1: float = 1000.0,
    eps: float = 1e-7,
    return_ranks: bool = False,
    **knn_kwargs,
) -> IDScaling:
    """Gride over the scales n1 = 1, 2, 4, ... (n2 = 2 n1 <= min(N, range_max)).

    Mirrors DADApy ``return_id_scaling_gride`` (same ranks, same filters).
    With a :class:`Neighbors` table, it must hold ``min(N, range_max)``
    neighbours (DADApy would silently cap the range instead).

    Returns:
        :class:`IDScaling` ``(ids, errs, scales)``: ``scales`` are the mean
        r_{n1}/r_{n2} distances, or the ranks n2 with ``return_ranks=True``.
    """
    n_points = data.n_points if isinstance(data, Neighbors) else len(data)
    max_rank = min(n_points, range_max)
    max_step = int(math.log(max_rank, 2))
    if max_step < 1:
        raise GeometryInputError(f"range_max={range_max} gives no scale; use range_max >= 2.")
    if isinstance(data, Neighbors) and data.k < 2**max_step and data.k < n_points - 1:
        raise GeometryInputError(
            f"Gride up to rank {2**max_step} needs that many neighbours but the table holds {data.k}; "
            f"recompute with knn(X, k={2**max_step}) or pass the points."
        )
    ranks = [2**i for i in range(max_step + 1)]
    nb = _neighbors(data, min(2**max_step, n_points - 1), **knn_kwargs)
    d = nb.distances
    lo_r = torch.tensor(ranks[:-1], device=d.device)
    hi_r = torch.tensor(ranks[1:], device=d.device)
    mus = d[:, hi_r] / d[:, lo_r]
    ids, errs = _gride(mus, ranks[:-1], ranks[1:], d0, d1, eps)
    rs = torch.stack([d[:, lo_r], d[:, hi_r]], dim=1).mean(dim=(0, 1))
    scales = torch.tensor(ranks[1:]) if return_ranks else rs.cpu()
    return IDScaling(ids.cpu(), errs.cpu(), scales)
