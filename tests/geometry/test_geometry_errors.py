"""Bad input: one clear GeometryInputError (a ValueError) each, saying what and how to fix."""

from __future__ import annotations

import numpy as np
import pytest

import geometry as geo
from geometry import GeometryInputError


def good(n=60, d=5, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d))


def test_error_class_is_a_value_error():
    assert issubclass(GeometryInputError, ValueError)
    assert issubclass(geo.DuplicatePointsError, GeometryInputError)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_inf_rows(bad):
    X = good()
    X[7, 2] = bad
    X[9, 0] = bad
    with pytest.raises(GeometryInputError, match=r"2 row\(s\) containing NaN or inf \(first rows: \[7, 9\]\).*drop or impute"):
        geo.knn(X, 5)
    with pytest.raises(GeometryInputError, match="NaN or inf"):
        geo.compute_id_2nn(X)
    with pytest.raises(GeometryInputError, match="NaN or inf"):
        geo.Data(X)


@pytest.mark.parametrize("n, k", [(5, 5), (5, 10), (1, 1)])
def test_n_not_larger_than_k(n, k):
    with pytest.raises(GeometryInputError, match=rf"N = {n} points but k = {k}.*Use k <= {n - 1}"):
        geo.knn(good(n), k)


def test_k_not_positive():
    with pytest.raises(GeometryInputError, match="positive integer"):
        geo.knn(good(), 0)


def test_all_identical_points():
    X = np.ones((40, 6))
    with pytest.raises(geo.DuplicatePointsError, match="39 of 40 points are duplicates.*remove_identical_points"):
        geo.knn(X, 5)
    with pytest.warns(UserWarning), pytest.raises(GeometryInputError, match="only 1 distinct point.*39 identical copies removed"):
        geo.Data(X)


def test_mismatched_label_length():
    X = good(80)
    nb = geo.knn(X, 10)
    with pytest.raises(GeometryInputError, match="labels has length 79 but the data have 80 points.*one label per point"):
        geo.label_overlap(nb, np.zeros(79, dtype=int), k=5)
    with pytest.raises(GeometryInputError, match="length 81 but the data have 80"):
        geo.layer_profile({"a": X, "b": X * 2}, labels=np.zeros(81, dtype=int))
    with pytest.raises(GeometryInputError, match="lengths 80 and 79"):
        geo.adjusted_rand_index(np.zeros(80), np.zeros(79))


def test_other_shapes_and_options():
    with pytest.raises(GeometryInputError, match="2-D array"):
        geo.knn(np.zeros(10), 3)
    with pytest.raises(GeometryInputError, match="metric must be"):
        geo.knn(good(), 3, metric="manhattan")
    with pytest.raises(GeometryInputError, match="zero norm"):
        X = good()
        X[3] = 0
        geo.knn(X, 3, metric="cosine")
    with pytest.raises(GeometryInputError, match="holds 3"):
        geo.return_id_scaling_gride(geo.knn(good(), 3), range_max=16)
    with pytest.raises(GeometryInputError, match="same points"):
        geo.layer_profile({"a": good(50), "b": good(60)})
    with pytest.raises(GeometryInputError, match="mu_fraction"):
        geo.compute_id_2nn(good(), mu_fraction=0.0)
    with pytest.raises(GeometryInputError, match="pass the points"):
        geo.compute_id_2nn(geo.knn(good(), 3), data_fraction=0.5)
