"""Known answers for the landscape: planted subject/letter clusters, duplicates, the paper's ID scale."""
import numpy as np
import pytest
import torch

from interp.landscape.analysis import METRICS, LandscapeConfig, landscape, layer_landscape, wide
from interp.landscape.errors import LandscapeInputError

N_PER, D = 60, 24


def planted(seed=0):
    """4 subjects x 60 questions, balanced random letters; layers with subject clusters, letter
    clusters, or neither (one Gaussian blob)."""
    rng = np.random.default_rng(seed)
    subjects = np.repeat(np.array(["astronomy", "biology", "chemistry", "history"]), N_PER)
    letters = rng.permutation(np.tile(np.array(list("ABCD")), N_PER))
    centres = rng.standard_normal((4, D)) * 3.0  # ~8.5 sigma apart

    def layer(kind):
        noise = rng.standard_normal((len(subjects), D))
        if kind == "subject":
            return centres[np.unique(subjects, return_inverse=True)[1]] + noise
        if kind == "letter":
            return centres[np.unique(letters, return_inverse=True)[1]] + noise
        return noise

    kinds = ["none", "subject", "subject", "letter", "letter", "none"]
    return {i: torch.tensor(layer(k)) for i, k in enumerate(kinds)}, kinds, subjects, letters


def test_planted_clusters_are_recovered_layer_by_layer():
    reps, kinds, subjects, letters = planted()
    table = landscape(reps, subjects, letters, LandscapeConfig(maxk=100, device="cpu"), condition="toy")
    assert list(table.columns) == ["condition", "layer", "metric", "value"]
    assert len(table) == len(reps) * len(METRICS) and set(table["metric"]) == set(METRICS)
    w = wide(table).set_index("layer")
    for layer, kind in enumerate(kinds):
        row = w.loc[layer]
        assert row["ari_subjects"] >= 0.9 if kind == "subject" else row["ari_subjects"] <= 0.1, (layer, kind)
        assert row["ari_letters"] >= 0.9 if kind == "letter" else row["ari_letters"] <= 0.1, (layer, kind)
        assert row["n_clusters"] == (4 if kind != "none" else 1)
        assert row["overlap_subjects"] > 0.95 if kind == "subject" else row["overlap_subjects"] < 0.45
        assert row["overlap_letters"] > 0.95 if kind == "letter" else row["overlap_letters"] < 0.45
        assert row["n_points"] == 4 * N_PER and row["n_duplicates"] == 0
    assert (w["id"] > 5).all() and (w["id"] < 40).all()  # every layer is 24-d Gaussian noise locally


def test_duplicates_are_removed_with_their_labels():
    reps, _, subjects, letters = planted(1)
    X = reps[1].clone()
    X[-10:] = X[:10]  # the last 10 questions get the representations of the first 10
    m = layer_landscape(X, subjects, letters, LandscapeConfig(maxk=100), return_labels=True)
    assert m["n_duplicates"] == 10 and m["n_points"] == 4 * N_PER - 10
    assert len(m["labels"]) == 4 * N_PER - 10 and m["kept"].tolist() == list(range(4 * N_PER - 10))


def test_id_is_gride_at_the_papers_scale():
    """Doimo et al.: ids = return_id_scaling_gride(range_max=maxk); id = ids[log2(k)] (k = 16)."""
    from geometry import return_id_scaling_gride

    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 6)) @ rng.standard_normal((6, 40))
    ids = return_id_scaling_gride(torch.tensor(X), range_max=200)[0]
    m = layer_landscape(X, ["s"] * 300, ["A"] * 300, LandscapeConfig(k=16, maxk=200))
    assert m["id"] == pytest.approx(float(ids[4]), rel=1e-9)
    assert 4.5 < m["id"] < 7.5


def test_core_fraction_matches_adp_halo():
    from geometry import compute_clustering_adp, compute_density_knn, compute_id_gride, knn

    rng = np.random.default_rng(0)  # two touching blobs: a saddle, hence a halo
    X = np.concatenate([rng.standard_normal((150, 2)), rng.standard_normal((150, 2)) + [3.5, 0]])
    nb = knn(X, 100)
    dens = compute_density_knn(nb, 16, intrinsic_dim=compute_id_gride(nb, n1=16, n2=32).id)
    halo = compute_clustering_adp(nb, dens, Z=1.6, halo=True)
    expected = float((halo.labels != -1).double().mean())
    m = layer_landscape(X, [0] * 150 + [1] * 150, [0] * 300, LandscapeConfig(maxk=100))
    assert halo.n_clusters >= 2 and 0 < expected < 1
    assert m["core_fraction"] == pytest.approx(expected)


def test_bad_inputs():
    X = torch.randn(40, 5)
    with pytest.raises(LandscapeInputError, match="more than 2k = 32"):
        layer_landscape(X[:30], ["s"] * 30, ["A"] * 30)
    with pytest.raises(LandscapeInputError, match="one label per point"):
        layer_landscape(X, ["s"] * 39, ["A"] * 40)
    bad = X.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(LandscapeInputError, match="NaN"):
        layer_landscape(bad, ["s"] * 40, ["A"] * 40)
    with pytest.raises(LandscapeInputError, match="maxk"):
        LandscapeConfig(k=16, maxk=20)
    with pytest.raises(LandscapeInputError):
        landscape({}, [], [])


def test_blocked_neighbours_equal_geometry_knn():
    from geometry import knn
    from interp.landscape.neighbors import blocked_knn, neighbor_table

    X = torch.tensor(np.random.default_rng(5).standard_normal((300, 20)))
    for metric in ("euclidean", "cosine"):
        ref = knn(X, 120, metric=metric)
        got = blocked_knn(X, 120, metric=metric, block_bytes=8 * 300 * 37)  # several blocks
        assert torch.equal(got.indices, ref.indices)
        assert torch.allclose(got.distances, ref.distances, rtol=1e-12, atol=1e-12)
    assert neighbor_table(X, 10).stats.get("blocked_float64") is None        # small k: geometry.knn
    assert neighbor_table(X, 256).stats == {"blocked_float64": 300}
    a = layer_landscape(X, ["s"] * 150 + ["t"] * 150, ["A"] * 300, LandscapeConfig(maxk=120, neighbors="blocked"))
    b = layer_landscape(X, ["s"] * 150 + ["t"] * 150, ["A"] * 300, LandscapeConfig(maxk=120, neighbors="geometry"))
    a.pop("seconds"), b.pop("seconds")
    assert a == pytest.approx(b, rel=1e-10)
