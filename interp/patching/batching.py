"""Which stacked rows go into which forward of a patching sweep (pure bookkeeping, no model).

    for cell_of, rows, cut in fast_batches(cells, active, cut, max_rows, kmax, width):
        ...   # one forward: base rows ``rows``, each patched at cell ``cell_of``, from column ``cut`` on
"""
from __future__ import annotations

import math

import torch

# what one forward costs beyond its rows, in token-rows (stacked rows × columns): the weight
# :func:`merge_cuts` gives an extra forward against the columns a merge recomputes. Speed only
# (any split gives the same table); 512 was best or tied among 32-2048 and no split, on
# bench/bench_patching.py (a 4-layer model, d_model 32 and 128, 8 × 16 tokens) on a 2-core
# CPU; GPUs and large models may want other values.
FORWARD_COST = 512


def fast_batches(cells: list, active: torch.Tensor, cut: torch.Tensor, max_rows: int, kmax: int, width: int):
    """``(cell of each stacked row, base row of each, prefix cut)`` per forward: per site, the
    active (cell, row) pairs grouped by their cut (the first column a patch changes when prefix
    reuse is on, else 0), at most ``max_rows`` rows and ``kmax`` cells per forward. Adjacent
    cuts share forwards (at the smaller cut) where that costs fewer token-rows than forwards of
    their own, each counted as :data:`FORWARD_COST` token-rows: :func:`merge_cuts`."""
    names = list(dict.fromkeys(c[0] for c in cells))
    site_of = torch.tensor([names.index(c[0]) for c in cells])
    cell_all, row_all = active.nonzero(as_tuple=True)
    cut_all = cut[cell_all, row_all]
    cuts, counts = cut_all.unique(return_counts=True)
    # the same runs of cuts for every site, run-major: each prefix is computed once
    for lo, hi in merge_cuts(cuts.tolist(), counts.tolist(), width, FORWARD_COST * len(names)):
        for k in range(len(names)):
            sel = (site_of[cell_all] == k) & (cut_all >= lo) & (cut_all <= hi)
            co, ro = cell_all[sel], row_all[sel]
            order = torch.argsort(co, stable=True)
            co, ro = co[order], ro[order]
            ids, counts_k = co.unique_consecutive(return_counts=True)
            ends = counts_k.cumsum(0)
            at = dict(zip(ids.tolist(), zip((ends - counts_k).tolist(), ends.tolist())))
            for chunk in chunks(ids.tolist(), lambda i: at[i][1] - at[i][0], max_rows, kmax):
                a, b = at[chunk[0]][0], at[chunk[-1]][1]
                yield co[a:b], ro[a:b], int(lo)


def merge_cuts(cuts: list, rows: list, width: int, overhead: int) -> list:
    """Split sorted cuts into runs ``[(lo, hi), ...]`` minimising the sum over runs of
    ``overhead + (rows in the run) × (width - lo)`` (token-rows computed; dynamic programming)."""
    n = len(cuts)
    best, back = [0.0] + [math.inf] * n, [0] * (n + 1)
    for j in range(1, n + 1):
        total = 0
        for i in range(j, 0, -1):  # run = cuts[i-1 .. j-1], computed from cuts[i-1]
            total += rows[i - 1]
            cost = best[i - 1] + overhead + total * (width - cuts[i - 1])
            if cost < best[j]:
                best[j], back[j] = cost, i - 1
    out, j = [], n
    while j > 0:
        out.append((cuts[back[j]], cuts[j - 1]))
        j = back[j]
    return out[::-1]


def chunks(ids: list, size, max_rows: int, kmax: int):
    """Consecutive cells (``size(i)`` stacked rows each), at most ``kmax`` cells and ``max_rows``
    rows per forward (at least one cell)."""
    chunk, n = [], 0
    for i in ids:
        k = size(i)
        if chunk and (n + k > max_rows or len(chunk) >= kmax):
            yield chunk
            chunk, n = [], 0
        chunk.append(i)
        n += k
    if chunk:
        yield chunk
