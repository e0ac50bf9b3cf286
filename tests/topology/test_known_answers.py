"""Known answers: planted circles, static Betti numbers from gudhi, unions vs intersections."""
from collections import Counter

import numpy as np
import pytest

from interp.topology.complexes import clique_complex, knn_edges
from interp.topology.descriptors import (betti, births_relative_frequency, normalized_similarity,
                                         persistence_similarity, weighted_similarity)
from interp.topology.pipeline import layer_complexes, run_zigzag
from interp.topology.zigzag import zigzag_bars, zigzag_times

pytest.importorskip("dionysus")


def test_times_follow_the_authors_ranges():
    v = np.arange(3)[:, None]
    e_all = np.array([[0, 1]])
    layers = [[v, np.array([[0, 1], [1, 2]])], [v, e_all], [v, np.array([[0, 1], [0, 2]])]]
    simplices, times = zigzag_times(layers)
    got = {tuple(s): t for s, t in zip(simplices[1].tolist(), times[1])}
    # positions 0..4 = K0, K0∩K1, K1, K1∩K2, K2; a run a..b -> insert a+1, delete b+2
    assert got[(0, 1)] == [1.0, 6.0]
    assert got[(1, 2)] == [1.0, 2.0]
    assert got[(0, 2)] == [5.0, 6.0]
    assert times[0] == [[1.0, 6.0]] * 3


def test_circle_complex_counts():
    theta = np.linspace(0, 2 * np.pi, 20, endpoint=False)
    cx = clique_complex(knn_edges(np.c_[np.cos(theta), np.sin(theta)], 4), 20, 4)
    assert [len(s) for s in cx] == [20, 40, 20]  # i ~ i±1, i±2: a triangulated band


def test_planted_circles_betti_ps_and_bars(circles):
    L = 7
    flatten = [2, 5, None]
    res = run_zigzag(circles(flatten, L, born_at=[3]), k=4, max_dim=4, workers=1)
    bars = res.bars[0]
    h1 = bars.of_dim(1)
    alive = h1.death_layer > h1.birth_layer
    got = sorted(zip(h1.birth_layer[alive].tolist(), h1.death_layer[alive].tolist()))
    assert got == sorted([(0, 2), (0, 5), (0, L), (3, L)])
    expect_b1 = np.array([sum(1 for f in flatten if f is None or f > l) + (l >= 3) for l in range(L)])
    np.testing.assert_array_equal(res.betti[0, 1], expect_b1)
    np.testing.assert_array_equal(res.betti[0, 0], np.full(L, 4))
    assert res.betti[0, 2:].sum() == 0  # each segment end is a 5-clique: a full 4-simplex at m = 4
    ps = res.ps[0, 1]
    for a in range(L):
        for b in range(L):
            lo, hi = min(a, b), max(a, b)
            want = sum(1 for f in flatten if f is None or f > hi) + (lo >= 3)
            assert ps[a, b] == want, (a, b)
    np.testing.assert_array_equal(np.diag(ps), expect_b1)
    # Z_1(a, b) = PS / beta(a); its alpha = 0 average is the row mean
    z = res.z[0, 1]
    np.testing.assert_allclose(z, ps / expect_b1[:, None])
    np.testing.assert_allclose(res.z_bar[0.0][0, 1], z.mean(1))
    # finite-death H1 bars die at layers 2 and 5: the births' frequency (row = death layer) sits there
    f = births_relative_frequency(bars, 1, 0.0)
    np.testing.assert_allclose(f, np.eye(L)[2] * 0.5 + np.eye(L)[5] * 0.5)


def test_top_dimension_bars_are_truncation_artefacts(circles):
    # at m = 3 the 5-clique at each end of a segment is only its boundary: a spurious H3 class
    L = 7
    res = run_zigzag(circles([2, 5, None], L, born_at=[3]), k=4, max_dim=3, workers=1)
    segments = np.array([(l >= 2) + (l >= 5) + (l < 3) for l in range(L)])
    np.testing.assert_array_equal(res.betti[0, 3], 2 * segments)
    assert res.betti[0, 2].sum() == 0


def test_planted_components_h0(circles):
    res = run_zigzag(circles([None, None], 4), k=4, max_dim=2, workers=1)
    np.testing.assert_array_equal(res.ps[0, 0], np.full((4, 4), 2))


def _gudhi_betti(x, k, max_dim):
    gudhi = pytest.importorskip("gudhi")
    d2 = ((x[:, None] - x[None]) ** 2).sum(-1)
    np.fill_diagonal(d2, np.inf)
    nn = np.argsort(d2, 1, kind="stable")[:, :k]
    st = gudhi.SimplexTree()
    for i in range(len(x)):
        st.insert([i])
    for i in range(len(x)):
        for j in nn[i]:
            st.insert([i, int(j)])
    st.expansion(max_dim)
    st.compute_persistence(persistence_dim_max=True)
    b = list(st.betti_numbers()) + [0] * (max_dim + 1)
    return np.array(b[:max_dim + 1]), st


@pytest.mark.parametrize("seed", [0, 1])
def test_bars_alive_at_each_layer_equal_static_betti(drifting, seed):
    clouds = drifting(n_points=70, dim=4, n_layers=5, seed=seed)
    k, m = 5, 3
    cx = layer_complexes(clouds, k, m)
    bt = betti(zigzag_bars(cx), m)
    for layer, x in enumerate(clouds):
        want, st = _gudhi_betti(x, k, m)
        np.testing.assert_array_equal(bt[:, layer], want)
        mine = {tuple(r) for s in cx[layer] for r in s.tolist()}
        assert mine == {tuple(s) for s, _ in st.get_simplices()}  # same clique complex as gudhi's expansion
    assert bt[1].sum() > 0  # the example has loops to count


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_unions_and_intersections_agree_on_layers(drifting, seed):
    m = 3
    cx = layer_complexes(drifting(seed=seed), 5, m)
    bi, bu = zigzag_bars(cx, "intersection"), zigzag_bars(cx, "union")

    def layer_bars(b, p):
        keep = (b.dim == p) & (b.death_layer > b.birth_layer)
        return Counter(zip(b.birth_layer[keep].tolist(), b.death_layer[keep].tolist()))

    for p in range(m - 1):
        assert layer_bars(bi, p) == layer_bars(bu, p)
    assert sum(layer_bars(bi, 1).values()) > 0


def test_descriptors_match_brute_force():
    from interp.topology.zigzag import Bars

    rng = np.random.default_rng(3)
    L, n = 6, 400
    b = rng.integers(1, 2 * L, n)
    d = np.minimum(b + rng.integers(1, 2 * L, n), 2 * L)
    bars = Bars(rng.integers(0, 3, n), b, d, L)
    bl, dl = bars.birth_layer, bars.death_layer
    bt, ps = betti(bars, 2), persistence_similarity(bars, 2)
    for p in range(3):
        for a in range(L):
            assert bt[p, a] == np.sum((bars.dim == p) & (bars.birth - 1 <= 2 * a) & (2 * a < bars.death - 1))
            for c in range(L):
                lo, hi = min(a, c), max(a, c)
                assert ps[p, a, c] == np.sum((bars.dim == p) & (bl <= lo) & (dl > hi))
    z = normalized_similarity(ps, bt)
    for alpha in (-1.0, 0.5, 2.0):
        zb = weighted_similarity(z, alpha)
        for a in range(L):
            w = np.array([abs(a - j) ** alpha if (alpha >= 0 or j != a) else 1e-10 for j in range(L)])
            assert zb[1, a] == pytest.approx((z[1, a] * w).sum() / w.sum())
        # births: histogram [death, birth] of finite, non-degenerate bars, weighted, summed over births
        h = np.zeros((L, L))
        for x, y, q in zip(bl, dl, bars.dim):
            if q == 1 and y != x and y < L:
                h[y, x] += 1
        w = np.array([[abs(i - j) ** alpha if (alpha >= 0 or i != j) else 1e-10 for j in range(L)] for i in range(L)])
        ref = (h * w).sum(1) / w.sum(1)
        np.testing.assert_allclose(births_relative_frequency(bars, 1, alpha), ref / ref.sum())


def test_bars_equal_the_authors_pipeline(drifting):
    """Parity with the transcription of the authors' dense sklearn + gudhi + dionysus pipeline."""
    import importlib.util
    from pathlib import Path

    pytest.importorskip("sklearn")
    pytest.importorskip("gudhi")
    path = Path(__file__).resolve().parents[2] / "bench" / "zigzag_reference.py"
    spec = importlib.util.spec_from_file_location("zigzag_reference", path)
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    clouds = drifting(n_points=80, dim=6, n_layers=6, seed=5)
    ours = zigzag_bars(layer_complexes(clouds, 5, 3))
    got = Counter(zip(ours.dim.tolist(), ours.birth.tolist(), ours.death.tolist()))
    assert got == Counter(ref.authors_bars(clouds, knn=5, dim=3))
    assert any(k[0] == 1 for k in got)  # the example has 1-cycles


def test_subsets_are_disjoint_and_parallel_equals_serial(drifting):
    from geometry.errors import GeometryInputError
    from interp.topology.pipeline import subsets

    idx = subsets(100, 3, 30, seed=1)
    assert [len(i) for i in idx] == [30, 30, 30] and len(set(np.concatenate(idx))) == 90
    with pytest.raises(GeometryInputError, match="disjoint subsets"):
        subsets(100, 4, 30)
    clouds = drifting(n_points=120, dim=4, n_layers=4, seed=2)
    serial = run_zigzag(clouds, k=5, max_dim=2, n_subsets=2, subset_size=60, workers=1)
    parallel = run_zigzag(clouds, k=5, max_dim=2, n_subsets=2, subset_size=60, workers=2)
    np.testing.assert_array_equal(serial.ps, parallel.ps)
    assert not np.array_equal(serial.betti[0], serial.betti[1])  # two different subsets
    with pytest.raises(GeometryInputError, match="same points"):
        run_zigzag([clouds[0], clouds[1][:50]], k=5, max_dim=2)
