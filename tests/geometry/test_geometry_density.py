"""Known answers for the density estimators and the Data class."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import digamma

import geometry as geo


@pytest.fixture(scope="module")
def uniform_torus():
    X = np.random.default_rng(21).random((4000, 2))
    return X, geo.knn(X, 60, period=1.0, device="cpu")


def test_knn_density_of_a_uniform_distribution(uniform_torus):
    _, nb = uniform_torus
    k = 10
    dens = geo.compute_density_knn(nb, k=k, intrinsic_dim=2.0)
    # N V_k ~ Gamma(k, 1) for a unit density, so E[log rho_hat] = log k - digamma(k)
    assert float(dens.log_den.mean()) == pytest.approx(math.log(k) - digamma(k), abs=0.02)
    assert torch.allclose(dens.log_den_err, torch.full_like(dens.log_den_err, 1 / math.sqrt(k)))
    assert dens.kstar.eq(k).all() and dens.method == "knn"
    biased = geo.compute_density_knn(nb, k=k, intrinsic_dim=2.0, bias=True)
    assert (biased.log_den_err > dens.log_den_err).all()


def test_kstar_and_pak_on_a_uniform_distribution(uniform_torus):
    _, nb = uniform_torus
    kstar = geo.compute_kstar(nb, 2.0)
    # constant density: the likelihood-ratio test rarely stops before maxk - 1
    assert int(kstar.min()) >= 3 and int(kstar.max()) == nb.k - 1
    assert float((kstar == nb.k - 1).float().mean()) > 0.8
    pak = geo.compute_density_pak(nb, intrinsic_dim=2.0)
    assert abs(float(pak.log_den.mean())) < 0.05
    kf = pak.kstar.double()
    assert torch.allclose(pak.log_den_err, torch.sqrt((4 * kf + 2) / (kf * (kf - 1))))
    kstarnn = geo.compute_density_kstarnn(nb, intrinsic_dim=2.0)
    assert torch.equal(kstarnn.kstar, pak.kstar)


def test_density_tracks_a_gaussian():
    rng = np.random.default_rng(22)
    X = rng.standard_normal((4000, 2))
    true = -0.5 * (X**2).sum(1) - math.log(2 * math.pi)
    nb = geo.knn(X, 100, device="cpu")
    for dens in (geo.compute_density_knn(nb, k=20, intrinsic_dim=2.0), geo.compute_density_pak(nb, intrinsic_dim=2.0)):
        got = dens.log_den.numpy()
        assert np.corrcoef(got, true)[0, 1] > 0.95
        core = (X**2).sum(1) < 2.0  # away from the tails, the estimate is unbiased to ~0.1
        assert abs(np.mean(got[core] - true[core])) < 0.1


def test_density_id_falls_back_to_twonn():
    X = np.random.default_rng(23).standard_normal((1500, 3))
    nb = geo.knn(X, 30, device="cpu")
    dens = geo.compute_density_knn(nb, k=10)
    assert dens.intrinsic_dim == pytest.approx(geo.compute_id_2nn(nb).id, rel=1e-12)


def test_data_class_matches_functional_api():
    X = np.random.default_rng(24).standard_normal((1200, 6)) @ np.random.default_rng(25).standard_normal((6, 20))
    d = geo.Data(X, maxk=50, device="cpu")
    nb = geo.knn(X, 50, device="cpu")
    assert d.compute_id_2nn().id == pytest.approx(geo.compute_id_2nn(nb).id, rel=1e-12)
    assert d.intrinsic_dim is not None
    g1, g2 = d.return_id_scaling_gride(range_max=32), geo.return_id_scaling_gride(nb, range_max=32)
    assert torch.allclose(g1.ids, g2.ids)
    dens = d.compute_density_knn(k=10)
    assert torch.allclose(dens.log_den, geo.compute_density_knn(nb, k=10, intrinsic_dim=d.intrinsic_dim).log_den)
    res = d.compute_clustering_adp()
    assert d.density.method == "knn" and res.labels.shape == (1200,)
    # decimation: one RNG stream per Data object, as DADApy's Data(rng_seed=42)
    first = d.compute_id_2nn(data_fraction=0.5)
    assert first.id == pytest.approx(geo.compute_id_2nn(X, data_fraction=0.5, seed=42, device="cpu").id, rel=1e-12)
    assert d.compute_id_2nn(data_fraction=0.5).id != first.id
    y = (X[:, 0] > 0).astype(int)
    assert d.label_overlap(y, k=10) == pytest.approx(geo.label_overlap(nb, y, k=10))
    assert d.data_overlap(geo.Data(2 * X, maxk=50, device="cpu"), k=10) == 1.0
