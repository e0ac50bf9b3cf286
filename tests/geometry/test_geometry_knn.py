"""Exactness and memory behaviour of geometry.knn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import gaussian_mixture, rotated_sphere

import geometry as geo
import geometry._search as knn_mod


def brute(X, k, metric="euclidean"):
    X = torch.as_tensor(X, dtype=torch.float64)
    if metric == "cosine":
        Xn = X / X.norm(dim=1, keepdim=True)
        d = 1.0 - Xn @ Xn.T
    else:
        d = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1).sqrt()
    d.fill_diagonal_(-1.0)
    v, i = torch.sort(d, dim=1, stable=True)
    return v[:, : k + 1].clamp(min=0), i[:, : k + 1]


def datasets():
    rng = np.random.default_rng(0)
    low_rank = (rng.standard_normal((700, 8)) @ rng.standard_normal((8, 96)) + 0.2 * rng.standard_normal((700, 96)))
    X_gmm, _ = gaussian_mixture(700, 40, 3, sep=60.0, seed=1)  # far-off clusters: bf16 must escalate
    return {
        "low_rank_f32": low_rank.astype(np.float32),
        "sphere_in_64d": rotated_sphere(700, 2, 64, seed=2),
        "offset_gauss": rng.standard_normal((700, 20)) * 3 + 50.0,
        "far_clusters": X_gmm,
    }


@pytest.mark.parametrize("name", list(datasets()))
@pytest.mark.parametrize("precision", ["bf16", "float32", "float64"])
def test_knn_equals_float64_brute_force(name, precision):
    X = datasets()[name]
    ref_d, ref_i = brute(X, 40)
    nb = geo.knn(X, 40, precision=precision, chunk_size=96, device="cpu")  # 96 does not divide 700
    assert nb.distances.dtype == torch.float64 and nb.indices.dtype == torch.int64
    assert torch.equal(nb.indices[:, 0], torch.arange(700))
    assert torch.equal(nb.indices, ref_i)
    torch.testing.assert_close(nb.distances[:, 1:], ref_d[:, 1:], rtol=1e-9, atol=0)
    assert nb.distances[:, 0].eq(0).all()
    assert sum(nb.stats.values()) == 700


def test_bf16_escalates_when_it_cannot_certify():
    X = datasets()["far_clusters"]
    nb = geo.knn(X, 20, precision="bf16", chunk_size=128, device="cpu")
    assert nb.stats["float32"] + nb.stats["float64"] > 0  # some rows were redone at higher precision
    assert torch.equal(nb.indices, brute(X, 20)[1])


def test_cosine_metric():
    X = datasets()["low_rank_f32"]
    ref_d, ref_i = brute(X, 15, metric="cosine")
    nb = geo.knn(X, 15, metric="cosine", device="cpu")
    assert torch.equal(nb.indices, ref_i)
    torch.testing.assert_close(nb.distances[:, 1:], ref_d[:, 1:], rtol=1e-9, atol=1e-12)


def test_periodic_matches_kdtree():
    from scipy.spatial import cKDTree

    X = np.random.default_rng(4).random((800, 3))
    nb = geo.knn(X, 12, period=1.0, device="cpu")
    d, i = cKDTree(X, boxsize=1.0).query(X, k=13)
    np.testing.assert_array_equal(nb.indices.numpy(), i)
    np.testing.assert_allclose(nb.distances.numpy(), d, rtol=1e-12)


def test_blocks_are_bounded_not_n_by_n(monkeypatch):
    """The score matrix is built chunk_size rows at a time (never N x N)."""
    shapes = []
    orig = knn_mod._Searcher.scores

    def spy(self, level, rows):
        out = orig(self, level, rows)
        shapes.append(tuple(out.shape))
        return out

    monkeypatch.setattr(knn_mod._Searcher, "scores", spy)
    X = np.random.default_rng(5).standard_normal((6000, 3))
    nb = geo.knn(X, 5, chunk_size=512, device="cpu")
    assert max(s[0] for s in shapes) <= 512
    assert nb.indices.shape == (6000, 6)
    # default block for N = 100k: a few hundred rows (tens of MB), not 100k x 100k
    rows = knn_mod._default_chunk(100_000)
    assert rows * 100_000 * 4 <= 128 * 2**20


def test_duplicates_are_reported_and_removable():
    rng = np.random.default_rng(6)
    X = rng.standard_normal((300, 5))
    X[10] = X[3]
    X[20] = X[3]
    X[7] = X[250]
    with pytest.raises(geo.DuplicatePointsError) as e:
        geo.knn(X, 5, device="cpu")
    assert e.value.n_duplicates == 3 and "3 of 300 points" in str(e.value)
    with pytest.warns(UserWarning, match="duplicates"):
        nb = geo.knn(X, 5, on_duplicates="warn", device="cpu")
    assert (nb.distances[:, 1] == 0).sum() >= 4
    Xu, kept = geo.remove_identical_points(X, verbose=False)
    assert len(Xu) == 297 and list(kept[:12]) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12]
    assert geo.knn(Xu, 5, device="cpu").distances[:, 1].gt(0).all()
    d = pytest.warns(UserWarning, match="3 overlapping")
    with d:
        data = geo.Data(X, device="cpu")
    assert data.N == 297 and data.n_duplicates == 3


def test_accepts_numpy_torch_and_lists():
    X = np.random.default_rng(8).standard_normal((50, 4))
    a = geo.knn(X, 3, device="cpu")
    b = geo.knn(torch.as_tensor(X, dtype=torch.float32), 3, device="cpu")
    c = geo.knn(X.tolist(), 3, device="cpu")
    assert torch.equal(a.indices, b.indices) and torch.equal(a.indices, c.indices)
    assert a.truncate(2).distances.shape == (50, 3)
    d, i = a.numpy()
    assert isinstance(d, np.ndarray) and i.dtype == np.int64
