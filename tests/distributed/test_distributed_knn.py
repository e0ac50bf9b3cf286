"""Distributed exact kNN (2 gloo ranks, query blocks) equals single-process knn exactly."""
from __future__ import annotations

import torch

from geometry import compute_density_knn, knn
from geometry.distributed import distributed_knn, rank_rows
from tests.distributed.launch import run_ranks


def _data():
    g = torch.Generator().manual_seed(0)
    # planted structure: clusters at several scales plus near-ties, so some rows need a second precision level
    centres = torch.randn(7, 24, generator=g, dtype=torch.float64) * 5
    X = centres[torch.randint(0, 7, (900,), generator=g)] + torch.randn(900, 24, generator=g, dtype=torch.float64)
    X[::50] *= 1e-3
    return X


def _worker(r, w, out, k, metric, chunk):
    from geometry import compute_density_knn

    nb = distributed_knn(_data(), k, metric, chunk_size=chunk)
    return nb.distances, nb.indices, nb.stats, compute_density_knn(nb, k=4, intrinsic_dim=3.0).log_den


def test_rank_rows_cover_every_row_once_in_whole_blocks():
    for n, chunk, w in [(900, 64, 2), (10, 64, 3), (1000, 7, 5), (1, 1, 4)]:
        spans = [rank_rows(n, chunk, r, w) for r in range(w)]
        assert spans[0][0] == 0 and spans[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
        assert all(s[0] % chunk == 0 for s in spans if s[0] < n)


def test_two_ranks_equal_single_process_exactly(tmp_path):
    cases = [(10, "euclidean", 64), (5, "cosine", 100)]
    for i, (k, metric, chunk) in enumerate(cases):
        outs = run_ranks(_worker, 2, tmp_path / str(i), k, metric, chunk)
        ref = knn(_data(), k, metric, precision="float32", chunk_size=chunk)
        for d, ix, stats, log_den in outs:
            assert torch.equal(d, ref.distances) and torch.equal(ix, ref.indices)
            assert sum(stats.values()) == 900 and stats == ref.stats
            assert torch.equal(log_den, compute_density_knn(ref, k=4, intrinsic_dim=3.0).log_den)
        # not a trivial equality: both ranks did work and brute force agrees
        full = torch.cdist(_data(), _data()) if metric == "euclidean" else None
        if full is not None:
            assert torch.equal(ref.indices[:, 1:], torch.sort(full, dim=1, stable=True).indices[:, 1:k + 1]) or \
                torch.allclose(ref.distances[:, 1:], torch.sort(full, dim=1).values[:, 1:k + 1], atol=1e-9)


def test_without_process_group_it_is_knn():
    nb = distributed_knn(_data(), 4, chunk_size=128)
    ref = knn(_data(), 4, precision="float32", chunk_size=128)
    assert torch.equal(nb.indices, ref.indices) and torch.equal(nb.distances, ref.distances)
