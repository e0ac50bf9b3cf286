"""Parity with DADApy 0.3.4 on stored reference outputs.

References: tests/data/dadapy/reference.json, produced by
bench/dadapy_reference/generate.py inside an isolated DADApy venv from the
arrays in tests/data/dadapy/datasets.npz (DADApy itself is not needed here).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest

import geometry as geo

DATA = Path(__file__).resolve().parents[1] / "data" / "dadapy"
MAXK = 100


@functools.lru_cache(maxsize=None)
def reference():
    with open(DATA / "reference.json") as fh:
        return json.load(fh)


@functools.lru_cache(maxsize=None)
def arrays():
    with np.load(DATA / "datasets.npz") as z:
        return {k: z[k] for k in z.files}


@functools.lru_cache(maxsize=None)
def neighbors(name, k=MAXK):
    return geo.knn(arrays()[name], k, device="cpu")


NAMES = sorted(reference()["datasets"])


def ref(name):
    return reference()["datasets"][name]


def rel(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300))


@pytest.mark.parametrize("name", NAMES)
def test_knn_matches_sklearn_brute_force(name):
    nb = neighbors(name)
    r = ref(name)
    idx = np.asarray(r["nn_indices_head"])
    np.testing.assert_array_equal(nb.indices[:200, :21].numpy(), idx)
    dist = np.asarray(r["nn_distances_head"])
    np.testing.assert_allclose(nb.distances[:200, 1:21].numpy(), dist[:, 1:], rtol=1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_twonn(name):
    r = ref(name)
    nb = neighbors(name)
    for key, kw in [("id_2nn", {}), ("id_2nn_ml", {"algorithm": "ml"}), ("id_2nn_mu1", {"mu_fraction": 1.0})]:
        est = geo.compute_id_2nn(nb, **kw)
        assert rel(est.id, r[key][0]) < 1e-4, key
        assert est.err == r[key][1] == 0.0
        assert rel(est.scale, r[key][2]) < 1e-8
    est = geo.compute_id_2nn(arrays()[name], data_fraction=0.25, seed=42, device="cpu")
    want = r["id_2nn_decimated_0.25"]
    assert rel(est.id, want[0]) < 1e-4
    assert rel(est.err, want[1]) < 1e-3
    assert rel(est.scale, want[2]) < 1e-8


@pytest.mark.parametrize("name", NAMES)
def test_twonn_decimation_scan(name):
    want = ref(name)["scaling_2nn"]
    got = geo.return_id_scaling_2nn(arrays()[name], n_min=10, seed=42, neighbors=neighbors(name), device="cpu")
    assert rel(got.ids, want["ids"]) < 1e-4
    np.testing.assert_allclose(got.errs, want["errs"], rtol=1e-3, atol=1e-9)
    assert rel(got.scales, want["scales"]) < 1e-8


@pytest.mark.parametrize("name", NAMES)
def test_gride_scan(name):
    r = ref(name)
    for key, rmax in [("scaling_gride_64", 64), ("scaling_gride_256", 256)]:
        if key not in r:
            continue
        data = neighbors(name) if rmax <= MAXK else neighbors(name, rmax)
        got = geo.return_id_scaling_gride(data, range_max=rmax)
        want = r[key]
        assert len(got.ids) == len(want["ids"])
        assert rel(got.ids, want["ids"]) < 1e-4, key
        assert rel(got.errs, want["errs"]) < 1e-4, key
        assert rel(got.scales, want["scales"]) < 1e-8, key


@pytest.mark.parametrize("name", NAMES)
def test_knn_density_and_adp(name):
    r = ref(name)
    nb = neighbors(name)
    dens = geo.compute_density_knn(nb, k=10)  # ID falls back to TwoNN, as DADApy
    want = r["density_knn10"]
    assert rel(dens.intrinsic_dim, want["id"]) < 1e-6
    np.testing.assert_allclose(dens.log_den.numpy(), want["log_den"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(dens.log_den_err.numpy(), want["log_den_err"], rtol=1e-12)
    for key, Z, halo in [("adp_knn10_Z1.65", 1.65, False), ("adp_knn10_Z1.65_halo", 1.65, True), ("adp_knn10_Z3", 3.0, False)]:
        res = geo.compute_clustering_adp(nb, dens, Z=Z, halo=halo)
        assert res.n_clusters == r[key]["n_clusters"], key
        assert geo.adjusted_rand_index(r[key]["labels"], res.labels) == 1.0, key
        np.testing.assert_array_equal(res.labels.numpy(), r[key]["labels"])
        if "centers" in r[key]:
            np.testing.assert_array_equal(res.centers.numpy(), r[key]["centers"])


@pytest.mark.parametrize("name", NAMES)
def test_pak_density_and_adp(name):
    r = ref(name)
    nb = neighbors(name)
    idv = geo.compute_id_2nn(nb).id
    dens = geo.compute_density_pak(nb, intrinsic_dim=idv)
    want = r["density_pak"]
    np.testing.assert_array_equal(dens.kstar.numpy(), want["kstar"])
    np.testing.assert_allclose(dens.log_den.numpy(), want["log_den"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dens.log_den_err.numpy(), want["log_den_err"], rtol=1e-12)
    res = geo.compute_clustering_adp(nb, dens, Z=1.65)
    assert res.n_clusters == r["adp_pak_Z1.65"]["n_clusters"]
    assert geo.adjusted_rand_index(r["adp_pak_Z1.65"]["labels"], res.labels) == 1.0


@pytest.mark.parametrize("name", [n for n in NAMES if "label_overlap_k30" in ref(n)])
def test_label_overlap(name):
    r = ref(name)
    labels = arrays()[name + "__labels"]
    nb = neighbors(name)
    assert geo.label_overlap(nb, labels, k=30) == pytest.approx(r["label_overlap_k30"], rel=1e-12)
    assert geo.label_overlap(nb, labels, k=30, weighted=False) == pytest.approx(r["label_overlap_k30_unweighted"], rel=1e-12)
    got = geo.label_overlap(arrays()[name], labels, class_fraction=0.05, device="cpu")
    assert got == pytest.approx(r["label_overlap_cf0.05"], rel=1e-12)


def test_data_overlap():
    r = ref("embedding_D128")
    a, b = neighbors("embedding_D128"), neighbors("embedding_next_D64")
    assert geo.data_overlap(a, b, k=30) == pytest.approx(r["data_overlap_k30"], rel=1e-12)
    assert geo.data_overlap(a, b, k=10) == pytest.approx(r["data_overlap_k10"], rel=1e-12)


def test_duplicates_count():
    X = arrays()["duplicates"]
    want = reference()["duplicates"]
    Xu, kept = geo.remove_identical_points(X, verbose=False)
    assert len(Xu) == want["n_unique"] and want["n_points"] - len(Xu) == 20
    with pytest.raises(geo.DuplicatePointsError) as err:
        geo.knn(X, 10, device="cpu")
    assert err.value.n_duplicates == 20
    assert "remove_identical_points" in str(err.value)
