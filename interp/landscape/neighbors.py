"""Exact float64 neighbour tables for the paper's large ``maxk``.

The landscape stores ``maxk = 1000`` neighbours per point (Doimo et al., NeurIPS 2024; ADP scans
all of them). At that k, :func:`geometry.knn`'s default search re-ranks ``~1.5 maxk`` candidates
per row in float64 by gathering their coordinates (``N * 1.5k * D * 8`` bytes: 490 GB for
N = 10k, D = 4096; 24 of 25 s at N = 2k, D = 1024 on a CPU), so for large k the landscape asks
:func:`geometry.knn` for ``method="blocked"``: blocks of rows times all points as one float64
matrix product, then ``topk`` (the same table, ties by index). The code of both lives in
``geometry``; this module only holds the landscape's choice.

    from interp.landscape.neighbors import neighbor_table
    nb = neighbor_table(X, 1000, device="cuda")    # Neighbors: (N, 1001) float64 distances, int64 indices
"""
from __future__ import annotations

import torch

__all__ = ["blocked_knn", "neighbor_table", "BLOCKED_MIN_K"]

BLOCKED_MIN_K = 256


def blocked_knn(X: torch.Tensor, k: int, *, metric: str = "euclidean", block_bytes: int = 1 << 28):
    """Exact k nearest neighbours (self in column 0) of the rows of ``X`` on ``X.device``:
    :func:`geometry.knn` with ``method="blocked"`` and row blocks of about ``block_bytes``."""
    from geometry import knn

    N = X.shape[0]
    return knn(X, k, metric, method="blocked", device=X.device, chunk_size=max(1, min(N, block_bytes // (8 * max(N, 1)))))


def neighbor_table(X: torch.Tensor, k: int, *, metric: str = "euclidean", precision: str = "auto",
                   device=None, chunk_size: int | None = None, method: str = "auto"):
    """Exact neighbour table: :func:`geometry.knn` with ``method="blocked"`` when ``method="blocked"``
    or (``"auto"``) ``k >= BLOCKED_MIN_K``, its default search otherwise (``"geometry"``)."""
    if method not in ("auto", "blocked", "geometry"):
        raise ValueError(f"neighbour method must be auto/blocked/geometry, got {method!r}.")
    if method == "blocked" or (method == "auto" and k >= BLOCKED_MIN_K):
        return blocked_knn(X.to(device) if device is not None else X, k, metric=metric)
    from geometry import knn

    return knn(X, k, metric=metric, precision=precision, device=device, chunk_size=chunk_size)
