"""Input validation for :mod:`geometry`.

Every bad input raises :class:`GeometryInputError` (a :class:`ValueError`)
whose message says what was wrong *and* how to fix it.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = [
    "GeometryInputError",
    "DuplicatePointsError",
    "check_points",
    "check_k",
    "check_labels",
]


class GeometryInputError(ValueError):
    """Raised when data handed to :mod:`geometry` cannot be used as is."""


class DuplicatePointsError(GeometryInputError):
    """Raised when the data contain numerically identical points.

    Identical points give zero neighbour distances, which make every
    estimator here (TwoNN, Gride, kNN densities, ADP) ill defined.
    """

    def __init__(self, message: str, n_duplicates: int):
        super().__init__(message)
        self.n_duplicates = n_duplicates


def check_points(X: torch.Tensor, name: str = "X") -> None:
    """Check that ``X`` is a finite 2-D float matrix of shape (N, D)."""
    if X.ndim != 2:
        raise GeometryInputError(
            f"{name} must be a 2-D array of shape (N points, D features), got shape "
            f"{tuple(X.shape)}; reshape it, e.g. X.reshape(len(X), -1)."
        )
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise GeometryInputError(
            f"{name} is empty (shape {tuple(X.shape)}); pass at least a few points with at least one feature."
        )
    if not torch.is_floating_point(X):
        raise GeometryInputError(
            f"{name} has dtype {X.dtype}; pass floating point data (e.g. X.float())."
        )
    bad = ~torch.isfinite(X).all(dim=1)
    n_bad = int(bad.sum())
    if n_bad:
        first = torch.nonzero(bad).flatten()[:5].tolist()
        raise GeometryInputError(
            f"{name} has {n_bad} row(s) containing NaN or inf (first rows: {first}); "
            f"drop or impute them before the analysis, e.g. X = X[torch.isfinite(X).all(1)] "
            f"(and subset the labels the same way)."
        )


def check_k(n_points: int, k: int, what: str = "k") -> None:
    """Check that ``k`` neighbours can be found among ``n_points`` points."""
    if int(k) != k or k < 1:
        raise GeometryInputError(f"{what} must be a positive integer, got {k!r}.")
    if n_points <= k:
        raise GeometryInputError(
            f"Need more points than neighbours: N = {n_points} points but {what} = {k} "
            f"(each point has only N - 1 = {n_points - 1} neighbours). Use {what} <= {n_points - 1} "
            f"or pass more points."
        )


def check_labels(labels: Any, n_points: int, name: str = "labels") -> torch.Tensor:
    """Return ``labels`` as a 1-D int64 tensor of length ``n_points``.

    Arbitrary hashable labels (strings, floats) are mapped to integer codes.
    """
    if isinstance(labels, torch.Tensor):
        lab = labels.detach().cpu()
        if lab.ndim != 1:
            raise GeometryInputError(f"{name} must be 1-D, got shape {tuple(lab.shape)}; flatten it.")
        if torch.is_floating_point(lab):
            if not torch.isfinite(lab).all():
                raise GeometryInputError(f"{name} contain NaN/inf; drop those points or give them a class.")
            if not torch.equal(lab, lab.round()):
                raise GeometryInputError(
                    f"{name} are non-integer floats; pass class ids (ints or strings), not continuous values."
                )
        lab = lab.to(torch.int64)
    else:
        import numpy as np

        arr = np.asarray(labels)
        if arr.ndim != 1:
            raise GeometryInputError(f"{name} must be 1-D, got shape {arr.shape}; flatten it.")
        if arr.dtype.kind in "iub":
            lab = torch.as_tensor(arr.astype(np.int64))
        elif arr.dtype.kind == "f":
            if not np.isfinite(arr).all() or not np.array_equal(arr, np.round(arr)):
                raise GeometryInputError(
                    f"{name} must be class ids; got non-integer or non-finite floats."
                )
            lab = torch.as_tensor(arr.astype(np.int64))
        else:
            _, codes = np.unique(arr.astype(str), return_inverse=True)
            lab = torch.as_tensor(codes.astype(np.int64))
    if lab.shape[0] != n_points:
        raise GeometryInputError(
            f"{name} has length {lab.shape[0]} but the data have {n_points} points; "
            f"pass exactly one label per point (row), in the same order."
        )
    return lab
