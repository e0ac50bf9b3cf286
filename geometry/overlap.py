"""Neighbourhood overlaps (Doimo, Glielmo, Ansuini, Laio, NeurIPS 2020,
"Hierarchical nucleation in deep neural networks"), as DADApy 0.3.4
``MetricComparisons.return_label_overlap`` / ``return_data_overlap``.

* :func:`label_overlap` -- for each point, the fraction of its k nearest
  neighbours (self excluded) sharing its label. ``class_fraction=f`` uses
  ``k_c = max(1, int(f * n_c))`` neighbours for the points of class c
  instead of a fixed k. The average is *class-weighted* by default
  (``weighted=True``: weights 1/n_c, so every class counts the same), as in
  DADApy; ``weighted=False`` is the plain mean over points.
* :func:`data_overlap` -- for each point, the fraction of its k nearest
  neighbours common to two representations of the same points (default
  k = 30, as DADApy).

Plus thin wrappers of scikit-learn's :func:`adjusted_rand_score` and
:func:`homogeneity_score` (not re-implemented here).

Example::

    >>> from geometry import knn, label_overlap, data_overlap
    >>> label_overlap(knn(X, 30), labels, k=30)              # doctest: +SKIP
    0.93
    >>> data_overlap(knn(X_layer3, 30), knn(X_layer4, 30))   # doctest: +SKIP
    0.41
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from ._utils import small_ops
from .errors import GeometryInputError, check_labels
from .neighbors import Neighbors, knn

__all__ = ["label_overlap", "data_overlap", "adjusted_rand_index", "homogeneity"]


def _table(data: Any, k: int, **knn_kwargs) -> Neighbors:
    if isinstance(data, Neighbors):
        if data.k < k:
            raise GeometryInputError(
                f"the overlap needs {k} neighbours but the table holds {data.k}; recompute knn with k >= {k} or pass the points."
            )
        return data
    return knn(data, k, **knn_kwargs)


@small_ops
def label_overlap(
    data: Any,
    labels: Any,
    k: int | None = 30,
    *,
    avg: bool = True,
    class_fraction: float | None = None,
    weighted: bool = True,
    **knn_kwargs,
):
    """Neighbourhood overlap with class labels (DADApy ``return_label_overlap``).

    Args:
        data: points (N, D) or a :class:`Neighbors` table.
        labels: N class labels (ints, strings, ...).
        k: neighbours per point (ignored when ``class_fraction`` is given).
            DADApy has no default and requires ``k`` or ``class_fraction``;
            here it defaults to 30.
        avg: return the average (float) instead of the (N,) tensor.
        class_fraction: neighbours per point as a fraction of its class size.
        weighted: class-weighted average (DADApy default) vs plain mean.

    Returns:
        float in [0, 1] (or a per-point tensor with ``avg=False``).
    """
    n_points = data.n_points if isinstance(data, Neighbors) else len(data)
    lab = check_labels(labels, n_points)
    if k is None and class_fraction is None:
        raise GeometryInputError("give k or class_fraction.")
    _, inv, counts = torch.unique(lab, return_inverse=True, return_counts=True)
    if class_fraction is not None:
        if not 0 < class_fraction <= 1:
            raise GeometryInputError(f"class_fraction must be in (0, 1], got {class_fraction}.")
        k_class = (counts.to(torch.float64) * class_fraction).to(torch.int64)
        if bool((k_class == 0).any()):
            warnings.warn("class_fraction gives k < 1 for some classes: using k = 1 there.", stacklevel=2)
            k_class = k_class.clamp(min=1)
        k_per = k_class[inv]
        max_k = int(k_class.max())
    else:
        max_k = int(k)
        k_per = torch.full((n_points,), max_k, dtype=torch.int64)
    nb = _table(data, max_k, **knn_kwargs)
    dev = nb.indices.device
    lab, k_per, inv, counts = lab.to(dev), k_per.to(dev), inv.to(dev), counts.to(dev)
    nbr = nb.indices[:, 1 : max_k + 1]
    same = lab[nbr] == lab.unsqueeze(1)
    if class_fraction is not None:
        same &= torch.arange(max_k, device=dev).unsqueeze(0) < k_per.unsqueeze(1)
    overlaps = same.sum(dim=1).to(torch.float64) / k_per.to(torch.float64)
    if not avg:
        return overlaps
    if weighted:
        w = 1.0 / counts[inv].to(torch.float64)
        return float((overlaps * w).sum() / w.sum())
    return float(overlaps.mean())


@small_ops
def data_overlap(data_a: Any, data_b: Any, k: int = 30, *, avg: bool = True, **knn_kwargs):
    """Neighbourhood overlap between two representations of the same N points
    (DADApy ``return_data_overlap``): |NN_k^a(i) & NN_k^b(i)| / k.

    Args:
        data_a, data_b: points or :class:`Neighbors` tables, same N and order.
        k: neighbours per point (default 30).
        avg: mean over points (float) instead of the (N,) tensor.
    """
    a = _table(data_a, k, **knn_kwargs)
    b = _table(data_b, k, **knn_kwargs)
    if a.n_points != b.n_points:
        raise GeometryInputError(
            f"the two representations have {a.n_points} and {b.n_points} points; they must describe the same points in the same order."
        )
    ia = a.indices[:, 1 : k + 1]
    ib = b.indices[:, 1 : k + 1].to(ia.device)
    N = ia.shape[0]
    counts = torch.empty(N, dtype=torch.float64, device=ia.device)
    step = max(1, (1 << 24) // (k * k))
    for s in range(0, N, step):
        e = min(N, s + step)
        counts[s:e] = (ia[s:e].unsqueeze(2) == ib[s:e].unsqueeze(1)).any(dim=2).sum(dim=1).to(torch.float64)
    overlaps = counts / k
    return float(overlaps.mean()) if avg else overlaps


def adjusted_rand_index(labels_true: Any, labels_pred: Any) -> float:
    """Adjusted Rand index, :func:`sklearn.metrics.adjusted_rand_score`."""
    from sklearn.metrics import adjusted_rand_score

    t, p = _as_np(labels_true), _as_np(labels_pred)
    if len(t) != len(p):
        raise GeometryInputError(f"label arrays have lengths {len(t)} and {len(p)}; they must match.")
    return float(adjusted_rand_score(t, p))


def homogeneity(labels_true: Any, labels_pred: Any) -> float:
    """Homogeneity of the clusters w.r.t. the classes, :func:`sklearn.metrics.homogeneity_score`."""
    from sklearn.metrics import homogeneity_score

    t, p = _as_np(labels_true), _as_np(labels_pred)
    if len(t) != len(p):
        raise GeometryInputError(f"label arrays have lengths {len(t)} and {len(p)}; they must match.")
    return float(homogeneity_score(t, p))


def _as_np(x: Any):
    import numpy as np

    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)
