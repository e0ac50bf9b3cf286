"""Exact k-nearest neighbours in torch, with bounded memory.

The neighbour table is the input of every estimator in this package. The
layout follows DADApy (``dadapy._utils.utils.compute_nn_distances``): for N
points and ``k`` neighbours, ``distances`` and ``indices`` have shape
(N, k + 1) and column 0 is the point itself (distance 0).

How it is fast and still exact
------------------------------
Distances are found block by block (``chunk_size`` query rows against all
points, so memory is O(chunk_size * N), never N x N):

1. *Candidates* come from one low-precision matrix product per block (bf16
   or float32; float64 when asked) of augmented, centred data whose output
   is the squared distance itself (a_i . b_j = |x_i - x_j|^2), so output
   rounding is relative to the distance. The ``k + 1 + margin`` smallest
   values per row are kept (a two-level top-k over groups of columns).
2. The candidates are *re-ranked in float64*: exact dot products at the
   candidate positions only (``torch.sparse.sampled_addmm`` over column
   tiles that stay in cache on the CPU, gather + batched matvec on CUDA),
   and only for candidates whose lower bound can still reach the k + 1
   nearest.
3. Each row is *certified*: its k-th exact squared distance must lie below
   a lower bound on the true distance of every point left out (the
   smallest value left out, minus the error bound of the low-precision
   product: output rounding, rigorous; input rounding and accumulation,
   10 and 8 standard deviations of their random-rounding spread). Rows that
   fail are redone one level up (bf16 -> float32 -> float64), so the
   result equals a float64 brute-force search (up to float64 rounding and
   exact ties, broken by index).

On the CPU the blocks are shared by ``torch.get_num_threads()`` worker
threads, each running single-threaded kernels: as parallel as multi-threaded
kernels on an idle machine, and without an OpenMP barrier in every small
operation (which costs ~10x on a loaded machine).

Example::

    >>> import torch
    >>> from geometry import knn
    >>> nb = knn(torch.randn(1000, 64), k=10)
    >>> nb.distances.shape, nb.indices[:, 0].equal(torch.arange(1000))
    (torch.Size([1000, 11]), True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ._search import _LEVELS, _auto_level, _default_chunk, dense_blocks, knn_blocks
from ._utils import SMALL_OP_THREADS, as_points, intraop_threads, resolve_device
from .errors import DuplicatePointsError, GeometryInputError, check_k

__all__ = ["Neighbors", "knn", "remove_identical_points", "find_duplicates"]



@dataclass
class Neighbors:
    """A neighbour table (DADApy layout: column 0 is the point itself).

    Attributes:
        distances: (N, k+1) float64; ``distances[i, j]`` is the distance from
            point i to its j-th neighbour (euclidean, or cosine distance
            ``1 - cos`` for ``metric="cosine"``, as in scikit-learn).
        indices: (N, k+1) int64 neighbour indices; ``indices[:, 0] == arange(N)``.
        metric: ``"euclidean"`` or ``"cosine"``.
        stats: how many rows each precision level certified (diagnostics).
    """

    distances: torch.Tensor
    indices: torch.Tensor
    metric: str = "euclidean"
    stats: dict | None = None

    @property
    def n_points(self) -> int:
        return int(self.distances.shape[0])

    @property
    def k(self) -> int:
        """Number of stored neighbours (self excluded); DADApy's ``maxk``."""
        return int(self.distances.shape[1]) - 1

    def truncate(self, k: int) -> "Neighbors":
        """The first ``k`` neighbours only (a view)."""
        if k > self.k:
            raise GeometryInputError(f"asked for {k} neighbours but only {self.k} are stored; recompute knn with k >= {k}.")
        return Neighbors(self.distances[:, : k + 1], self.indices[:, : k + 1], self.metric, self.stats)

    def numpy(self):
        """``(distances, indices)`` as numpy arrays (DADApy's ``distances`` tuple)."""
        return self.distances.cpu().numpy(), self.indices.cpu().numpy()


def knn(
    X: Any,
    k: int,
    metric: str = "euclidean",
    *,
    precision: str = "auto",
    chunk_size: int | None = None,
    device: Any = None,
    margin: int | None = None,
    period: Any = None,
    on_duplicates: str = "raise",
    method: str = "search",
) -> Neighbors:
    """Exact k nearest neighbours of every point (self in column 0).

    Args:
        X: (N, D) array or tensor of points. NaN/inf rows raise
            :class:`~geometry.errors.GeometryInputError`.
        k: number of neighbours (DADApy's ``maxk``); needs ``N > k``.
        metric: ``"euclidean"`` or ``"cosine"`` (distance ``1 - cos``, as
            scikit-learn and so DADApy report it).
        precision: ``"auto"`` (bf16 on CPUs with native bf16 when D >= 512,
            else float32), ``"bf16"``, ``"float32"`` or ``"float64"``: the
            precision of the candidate search. The result is the float64
            answer in every case (see the module docstring).
        chunk_size: query rows per block (memory ~ ``chunk_size * N * 4``
            bytes). Default: about 64 MB of scores per block.
        device: ``None``/``"auto"`` (CUDA when available), or a torch device.
        margin: extra candidates per row re-ranked in float64 (default
            depends on the precision).
        period: periodic boundaries (a scalar or one period per coordinate),
            as DADApy's ``compute_distances(period=...)``; coordinates are
            wrapped into [0, period). Distances are then computed directly in
            float64 (O(N^2 D), meant for low-dimensional data).
        on_duplicates: ``"raise"`` (default) raises
            :class:`~geometry.errors.DuplicatePointsError` when some
            points are identical (zero distances break every estimator);
            ``"warn"`` warns and keeps the zero distances, like DADApy's
            ``compute_distances``. Use :func:`remove_identical_points` first.
        method: ``"search"`` (default: low-precision candidates, float64
            re-ranking, see the module docstring) or ``"blocked"``: every
            distance in float64, ``chunk_size`` rows (default: ~256 MB blocks)
            times all points per matrix product, then ``topk``. The same table
            (ties by index); ``"blocked"`` is faster for large k (k >= 256, where
            re-ranking ~1.5 k candidates per row dominates) and costs O(N^2 D)
            float64 work. ``precision`` is ignored there.

    Returns:
        :class:`Neighbors` with float64 distances and int64 indices, shape (N, k+1).
    """
    if method not in ("search", "blocked"):
        raise GeometryInputError(f"method must be 'search' or 'blocked', got {method!r}.")
    Xt, dev = prepared_points(X, k, metric, precision, on_duplicates, device)
    N = Xt.shape[0]
    if method == "blocked":
        if period is not None:
            raise GeometryInputError("periodic boundaries are supported with method='search' only.")
        dist2, idx = dense_blocks(Xt, k, chunk_size or max(1, min(N, (1 << 28) // (8 * N))))
        nb = Neighbors(dist2 / 2.0 if metric == "cosine" else dist2.sqrt(), idx, metric, {"blocked_float64": N})
        _check_duplicates(Xt, nb, on_duplicates)
        return nb
    if period is not None:
        if metric != "euclidean":
            raise GeometryInputError("periodic boundaries are supported for metric='euclidean' only.")
        nb = _periodic_knn(Xt, k, period, chunk_size)
        _check_duplicates(Xt, nb, on_duplicates)
        return nb
    level0 = _auto_level(dev, Xt.shape[1]) if precision == "auto" else precision
    levels = _LEVELS[_LEVELS.index(level0):]
    with intraop_threads(SMALL_OP_THREADS) as threads:
        chunk = chunk_size or _default_chunk(N, dev)
        if chunk_size is None and dev.type == "cpu" and threads > 1:
            chunk = max(64, min(chunk, -(-N // (2 * threads))))  # >= 2 blocks per worker thread
        dist2, idx, stats = knn_blocks(Xt, k, levels, chunk, margin, threads)
    distances = dist2 / 2.0 if metric == "cosine" else dist2.sqrt()  # |a-b|^2 = 2 - 2cos (unit vectors)
    nb = Neighbors(distances, idx, metric, stats)
    _check_duplicates(Xt, nb, on_duplicates)
    return nb


def prepared_points(X: Any, k: int, metric: str, precision: str, on_duplicates: str, device: Any):
    """Validated arguments of a kNN search and its points as a tensor on the search device
    (unit-normalised for ``metric="cosine"``): ``(Xt, device)``. Shared by :func:`knn` and
    :func:`geometry.distributed.distributed_knn`."""
    if metric not in ("euclidean", "cosine"):
        raise GeometryInputError(f"metric must be 'euclidean' or 'cosine', got {metric!r}.")
    if precision not in ("auto",) + _LEVELS:
        raise GeometryInputError(f"precision must be one of auto/bf16/float32/float64, got {precision!r}.")
    if on_duplicates not in ("raise", "warn"):
        raise GeometryInputError("on_duplicates must be 'raise' or 'warn'.")
    dev = resolve_device(device, X)
    Xt = as_points(X, dev)
    check_k(Xt.shape[0], k)
    if metric == "cosine":
        nrm = Xt.norm(dim=1, keepdim=True)
        if bool((nrm == 0).any()):
            n0 = int((nrm == 0).sum())
            raise GeometryInputError(
                f"{n0} point(s) have zero norm, for which the cosine distance is undefined; drop them or use metric='euclidean'."
            )
        Xt = Xt / nrm
    return Xt, dev


def _periodic_knn(X: torch.Tensor, k: int, period: Any, chunk_size: int | None) -> Neighbors:
    N, D = X.shape
    L = torch.as_tensor(period, dtype=torch.float64, device=X.device).expand(D).contiguous()
    if bool((L <= 0).any()):
        raise GeometryInputError("period must be positive.")
    X = torch.remainder(X, L)
    Xt = X.T.contiguous()
    chunk = chunk_size or max(1, min(N, (1 << 21) // max(N, 1)))
    dist = torch.empty(N, k + 1, dtype=torch.float64, device=X.device)
    idx = torch.empty(N, k + 1, dtype=torch.int64, device=X.device)
    acc = torch.empty(chunk, N, dtype=torch.float64, device=X.device)
    tmp = torch.empty_like(acc)
    tmp2 = torch.empty_like(acc)
    for s in range(0, N, chunk):
        e = min(N, s + chunk)
        a, t, t2 = acc[: e - s], tmp[: e - s], tmp2[: e - s]
        a.zero_()
        for c in range(D):  # one coordinate at a time: O(chunk * N) memory
            torch.sub(X[s:e, c : c + 1], Xt[c : c + 1], out=t).abs_()
            torch.sub(L[c], t, out=t2)
            torch.minimum(t, t2, out=t)
            a.addcmul_(t, t)
        a[torch.arange(e - s, device=X.device), torch.arange(s, e, device=X.device)] = -1.0
        v, i = torch.topk(a, k + 1, dim=1, largest=False, sorted=True)
        dist[s:e], idx[s:e] = v.clamp(min=0.0).sqrt(), i
    return Neighbors(dist, idx, "euclidean", {"periodic": N})


def _check_duplicates(X: torch.Tensor, nb: Neighbors, on_duplicates: str) -> None:
    # An identical point is at distance 0, hence always the first neighbour.
    same = (X == X[nb.indices[:, 1]]).all(dim=1)
    n_pairs = int(same.sum())
    if n_pairs == 0:
        return
    _, keep = find_duplicates(X)
    n_dup = X.shape[0] - len(keep)
    msg = (
        f"{n_dup} of {X.shape[0]} points are duplicates of other points (zero distances), which "
        f"breaks ID/density estimates. Remove them first, e.g. `X_unique, kept = "
        f"remove_identical_points(X)` (and subset labels with `kept`), or use `Data(X)` which does it."
    )
    if on_duplicates == "raise":
        raise DuplicatePointsError(msg, n_dup)
    import warnings

    warnings.warn(msg, stacklevel=3)


def find_duplicates(X: Any) -> tuple[int, torch.Tensor]:
    """Number of redundant rows and the (sorted) indices of the rows to keep.

    The first occurrence of every distinct row is kept, in the original order.
    """
    Xt = X if isinstance(X, torch.Tensor) else torch.as_tensor(X)
    _, inverse = torch.unique(Xt, dim=0, return_inverse=True)
    n = Xt.shape[0]
    first = torch.full((int(inverse.max()) + 1,), n, dtype=torch.int64, device=Xt.device)
    first.scatter_reduce_(0, inverse, torch.arange(n, device=Xt.device), reduce="amin")
    keep = torch.sort(first).values
    return n - len(keep), keep


def remove_identical_points(X: Any, verbose: bool = True):
    """Drop numerically identical rows, as DADApy's ``Data.remove_identical_points``.

    Unlike DADApy (which returns ``np.unique`` rows, i.e. sorted), the first
    occurrence of each row is kept *in the original order*, and the kept row
    indices are returned so labels can be subset the same way.

    Returns:
        ``(X_unique, kept)``: same type as ``X`` (numpy in, numpy out), and
        the int64 indices of the kept rows.
    """
    is_torch = isinstance(X, torch.Tensor)
    Xt = X if is_torch else torch.as_tensor(X)
    n_removed, keep = find_duplicates(Xt)
    if verbose and n_removed:
        print(f"{n_removed} overlapping datapoints found: keeping {len(keep)} unique elements")
    out = Xt[keep]
    if not is_torch:
        return out.numpy(), keep.numpy()
    return out, keep
