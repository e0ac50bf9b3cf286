"""A small DADApy-like ``Data`` class: points plus cached neighbours.

Example::

    >>> from geometry import Data
    >>> d = Data(X)                          # doctest: +SKIP  (duplicates removed, reported)
    >>> d.compute_id_2nn()                   # doctest: +SKIP
    IDEstimate(id=9.8, err=0.0, scale=1.3)
    >>> d.compute_density_knn(k=10)          # doctest: +SKIP
    >>> d.compute_clustering_adp(Z=1.65).n_clusters   # doctest: +SKIP

Differences from DADApy, on purpose: identical points are removed at
construction (DADApy only warns; call ``remove_identical_points`` there)
with the count reported and the kept rows in ``kept_indices``; the first
occurrence of each point is kept in the original order (DADApy sorts).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from ._utils import as_points, resolve_device
from .adp import ADPResult, compute_clustering_adp
from .density import Density, compute_density_knn, compute_density_kstarnn, compute_density_pak, compute_kstar
from .errors import GeometryInputError, check_k
from .intrinsic_dim import (
    IDEstimate,
    IDScaling,
    compute_id_2nn,
    compute_id_gride,
    return_id_scaling_2nn,
    return_id_scaling_gride,
)
from .neighbors import Neighbors, find_duplicates, knn
from .overlap import data_overlap, label_overlap

__all__ = ["Data"]


class Data:
    """Points (N, D) with lazily computed, cached neighbours (``maxk`` of them).

    Args:
        X: the points.
        maxk: neighbours to store (DADApy default ``min(100, N - 1)``).
        metric: ``"euclidean"`` or ``"cosine"``.
        precision, device, chunk_size: see :func:`~geometry.knn`.
        remove_duplicates: drop identical rows (count in ``n_duplicates``).
        seed: seed of the decimation RNG, shared by successive calls as in
            DADApy's ``Data(rng_seed=42)``.
    """

    def __init__(self, X: Any, *, maxk: int | None = None, metric: str = "euclidean", precision: str = "auto",
                 device: Any = None, chunk_size: int | None = None, remove_duplicates: bool = True, seed: int = 42):
        self.device = resolve_device(device, X)
        Xt = as_points(X, self.device)
        self.n_duplicates = 0
        self.kept_indices = torch.arange(Xt.shape[0], device=self.device)
        if remove_duplicates:
            n_dup, keep = find_duplicates(Xt)
            if n_dup:
                warnings.warn(
                    f"{n_dup} overlapping datapoints found: keeping {len(keep)} unique elements "
                    f"(kept rows in Data.kept_indices).",
                    stacklevel=2,
                )
                Xt = Xt[keep]
                self.kept_indices = keep
                self.n_duplicates = n_dup
        self.X = Xt
        self.N = Xt.shape[0]
        if self.N < 3:
            raise GeometryInputError(
                f"only {self.N} distinct point(s) ({self.n_duplicates} identical copies removed): "
                f"neighbour statistics need at least 3 distinct points; check that the inputs differ."
            )
        self.maxk = min(100, self.N - 1) if maxk is None else int(maxk)
        check_k(self.N, self.maxk, "maxk")
        self.knn_kwargs = {"metric": metric, "precision": precision, "device": self.device, "chunk_size": chunk_size}
        self.rng = np.random.default_rng(seed)
        self._neighbors: Neighbors | None = None
        self.intrinsic_dim: float | None = None
        self.density: Density | None = None
        self.clustering: ADPResult | None = None

    # ------------------------------------------------------------------ neighbours
    @property
    def neighbors(self) -> Neighbors:
        if self._neighbors is None:
            self.compute_distances()
        return self._neighbors

    def compute_distances(self, maxk: int | None = None) -> Neighbors:
        """(Re)compute the neighbour table with ``maxk`` neighbours."""
        if maxk is not None:
            check_k(self.N, maxk, "maxk")
            self.maxk = int(maxk)
        self._neighbors = knn(self.X, self.maxk, **self.knn_kwargs)
        return self._neighbors

    def _nb_for(self, k: int) -> Any:
        """The cached table when it is deep enough, else the points (recomputed)."""
        return self.neighbors if k <= self.maxk else self.X

    # ------------------------------------------------------------------ intrinsic dimension
    def compute_id_2nn(self, **kw) -> IDEstimate:
        """TwoNN (see :func:`~geometry.compute_id_2nn`); sets ``intrinsic_dim``."""
        frac = kw.get("data_fraction", 1.0)
        src = self.neighbors if frac == 1 else self.X
        if frac != 1:
            kw.setdefault("rng", self.rng)
        est = compute_id_2nn(src, **kw, **self._kw())
        self.intrinsic_dim = est.id
        return est

    def compute_id_gride(self, n1: int = 1, n2: int = 2, **kw) -> IDEstimate:
        est = compute_id_gride(self._nb_for(n2), n1=n1, n2=n2, **kw, **self._kw())
        self.intrinsic_dim = est.id
        return est

    def return_id_scaling_2nn(self, **kw) -> IDScaling:
        """Decimation scan (does not change ``intrinsic_dim``, unlike DADApy)."""
        return return_id_scaling_2nn(self.X, neighbors=self.neighbors, **kw, **self._kw())

    def return_id_scaling_gride(self, range_max: int = 64, **kw) -> IDScaling:
        need = 2 ** int(np.log2(min(self.N, range_max)))
        src = self.neighbors if need <= self.maxk else self.X
        return return_id_scaling_gride(src, range_max=range_max, **kw, **self._kw())

    def set_id(self, d: float) -> None:
        if not d > 0:
            raise GeometryInputError(f"intrinsic dimension must be positive, got {d}.")
        self.intrinsic_dim = float(d)

    # ------------------------------------------------------------------ density / clustering
    def compute_density_knn(self, k: int = 10, bias: bool = False) -> Density:
        """k-NN density with ``intrinsic_dim`` (TwoNN when unset, as DADApy)."""
        self._ensure_id()
        self.density = compute_density_knn(self.neighbors, k, intrinsic_dim=self.intrinsic_dim, bias=bias)
        return self.density

    def compute_kstar(self, alpha: float = 1e-6) -> torch.Tensor:
        self._ensure_id()
        return compute_kstar(self.neighbors, self.intrinsic_dim, alpha=alpha)

    def compute_density_kstarnn(self, alpha: float = 1e-6) -> Density:
        self._ensure_id()
        self.density = compute_density_kstarnn(self.neighbors, intrinsic_dim=self.intrinsic_dim, alpha=alpha)
        return self.density

    def compute_density_pak(self, alpha: float = 1e-6) -> Density:
        self._ensure_id()
        self.density = compute_density_pak(self.neighbors, intrinsic_dim=self.intrinsic_dim, alpha=alpha)
        return self.density

    def compute_clustering_adp(self, Z: float = 1.65, halo: bool = False) -> ADPResult:
        """ADP on the current density (PAk when none was computed, as DADApy)."""
        if self.density is None:
            self.compute_density_pak()
        self.clustering = compute_clustering_adp(self.neighbors, self.density, Z=Z, halo=halo)
        return self.clustering

    # ------------------------------------------------------------------ overlaps
    def label_overlap(self, labels: Any, k: int | None = 30, **kw):
        labels = self._subset(labels)
        need = k if kw.get("class_fraction") is None else self.N
        return label_overlap(self.neighbors if need <= self.maxk else self.X, labels, k, **kw, **self._kw())

    def data_overlap(self, other: Any, k: int = 30, avg: bool = True):
        """Overlap with another representation of the same points (a ``Data``, points or a table)."""
        if isinstance(other, Data):
            other = other.neighbors if k <= other.maxk else other.X
        return data_overlap(self._nb_for(k), other, k, avg=avg, **self._kw())

    # ------------------------------------------------------------------ helpers
    def _kw(self) -> dict:
        return {k: v for k, v in self.knn_kwargs.items() if v is not None}

    def _ensure_id(self) -> None:
        if self.intrinsic_dim is None:
            self.compute_id_2nn()

    def _subset(self, labels: Any):
        if self.n_duplicates and len(labels) == len(self.kept_indices) + self.n_duplicates:
            idx = self.kept_indices.cpu().numpy()
            return labels[torch.as_tensor(idx)] if isinstance(labels, torch.Tensor) else np.asarray(labels)[idx]
        return labels
