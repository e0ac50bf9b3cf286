"""The density landscape of one layer, and of every layer of a condition, as a tidy table.

Per layer (the recipe of Doimo et al., "The representation landscape of few-shot learning and
fine-tuning in large language models", NeurIPS 2024, computed with :mod:`geometry`):

1. identical points are removed (first occurrence kept; labels subset alike), per layer;
2. exact neighbours up to ``maxk`` (paper: 1000; ADP scans all of them);
3. intrinsic dimension with Gride at the scale matched to the density (n1 = k, n2 = 2k; for
   k = 16 this is ``return_id_scaling_gride(...)[0][log2 k]`` of the paper);
4. kNN log-density with k = 16 at that ID;
5. Advanced Density Peaks with Z = 1.6: number of clusters, adjusted Rand index of the
   clusters with the subjects and with the answer letters (scikit-learn's
   ``adjusted_rand_score``), and the fraction of core (non-halo) points;
6. label overlap of the neighbourhoods with subjects and letters (class_fraction = 0.3).

    from interp.landscape.analysis import LandscapeConfig, landscape
    table = landscape({0: X0, 1: X1}, subjects, letters, LandscapeConfig(), condition="5shot")
    table.pivot_table(index="layer", columns="metric", values="value")

The table is tidy: one row per (condition, layer, metric) with a float ``value``.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from .errors import LandscapeInputError, LandscapeWarning

__all__ = ["LandscapeConfig", "METRICS", "layer_landscape", "landscape", "wide"]

METRICS = ("n_points", "n_duplicates", "maxk_used", "maxk_capped", "id", "id_err", "n_clusters", "ari_subjects",
           "ari_letters", "overlap_subjects", "overlap_letters", "core_fraction")


@dataclass
class LandscapeConfig:
    """Landscape parameters (defaults: the paper's).

    Attributes:
        k: kNN order of the density; the ID is Gride at n1 = k, n2 = 2k.
        Z: ADP merging threshold.
        maxk: neighbours stored per layer (ADP depends on it; capped at N - 1).
        class_fraction: neighbourhood size of the label overlap, as a fraction of the class size.
        metric, precision, device, chunk_size: see :func:`geometry.knn`
            (``device=None``: CUDA when available).
        neighbors: ``"auto"`` (exact blocked float64 search for maxk >= 256, else
            ``geometry.knn``), ``"blocked"`` or ``"geometry"``; same table either way
            (see :mod:`interp.landscape.neighbors`).
    """

    k: int = 16
    Z: float = 1.6
    maxk: int = 1000
    class_fraction: float = 0.3
    metric: str = "euclidean"
    precision: str = "auto"
    device: Any = None
    chunk_size: int | None = None
    neighbors: str = "auto"

    def __post_init__(self):
        if int(self.k) != self.k or self.k < 1:
            raise LandscapeInputError(f"k must be a positive integer, got {self.k!r}.")
        if not self.Z > 0:
            raise LandscapeInputError(f"Z must be > 0, got {self.Z!r}.")
        if int(self.maxk) != self.maxk or self.maxk < 2 * self.k:
            raise LandscapeInputError(f"maxk={self.maxk!r} must be an integer >= 2k = {2 * self.k} (Gride uses the "
                                      f"2k-th neighbour).")
        if self.neighbors not in ("auto", "blocked", "geometry"):
            raise LandscapeInputError(f"neighbors must be auto/blocked/geometry, got {self.neighbors!r}.")
        if not 0 < self.class_fraction <= 1:
            raise LandscapeInputError(f"class_fraction must be in (0, 1], got {self.class_fraction!r}.")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["device"] = None if self.device is None else str(self.device)
        return d


def _codes(labels, n: int, name: str) -> np.ndarray:
    arr = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    if arr.ndim != 1 or len(arr) != n:
        raise LandscapeInputError(f"{name} must hold one label per point ({n}); got shape {arr.shape}.")
    return np.unique(arr.astype(str), return_inverse=True)[1].astype(np.int64)


def _device(cfg: LandscapeConfig, X) -> torch.device:
    if cfg.device is None or cfg.device == "auto":
        if isinstance(X, torch.Tensor) and X.device.type != "cpu":
            return X.device
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(cfg.device)


def _core_mask(adp, log_den: torch.Tensor) -> torch.Tensor:
    """Non-halo points: log density not below the highest saddle of their cluster
    (DADApy's ``halo=True`` rule, derived from one ADP run instead of a second one)."""
    lab = adp.labels.to(log_den.device)
    if adp.n_clusters == 0:
        return torch.zeros_like(lab, dtype=torch.bool)
    bord = adp.log_den_bord.to(log_den.device, torch.float64)
    halo_level = bord.max(dim=1).values
    ok = lab >= 0
    core = torch.zeros_like(lab, dtype=torch.bool)
    core[ok] = log_den[ok] >= halo_level[lab[ok]]
    return core


def layer_landscape(X, subjects, letters, cfg: LandscapeConfig | None = None, *, return_labels: bool = False) -> dict:
    """Landscape metrics of one layer's (N, D) representations (see the module docstring).

    Returns ``{metric: float}`` for :data:`METRICS` (and ``"seconds"``); with
    ``return_labels=True`` also ``"labels"`` (ADP clusters of the kept points) and ``"kept"``.
    """
    from geometry import (adjusted_rand_index, compute_clustering_adp, compute_density_knn,
                                 compute_id_gride, find_duplicates, label_overlap)

    from .neighbors import neighbor_table

    cfg = cfg or LandscapeConfig()
    t0 = time.perf_counter()
    dev = _device(cfg, X)
    Xt = torch.as_tensor(X) if not isinstance(X, torch.Tensor) else X.detach()
    if Xt.ndim != 2:
        raise LandscapeInputError(f"representations must be (N, D); got shape {tuple(Xt.shape)}.")
    N0 = Xt.shape[0]
    subj = _codes(subjects, N0, "subjects")
    lett = _codes(letters, N0, "letters")
    Xt = Xt.to(device=dev, dtype=torch.float64)
    if not bool(torch.isfinite(Xt).all()):
        raise LandscapeInputError("representations contain NaN/inf (an overflowing fp16 model?); extract in float32 "
                                  "or bfloat16.")
    n_dup, kept = find_duplicates(Xt)
    if n_dup:
        Xt = Xt[kept]
        kept_np = kept.cpu().numpy()
        subj, lett = subj[kept_np], lett[kept_np]
    N = Xt.shape[0]
    k = int(cfg.k)
    if N <= 2 * k:
        raise LandscapeInputError(f"{N} distinct points (after removing {n_dup} duplicates) but the landscape needs "
                                  f"more than 2k = {2 * k} (Gride uses the 2k-th neighbour); use more questions or a "
                                  f"smaller k.")
    maxk = min(int(cfg.maxk), N - 1)
    if maxk < int(cfg.maxk):
        warnings.warn(f"maxk={cfg.maxk} capped at N - 1 = {maxk} ({N} distinct points): ADP scans fewer neighbours "
                      f"than asked (the paper uses maxk = 1000); use more questions or a smaller maxk.", LandscapeWarning, stacklevel=2)
        out_cap = True
    else:
        out_cap = False
    kw = dict(metric=cfg.metric, precision=cfg.precision, device=dev, chunk_size=cfg.chunk_size,
              method=cfg.neighbors)
    nb = neighbor_table(Xt, maxk, **kw)
    gride = compute_id_gride(nb, n1=k, n2=2 * k)
    dens = compute_density_knn(nb, k, intrinsic_dim=gride.id)
    adp = compute_clustering_adp(nb, dens, Z=cfg.Z, halo=False)
    labels = adp.labels.cpu().numpy()
    core = _core_mask(adp, dens.log_den)

    def overlap(y: np.ndarray) -> float:
        counts = np.bincount(y)
        need = max(1, int(counts.max() * cfg.class_fraction))
        src = nb if need <= nb.k else neighbor_table(Xt, min(need, N - 1), **kw)  # only when maxk is too small
        with warnings.catch_warnings():  # classes with < 1/class_fraction points use k = 1, as DADApy
            warnings.simplefilter("ignore", UserWarning)
            return label_overlap(src, y, class_fraction=cfg.class_fraction)

    out = {
        "n_points": float(N),
        "n_duplicates": float(n_dup),
        "maxk_used": float(maxk),
        "maxk_capped": float(out_cap),
        "id": float(gride.id),
        "id_err": float(gride.err),
        "n_clusters": float(adp.n_clusters),
        "ari_subjects": adjusted_rand_index(subj, labels),
        "ari_letters": adjusted_rand_index(lett, labels),
        "overlap_subjects": float(overlap(subj)),
        "overlap_letters": float(overlap(lett)),
        "core_fraction": float(core.double().mean()),
    }
    out["seconds"] = time.perf_counter() - t0
    if return_labels:
        out["labels"] = labels
        out["kept"] = kept.cpu().numpy() if n_dup else np.arange(N0)
    return out


def landscape(reps_by_layer: Mapping, subjects: Sequence, letters: Sequence, cfg: LandscapeConfig | None = None, *,
              condition: str = "", log=None):
    """Tidy DataFrame ``condition, layer, metric, value`` over all layers of one condition.

    ``reps_by_layer``: layer (int or name) -> (N, D) representations of the same N prompts.
    Layers run one after the other on ``cfg.device`` (neighbour search dominates; each layer's
    table is computed once and shared by the ID, density, ADP and overlaps).
    """
    import pandas as pd

    cfg = cfg or LandscapeConfig()
    if not reps_by_layer:
        raise LandscapeInputError("no layers to analyse.")
    rows = []
    for layer, X in reps_by_layer.items():
        m = layer_landscape(X, subjects, letters, cfg)
        secs = m.pop("seconds")
        for metric, value in m.items():
            rows.append({"condition": condition, "layer": layer, "metric": metric, "value": float(value)})
        if log is not None:
            log(f"{condition} layer {layer}: ID {m['id']:.1f}, {int(m['n_clusters'])} clusters, "
                f"ARI subjects {m['ari_subjects']:.2f}, letters {m['ari_letters']:.2f} ({secs:.1f}s)")
    return pd.DataFrame(rows, columns=["condition", "layer", "metric", "value"])


def wide(table):
    """One row per (condition, layer), one column per metric."""
    w = table.pivot_table(index=["condition", "layer"], columns="metric", values="value", aggfunc="first")
    w.columns.name = None
    cols = [m for m in METRICS if m in w.columns] + [c for c in w.columns if c not in METRICS]
    return w[cols].reset_index()
