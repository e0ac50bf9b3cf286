"""``knn(method="blocked")``: the landscape's dense float64 search, now in geometry (one copy).

The reference below is ``interp.landscape.neighbors.blocked_knn`` as it was before the move
(verbatim body): the geometry path and the landscape's ``neighbor_table`` must reproduce it
bit for bit on a fixed seed, and agree with the default search.
"""
from __future__ import annotations

import pytest
import torch

import geometry
from geometry import GeometryInputError, knn


def old_blocked_knn(X, k, *, metric="euclidean", block_bytes=1 << 28):
    X = X.to(torch.float64)
    N = X.shape[0]
    if metric == "cosine":
        X = X / X.norm(dim=1, keepdim=True)
    Xc = X - X.mean(dim=0, keepdim=True)
    sq = (Xc * Xc).sum(dim=1)
    dist2 = torch.empty(N, k + 1, dtype=torch.float64)
    idx = torch.empty(N, k + 1, dtype=torch.int64)
    rows_per_block = max(1, min(N, block_bytes // (8 * N)))
    for s in range(0, N, rows_per_block):
        e = min(N, s + rows_per_block)
        d2 = torch.mm(Xc[s:e], Xc.T).mul_(-2.0).add_(sq[s:e, None]).add_(sq[None, :]).clamp_(min=0.0)
        r = torch.arange(e - s)
        d2[r, r + s] = -1.0
        vals, cols = torch.topk(d2, k + 1, dim=1, largest=False, sorted=False)
        order = torch.argsort(cols, dim=1)
        vals, cols = torch.gather(vals, 1, order), torch.gather(cols, 1, order)
        order = torch.argsort(vals, dim=1, stable=True)
        dist2[s:e], idx[s:e] = torch.gather(vals, 1, order), torch.gather(cols, 1, order)
    dist2[:, 0] = 0.0
    return (dist2 / 2.0 if metric == "cosine" else dist2.sqrt()), idx


@pytest.fixture(scope="module")
def X():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(400, 24, generator=g, dtype=torch.float64)
    X[:50] += 3.0
    return X


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_blocked_is_the_old_landscape_search_bit_for_bit(X, metric):
    from interp.landscape.neighbors import blocked_knn, neighbor_table

    ref_d, ref_i = old_blocked_knn(X, 300, metric=metric)
    for nb in (knn(X, 300, metric, method="blocked", device="cpu"), neighbor_table(X, 300, metric=metric, device="cpu")):
        assert torch.equal(nb.distances, ref_d) and torch.equal(nb.indices, ref_i)
        assert nb.stats == {"blocked_float64": 400} and nb.metric == metric
    ref_d, ref_i = old_blocked_knn(X, 120, metric=metric, block_bytes=8 * 400 * 37)  # several blocks
    nb = blocked_knn(X, 120, metric=metric, block_bytes=8 * 400 * 37)
    assert torch.equal(nb.distances, ref_d) and torch.equal(nb.indices, ref_i)
    assert torch.equal(knn(X, 120, metric, method="blocked", chunk_size=37, device="cpu").indices, ref_i)


def test_blocked_and_search_give_the_same_table(X):
    a, b = knn(X, 50, device="cpu"), knn(X, 50, method="blocked", device="cpu")
    assert torch.equal(a.indices, b.indices)
    torch.testing.assert_close(a.distances, b.distances, rtol=1e-12, atol=1e-12)


def test_blocked_checks_its_input(X):
    with pytest.raises(GeometryInputError, match="method must be 'search' or 'blocked'"):
        knn(X, 5, method="dense")
    with pytest.raises(GeometryInputError, match="periodic"):
        knn(X, 5, method="blocked", period=1.0)
    with pytest.raises(geometry.DuplicatePointsError):
        knn(torch.cat([X, X[:3]]), 5, method="blocked", device="cpu")
