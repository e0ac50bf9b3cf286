"""Exact float64 neighbour tables for the paper's large ``maxk`` (a work-around, see below).

The landscape stores ``maxk = 1000`` neighbours per point (Doimo et al., NeurIPS 2024; ADP scans
all of them). :func:`interp.geometry.knn` finds candidates with a low-precision product and then
re-ranks ``~1.5 maxk`` candidates per row in float64 by gathering their coordinates row by row
(``index_select`` + ``bmm``): at maxk = 1000 that moves ``N * 1.5k * D * 8`` bytes (490 GB for
N = 10k, D = 4096) and dominates the whole analysis (24 of 25 s at N = 2k, D = 1024 on a CPU).

:func:`blocked_knn` computes the same float64 table the plain way: blocks of rows times all points
as one float64 matrix product on centred data, then ``topk``; ties are ordered by index as in
:func:`interp.geometry.knn`. It returns a :class:`interp.geometry.Neighbors`, so every geometry
estimator consumes it unchanged. :func:`neighbor_table` picks it for large ``maxk`` and uses
``interp.geometry.knn`` otherwise. (Proposed upstream fix: in ``geometry``'s exact re-ranking,
compute ``X[rows] @ X.T`` in float64 and gather the candidate columns when the candidates are
more than a few percent of N; this module can then go.)

    from interp.landscape.neighbors import neighbor_table
    nb = neighbor_table(X, 1000, device="cuda")    # Neighbors: (N, 1001) float64 distances, int64 indices
"""
from __future__ import annotations

import torch

__all__ = ["blocked_knn", "neighbor_table", "BLOCKED_MIN_K"]

BLOCKED_MIN_K = 256


def blocked_knn(X: torch.Tensor, k: int, *, metric: str = "euclidean", block_bytes: int = 1 << 28):
    """Exact k nearest neighbours (self in column 0) of the float64 rows of ``X`` on ``X.device``.

    Memory: one (block, N) float64 block of about ``block_bytes`` plus the (N, k + 1) result.
    """
    from geometry import Neighbors

    if X.dtype != torch.float64:
        X = X.to(torch.float64)
    N = X.shape[0]
    if not 1 <= k < N:
        raise ValueError(f"need 1 <= k < N; got k = {k} for N = {N} points.")
    if metric == "cosine":
        X = X / X.norm(dim=1, keepdim=True)
    elif metric != "euclidean":
        raise ValueError(f"metric must be 'euclidean' or 'cosine', got {metric!r}.")
    Xc = X - X.mean(dim=0, keepdim=True)  # centring: smaller norms, smaller cancellation error
    sq = (Xc * Xc).sum(dim=1)
    dist2 = torch.empty(N, k + 1, dtype=torch.float64, device=X.device)
    idx = torch.empty(N, k + 1, dtype=torch.int64, device=X.device)
    rows_per_block = max(1, min(N, block_bytes // (8 * N)))
    for s in range(0, N, rows_per_block):
        e = min(N, s + rows_per_block)
        d2 = torch.mm(Xc[s:e], Xc.T).mul_(-2.0).add_(sq[s:e, None]).add_(sq[None, :]).clamp_(min=0.0)
        r = torch.arange(e - s, device=X.device)
        d2[r, r + s] = -1.0  # self first
        vals, cols = torch.topk(d2, k + 1, dim=1, largest=False, sorted=False)
        order = torch.argsort(cols, dim=1)  # deterministic: by distance, ties by index
        vals, cols = torch.gather(vals, 1, order), torch.gather(cols, 1, order)
        order = torch.argsort(vals, dim=1, stable=True)
        dist2[s:e], idx[s:e] = torch.gather(vals, 1, order), torch.gather(cols, 1, order)
    dist2[:, 0] = 0.0
    distances = dist2 / 2.0 if metric == "cosine" else dist2.sqrt()
    return Neighbors(distances, idx, metric, {"blocked_float64": N})


def neighbor_table(X: torch.Tensor, k: int, *, metric: str = "euclidean", precision: str = "auto",
                   device=None, chunk_size: int | None = None, method: str = "auto"):
    """Exact neighbour table: :func:`blocked_knn` when ``method="blocked"`` or (``"auto"``)
    ``k >= BLOCKED_MIN_K``; :func:`interp.geometry.knn` otherwise."""
    if method not in ("auto", "blocked", "geometry"):
        raise ValueError(f"neighbour method must be auto/blocked/geometry, got {method!r}.")
    if method == "blocked" or (method == "auto" and k >= BLOCKED_MIN_K):
        return blocked_knn(X.to(device) if device is not None else X, k, metric=metric)
    from geometry import knn

    return knn(X, k, metric=metric, precision=precision, device=device, chunk_size=chunk_size)
