"""Exact k-nearest neighbours split over torch.distributed ranks by query blocks.

Every rank holds all N points (they are the keys of every query); rank r searches the query rows of
its contiguous range of blocks with the same exact machinery as :func:`geometry.knn` (low-precision
candidates, float64 re-ranking, per-row certification; ``_search._Searcher``), and the row tables are
all-gathered. Rows are independent and the block boundaries are the single-process ones, so the merged
table equals single-process ``knn`` exactly (tests/distributed/test_distributed_knn.py). Memory per rank:
the data plus ``chunk_size * N`` scores; compute per rank: N / world rows.

    # torchrun --nproc_per_node 8 my_script.py, with in my_script.py:
    torch.distributed.init_process_group("nccl")       # or "gloo" on CPU
    nb = distributed_knn(X, k=100)                     # the same Neighbors on every rank
    ide = compute_id_gride(nb)                         # every estimator that takes a table works unchanged:
    dens = compute_density_knn(nb, k=10)               # Gride, TwoNN, densities, ADP, overlaps

Without an initialised process group it is plain :func:`~geometry.knn`.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from ._search import _LEVELS, _Searcher, _auto_level, _default_chunk
from .neighbors import Neighbors, _check_duplicates, knn, prepared_points

__all__ = ["distributed_knn", "rank_rows"]


def rank_rows(n: int, chunk: int, r: int, w: int) -> tuple[int, int]:
    """Rows ``[start, stop)`` of rank ``r``: a contiguous run of whole ``chunk``-row blocks."""
    n_blocks = -(-n // chunk)
    b0, b1 = (n_blocks * r) // w, (n_blocks * (r + 1)) // w
    return min(n, b0 * chunk), min(n, b1 * chunk)


def _search_rows(s: _Searcher, levels, start: int, stop: int, chunk: int, k: int, dev) -> tuple:
    """The block loop of ``_search.knn_blocks`` for rows [start, stop) (same blocks, same level adaptation)."""
    n = stop - start
    dist2 = torch.empty(n, k + 1, dtype=torch.float64, device=dev)
    idx = torch.empty(n, k + 1, dtype=torch.int64, device=dev)
    stats = {lv: 0 for lv in levels}
    first = 0
    for c0 in range(start, stop, chunk):
        pending = torch.arange(c0, min(stop, c0 + chunk), device=dev)
        n_block = len(pending)
        level0 = first
        for li in range(level0, len(levels)):
            d2, nb, ok = s.search(pending, levels[li])
            if li == len(levels) - 1:
                ok = torch.ones_like(ok)
            dist2[pending[ok] - start] = d2[ok]
            idx[pending[ok] - start] = nb[ok]
            stats[levels[li]] += int(ok.sum())
            if li == level0 and li < len(levels) - 1 and int(ok.sum()) < 0.5 * n_block:
                first = max(first, li + 1)
            pending = pending[~ok]
            if len(pending) == 0:
                break
    return dist2, idx, stats


def _gather_rows(t: torch.Tensor, counts: list[int], group) -> torch.Tensor:
    """Concatenate each rank's rows (ranks hold ``counts[r]`` rows; padded to the max for all_gather)."""
    m = max(counts)
    comm_dev = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend(group) == "nccl" else torch.device("cpu")
    pad = torch.zeros(m, *t.shape[1:], dtype=t.dtype, device=comm_dev)
    pad[: t.shape[0]] = t.to(comm_dev)
    parts = [torch.empty_like(pad) for _ in counts]
    dist.all_gather(parts, pad, group=group)
    return torch.cat([p[:c] for p, c in zip(parts, counts)]).to(t.device)


def distributed_knn(X: Any, k: int, metric: str = "euclidean", *, precision: str = "float32",
                    chunk_size: int | None = None, device: Any = None, on_duplicates: str = "raise",
                    group=None) -> Neighbors:
    """:func:`~geometry.knn` with the query rows split over the ranks of ``group`` (default: world).

    Every rank must pass the same ``X`` and arguments; every rank gets the full table. ``precision``
    defaults to ``"float32"`` (not ``"auto"``) so that ranks on different CPUs pick the same candidate
    level; the answer is the float64 one either way. Periodic boundaries are not supported here.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return knn(X, k, metric, precision=precision, chunk_size=chunk_size, device=device, on_duplicates=on_duplicates)
    Xt, dev = prepared_points(X, k, metric, precision, on_duplicates, device)
    N = Xt.shape[0]
    level0 = _auto_level(dev, Xt.shape[1]) if precision == "auto" else precision
    levels = _LEVELS[_LEVELS.index(level0):]
    chunk = chunk_size or _default_chunk(N, dev)
    r, w = dist.get_rank(group), dist.get_world_size(group)
    start, stop = rank_rows(N, chunk, r, w)
    s = _Searcher(Xt, k, None, chunk, 1)
    d2, idx, stats = _search_rows(s, levels, start, stop, chunk, k, dev)
    counts = [rank_rows(N, chunk, q, w)[1] - rank_rows(N, chunk, q, w)[0] for q in range(w)]
    dist2 = _gather_rows(d2, counts, group)
    idx = _gather_rows(idx, counts, group)
    st = torch.tensor([stats[lv] for lv in levels], dtype=torch.int64)
    if dist.get_backend(group) == "nccl":
        st = st.cuda()
    dist.all_reduce(st, group=group)
    dist2[:, 0] = 0.0
    distances = dist2 / 2.0 if metric == "cosine" else dist2.sqrt()
    nb = Neighbors(distances, idx, metric, {lv: int(v) for lv, v in zip(levels, st.tolist())})
    _check_duplicates(Xt, nb, on_duplicates)
    return nb
