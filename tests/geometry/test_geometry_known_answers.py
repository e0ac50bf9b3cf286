"""Known answers: intrinsic dimension of manifolds, clusters, overlaps.

IDs are checked within 5% at N = 5000 for d in {2, 5, 10}. Two cases cannot
meet 5% at N = 5000 with any published variant and are pinned to their
documented bias instead (not hidden behind a looser tolerance):

* the *plain* hypercube at d = 5 and 10: the nearest-neighbour distance is
  ~0.15 (d=5) and ~0.4 (d=10) of the side, so many (d=5) or nearly all
  (d=10) neighbourhoods are cut by the boundary; every estimator (TwoNN,
  its decimations, Gride at every n1) reads low: ~4.7-4.9 at d=5, ~8.7 at
  d=10, and larger scales only make it worse. The estimator papers
  benchmark hypercubes with periodic boundary conditions; with them
  (``period=1``, as DADApy's ``period``) d = 2, 5, 10 are all recovered
  within 5% (measured within 2%). The plain cube is tested within 5% at d=2.
* the 10-sphere: its curvature at the nearest-neighbour scale biases every
  estimate low: TwoNN averages 9.40 at N=5k, 9.57 at 20k, 9.65 at 50k
  (3 seeds each), so 5% at N = 5k holds only for some samples.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import hypercube, rotated_sphere, swiss_roll

import geometry as geo

N = 5000


def _ids(nb):
    twonn = geo.compute_id_2nn(nb).id
    gride = geo.return_id_scaling_gride(nb, range_max=4)  # n1 = 1, 2
    return twonn, gride.ids.numpy()


@pytest.mark.parametrize("d", [2, 5, 10])
def test_hypercube_periodic(d):
    X = hypercube(N, d, seed=100 + d)
    nb = geo.knn(X, 4, period=1.0, device="cpu")
    twonn, gride = _ids(nb)
    assert twonn == pytest.approx(d, rel=0.05)
    assert np.all(np.abs(gride / d - 1) < 0.05), gride


def test_hypercube_d2():
    X = hypercube(N, 2, seed=202)
    twonn, gride = _ids(geo.knn(X, 4, device="cpu"))
    assert twonn == pytest.approx(2, rel=0.05)
    assert np.all(np.abs(gride / 2 - 1) < 0.05), gride


@pytest.mark.parametrize("d, lo, hi", [(5, 4.5, 5.0), (10, 8.2, 9.3)])
def test_hypercube_boundary_bias_is_the_known_one(d, lo, hi):
    X = hypercube(N, d, seed=200 + d)
    twonn, gride = _ids(geo.knn(X, 4, device="cpu"))
    # documented boundary bias (module docstring): low, not an estimator bug
    assert lo < twonn < hi
    assert lo < gride[0] < hi


@pytest.mark.parametrize("d", [2, 5])
def test_rotated_sphere(d):
    X = rotated_sphere(N, d, 64, seed=1000 + d)
    twonn, gride = _ids(geo.knn(X, 4, device="cpu"))
    assert twonn == pytest.approx(d, rel=0.05)
    assert np.all(np.abs(gride / d - 1) < 0.05), gride


def test_rotated_10_sphere_curvature_bias():
    X = rotated_sphere(N, 10, 64, seed=1010)
    twonn, gride = _ids(geo.knn(X, 4, device="cpu"))
    # documented curvature bias (module docstring): low by ~5% at N = 5000
    assert 9.0 < twonn < 10.0
    assert 9.0 < gride[0] < 10.0


def test_swiss_roll():
    X = swiss_roll(N, seed=1002)
    twonn, gride = _ids(geo.knn(X, 4, device="cpu"))
    assert twonn == pytest.approx(2, rel=0.05)
    assert np.all(np.abs(gride / 2 - 1) < 0.05), gride


def test_twonn_decimation_and_ml_on_a_plane():
    # a 3-d linear subspace of R^40: flat, no boundary issue at these scales
    rng = np.random.default_rng(7)
    n = 2000
    X = rng.standard_normal((n, 3)) @ rng.standard_normal((3, 40))
    assert geo.compute_id_2nn(X, algorithm="ml", device="cpu").id == pytest.approx(3, rel=0.05)
    scan = geo.return_id_scaling_2nn(X, device="cpu", return_sizes=True)
    assert scan.scales[0] == n and scan.scales[1] == n // 2
    assert np.all(np.abs(scan.ids.numpy()[:5] / 3 - 1) < 0.08)
    assert scan.errs[0] == 0 and np.all(scan.errs.numpy()[1:] > 0)


def test_adp_recovers_separated_gaussian_mixture(gmm_separated):
    X, y = gmm_separated
    nb = geo.knn(X, 100, device="cpu")
    for dens in (geo.compute_density_pak(nb), geo.compute_density_knn(nb, k=10)):
        res = geo.compute_clustering_adp(nb, dens, Z=1.65)
        assert geo.adjusted_rand_index(y, res.labels) >= 0.95
        # PAk also splits off a 7-point tail fluctuation (as DADApy does); kNN finds exactly 4
        assert res.n_clusters == (4 if dens.method == "knn" else 5)


def test_adp_data_class_default_pipeline(gmm_separated):
    X, y = gmm_separated
    d = geo.Data(X, device="cpu")
    res = d.compute_clustering_adp()  # PAk density by default, as DADApy
    assert d.density.method == "pak"
    assert geo.adjusted_rand_index(y, res.labels) >= 0.95
    halo = d.compute_clustering_adp(halo=True)
    assert (halo.labels == -1).any() and (halo.labels[halo.labels >= 0] == res.labels[halo.labels >= 0]).all()


def test_label_overlap_separated_and_shuffled(gmm_separated):
    X, y = gmm_separated
    nb = geo.knn(X, 30, device="cpu")
    assert geo.label_overlap(nb, y, k=30) == 1.0
    assert geo.label_overlap(nb, y, k=30, weighted=False) == 1.0
    # imbalanced random labels: per-class overlap ~ class frequency
    rng = np.random.default_rng(3)
    p = np.array([0.5, 0.3, 0.2])
    shuffled = rng.choice(3, size=len(y), p=p)
    freq = np.bincount(shuffled) / len(y)
    per_point = geo.label_overlap(nb, shuffled, k=30, avg=False).numpy()
    for c in range(3):
        assert per_point[shuffled == c].mean() == pytest.approx(freq[c], abs=0.02)
    assert geo.label_overlap(nb, shuffled, k=30, weighted=False) == pytest.approx((freq**2).sum(), abs=0.02)
    assert geo.label_overlap(nb, shuffled, k=30) == pytest.approx(1 / 3, abs=0.02)  # class-weighted
    # class_fraction: k_c = int(0.01 * n_c)
    got = geo.label_overlap(X, y, class_fraction=0.01, device="cpu")
    assert got == 1.0


def test_data_overlap_known_values():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((1500, 12))
    Q, _ = np.linalg.qr(rng.standard_normal((12, 12)))
    a = geo.knn(X, 30, device="cpu")
    assert geo.data_overlap(a, geo.knn(3.0 * X @ Q + 1.0, 30, device="cpu")) == 1.0  # similarity transform
    other = geo.knn(rng.standard_normal((1500, 12)), 30, device="cpu")
    assert geo.data_overlap(a, other) == pytest.approx(30 / 1499, abs=0.01)  # independent: chance level
    per = geo.data_overlap(a, a, k=10, avg=False)
    assert per.shape == (1500,) and torch.all(per == 1.0)


def test_gride_scan_shape_and_scales():
    X = rotated_sphere(3000, 3, 20, seed=9)
    g = geo.return_id_scaling_gride(X, range_max=64, return_ranks=True, device="cpu")
    assert g.scales.tolist() == [2, 4, 8, 16, 32, 64]
    assert np.all(np.abs(g.ids.numpy()[:3] / 3 - 1) < 0.05)
    assert np.all(g.errs.numpy() > 0)
    single = geo.compute_id_gride(X, n1=4, n2=8, device="cpu")
    assert single.id == pytest.approx(float(g.ids[2]), rel=1e-12)
