"""Layer-by-layer geometry profiles and the ID-based layer choice.

:func:`layer_profile` summarises the representations of the same N inputs at
every layer: intrinsic dimension (TwoNN and Gride), number of ADP clusters,
ARI and homogeneity of the clusters against labels, label overlap, and
data overlap with the next layer.

:func:`select_layers_by_id` implements the unsupervised layer choice of
Valeriani, Doimo, Cuturello, Laio, Ansuini, Cazzaniga, "The geometry of
hidden representations of large transformer models" (NeurIPS 2023): the
layers at the relative minimum of the ID profile that follows its first
peak carry the most semantic information.

Example::

    >>> from geometry import layer_profile, select_layers_by_id, save_profile
    >>> df = layer_profile({"l0": X0, "l1": X1, "l2": X2}, labels=y)   # doctest: +SKIP
    >>> select_layers_by_id(df)                                        # doctest: +SKIP
    ['l1']
    >>> save_profile(df, "runs/geometry")   # profile.csv, id_profile.png, ari_profile.png
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ._utils import as_points, resolve_device
from .adp import compute_clustering_adp
from .density import compute_density_knn, compute_density_pak
from .errors import GeometryInputError, check_k, check_labels
from .intrinsic_dim import compute_id_2nn, compute_id_gride
from .neighbors import find_duplicates, knn
from .overlap import adjusted_rand_index, data_overlap, homogeneity, label_overlap

__all__ = ["layer_profile", "select_layers_by_id", "save_profile", "plot_profile"]


def layer_profile(
    reps_by_layer: Mapping[str, Any],
    labels: Any = None,
    *,
    maxk: int = 100,
    id_estimator: str = "twonn",
    gride_n1: int = 1,
    density: str = "pak",
    k_density: int = 10,
    Z: float = 1.65,
    overlap_k: int = 30,
    class_fraction: float | None = None,
    metric: str = "euclidean",
    precision: str = "auto",
    device: Any = None,
    chunk_size: int | None = None,
    out_dir: str | Path | None = None,
    verbose: bool = False,
):
    """Geometry of every layer -> a pandas DataFrame (one row per layer, in the given order).

    Args:
        reps_by_layer: layer name -> (N, D_layer) representations of the same N inputs.
        labels: optional N class labels (ARI, homogeneity, label overlap).
        maxk: neighbours stored per layer (DADApy default 100; ADP depends on it).
        id_estimator: which estimate fills the ``id`` column: ``"twonn"``
            (TwoNN, mu_fraction 0.9, as Valeriani et al.) or ``"gride"``
            (Gride with ``n1 = gride_n1``, ``n2 = 2 n1``).
        density: ``"pak"`` (DADApy's default for ADP) or ``"knn"`` (k = ``k_density``).
        Z: ADP merging threshold.
        overlap_k: neighbours for the label and data overlaps.
        class_fraction: use class-size-dependent k for the label overlap.
        metric, precision, device, chunk_size: see :func:`~geometry.knn`.
        out_dir: also write ``profile.csv``, ``id_profile.png`` and (with
            labels) ``ari_profile.png`` there (:func:`save_profile`).

    Returns:
        DataFrame with columns ``layer, n_points, id, id_twonn, id_gride,
        id_gride_err, n_clusters, ari, homogeneity, label_overlap,
        data_overlap_next``. Points identical to another point in any layer
        are dropped in all layers (count in ``df.attrs["n_duplicates_removed"]``).
    """
    import pandas as pd

    if id_estimator not in ("twonn", "gride"):
        raise GeometryInputError("id_estimator must be 'twonn' or 'gride'.")
    if density not in ("pak", "knn"):
        raise GeometryInputError("density must be 'pak' or 'knn'.")
    names = list(reps_by_layer)
    if not names:
        raise GeometryInputError("reps_by_layer is empty; pass at least one layer.")
    dev = resolve_device(device, next(iter(reps_by_layer.values())))
    sizes = {n: len(reps_by_layer[n]) for n in names}
    if len(set(sizes.values())) != 1:
        raise GeometryInputError(f"all layers must hold the same points; got sizes {sizes}.")
    N = sizes[names[0]]
    lab = check_labels(labels, N) if labels is not None else None

    # pass 1: points identical to another point in any layer (one layer in memory at a time)
    keep = torch.ones(N, dtype=torch.bool, device=dev)
    for n in names:
        _, kept = find_duplicates(as_points(reps_by_layer[n], dev, name=f"layer {n!r}"))
        mask = torch.zeros(N, dtype=torch.bool, device=dev)
        mask[kept] = True
        keep &= mask
    n_removed = int((~keep).sum())
    if n_removed:
        warnings.warn(f"{n_removed} points duplicate another point in some layer: dropped from all layers.", stacklevel=2)
        lab = lab[keep.cpu()] if lab is not None else None
    n_used = int(keep.sum())
    maxk = min(maxk, n_used - 1)
    check_k(n_used, max(maxk, overlap_k, 2 * gride_n1), "neighbours (maxk/overlap_k/2*gride_n1)")
    kw = dict(metric=metric, precision=precision, device=dev, chunk_size=chunk_size)

    # pass 2: one layer at a time; only the previous layer's neighbour table is kept
    rows, prev = [], None
    for n in names:
        X = as_points(reps_by_layer[n], dev, name=f"layer {n!r}")
        if n_removed:
            X = X[keep]
        nb = knn(X, maxk, **kw)
        twonn = compute_id_2nn(nb).id
        gride = compute_id_gride(nb, n1=gride_n1, n2=2 * gride_n1)
        dens = compute_density_pak(nb, intrinsic_dim=twonn) if density == "pak" else \
            compute_density_knn(nb, k_density, intrinsic_dim=twonn)
        adp = compute_clustering_adp(nb, dens, Z=Z)
        row = {
            "layer": n,
            "n_points": n_used,
            "id": twonn if id_estimator == "twonn" else gride.id,
            "id_twonn": twonn,
            "id_gride": gride.id,
            "id_gride_err": gride.err,
            "n_clusters": adp.n_clusters,
            "ari": math.nan,
            "homogeneity": math.nan,
            "label_overlap": math.nan,
            "data_overlap_next": math.nan,
        }
        if lab is not None:
            y = lab.numpy()
            row["ari"] = adjusted_rand_index(y, adp.labels)
            row["homogeneity"] = homogeneity(y, adp.labels)
            row["label_overlap"] = label_overlap(nb if class_fraction is None else X, lab, overlap_k,
                                                 class_fraction=class_fraction, **kw)
        if prev is not None:
            rows[-1]["data_overlap_next"] = data_overlap(prev, nb, overlap_k)
        rows.append(row)
        prev = nb
        del X
        if verbose:
            print(f"layer {n}: ID={row['id']:.2f} clusters={row['n_clusters']}")
    df = pd.DataFrame(rows)
    df.attrs["n_duplicates_removed"] = n_removed
    if out_dir is not None:
        save_profile(df, out_dir)
    return df


def select_layers_by_id(
    profile: Any,
    *,
    column: str = "id",
    layers: Sequence[str] | None = None,
    errors: Sequence[float] | None = None,
    err_column: str | None = "id_err",
    n_err: float = 3.0,
    min_prominence: float = 0.05,
    tolerance: float = 0.1,
    return_reason: bool = False,
):
    """Layers at the relative ID minimum after the first ID peak (Valeriani et al. 2023).

    Args:
        profile: a :func:`layer_profile` DataFrame, or a sequence of IDs
            (then ``layers`` names them; default: their positions).
        column: the ID column of the DataFrame.
        errors: the IDs' uncertainties (standard errors); default the DataFrame's
            ``err_column`` when present, else 0.
        n_err: how many standard errors make an error bar. The default 3 is what
            the authors plot (diegodoimo/geometry_representations,
            ``plot_id_overlap.py``: ``plt.errorbar(..., ids, 3 * err)``).
        min_prominence: a peak must stand out by this fraction of the ID range
            (max - min) to count, and the minimum must lie that far below it.
        tolerance: also return the layers adjacent to the minimum whose ID is
            within ``tolerance * (ID_peak - ID_min)`` of the minimum.
        return_reason: return ``(layers, reason)``; ``reason`` says why nothing
            was chosen ("" when layers were chosen).

    Returns:
        Layer names (in profile order); empty when no minimum was found.

    Rule: the first peak is the first local maximum with prominence >=
    ``min_prominence * range``; the candidate minimum is the lowest layer
    between it and the next such peak (or the end). It is accepted only when
    (a) it lies below the peak by more than ``min_prominence * range`` and by
    more than the two error bars (``n_err * (err_peak + err_min)``: the bars do
    not overlap), and (b) it is a *relative* minimum: some later layer rises
    above it by more than the two error bars. A profile that only declines
    after its peak, or whose dip is within the error bars, gives no minimum.
    """
    if hasattr(profile, "columns"):
        ids = np.asarray(profile[column], dtype=float)
        names = list(profile["layer"]) if "layer" in profile.columns else list(range(len(ids)))
        if errors is None and err_column and err_column in profile.columns:
            errors = profile[err_column]
    else:
        ids = np.asarray(profile, dtype=float)
        names = list(layers) if layers is not None else list(range(len(ids)))
    err = np.zeros(len(ids)) if errors is None else np.nan_to_num(np.asarray(errors, dtype=float), nan=0.0)
    if len(ids) != len(names) or len(err) != len(ids):
        raise GeometryInputError("layers, IDs and errors have different lengths.")
    if (err < 0).any():
        raise GeometryInputError("ID errors must be >= 0.")

    def done(chosen, reason):
        return (chosen, reason) if return_reason else chosen

    if len(ids) < 3 or not np.isfinite(ids).all():
        return done([], "fewer than 3 finite IDs")
    span = float(ids.max() - ids.min())
    if span <= 0:
        return done([], "the ID profile is flat")
    peaks = _prominent_peaks(ids, min_prominence * span)
    if not peaks:
        return done([], "the ID profile has no peak")
    p = peaks[0]
    end = peaks[1] if len(peaks) > 1 else len(ids)
    seg = ids[p + 1:end]
    if len(seg) == 0:
        return done([], "the first peak is the last layer")
    m = p + 1 + int(np.argmin(seg))
    drop = ids[p] - ids[m]
    if drop < min_prominence * span or drop <= n_err * (err[p] + err[m]):
        return done([], f"the dip after the first peak ({drop:.3g}) is within the error bars "
                        f"({n_err:g} x err: {n_err * (err[p] + err[m]):.3g}) or below the prominence threshold")
    later = np.arange(m + 1, len(ids))
    rise = ids[later] - ids[m] - n_err * (err[later] + err[m])
    if not len(later) or not (rise > 0).any():
        return done([], "the ID only declines after the first peak (no rise beyond the error bars after the "
                        "minimum): no relative minimum")
    thr = ids[m] + tolerance * drop
    lo = m
    while lo - 1 > p and ids[lo - 1] <= thr:
        lo -= 1
    hi = m
    while hi + 1 < end and ids[hi + 1] <= thr:
        hi += 1
    return done([names[i] for i in range(lo, hi + 1)], "")


def _prominent_peaks(y: np.ndarray, min_prom: float) -> list[int]:
    """First indices of local maxima (plateaus count once) with prominence >= ``min_prom``.

    The prominence is the height above the higher of the two lowest points
    reached, on each side, before meeting a higher value (one side only at
    the profile's ends).
    """
    n = len(y)
    peaks = []
    i = 0
    while i < n:
        j = i
        while j + 1 < n and y[j + 1] == y[i]:
            j += 1
        left = y[i - 1] if i > 0 else -np.inf
        right = y[j + 1] if j + 1 < n else -np.inf
        if y[i] > left and y[i] > right and not (i == 0 and j == n - 1):
            bases = []
            for side in (y[:i][::-1], y[j + 1:]):
                if len(side):
                    base = y[i]
                    for v in side:
                        if v > y[i]:
                            break
                        base = min(base, v)
                    bases.append(base)
            if y[i] - max(bases) >= min_prom:
                peaks.append(i)
        i = j + 1
    return peaks


def plot_profile(df, out_dir: str | Path, chosen: Sequence | None = None, *, model=None, site=None,
                 positions=None) -> list[Path]:
    """Save ``id_profile.png`` (and ``ari_profile.png`` when labels were given) in the shared style
    (:mod:`hooks.plot_style`): integer layer ticks (the number that changes between layer names; unnumbered
    names such as the final norm come after the last block), titles naming model, site and positions
    (keywords, else ``df.attrs``), legends outside the axes.
    """
    from hooks.plot_style import styled

    return styled(_plot_profile)(df, out_dir, chosen, model=model, site=site, positions=positions)


def _plot_profile(df, out_dir, chosen, *, model, site, positions) -> list[Path]:
    from hooks.plot_style import figure, layer_axis, layer_numbers, legend_outside, line_styles, save_figure, title_from

    out = Path(out_dir)
    nums, extra = layer_numbers(list(df["layer"]))
    x = np.asarray(nums)
    label = "layer" + "".join(f"  ({k} = {v})" for k, v in extra.items())
    meta = dict(model=model, site=site, positions=positions)
    st = line_styles(2, fill=False)
    paths = []

    fig, ax = figure(width=max(5.0, 0.3 * len(df) + 3))
    ax.plot(x, df["id_twonn"], label="TwoNN", **st[0])
    ax.errorbar(x, df["id_gride"], yerr=df["id_gride_err"], capsize=2, label="Gride (± err)", **st[1])
    for c in chosen or []:
        if str(c) in map(str, df["layer"]):
            ax.axvline(x[list(map(str, df["layer"])).index(str(c))], color="0.5", alpha=0.25, lw=6,
                       label="chosen layer")
    layer_axis(ax, x, label=label)
    ax.set_ylabel("intrinsic dimension")
    ax.set_title(title_from("Intrinsic dimension per layer", df.attrs, n=_n(df), **meta))
    legend_outside(ax)
    paths.append(save_figure(fig, out / "id_profile.png"))

    if df["ari"].notna().any():
        fig, ax = figure(width=max(5.0, 0.3 * len(df) + 3))
        ax.plot(x, df["ari"], label="ARI (ADP vs labels)", **st[0])
        ax.plot(x, df["label_overlap"], label="label overlap", **st[1])
        ax.set_ylim(-0.05, 1.05)
        layer_axis(ax, x, label=label)
        ax.set_ylabel("agreement with the labels")
        ax.set_title(title_from("Clusters vs labels per layer", df.attrs, n=_n(df), **meta))
        legend_outside(ax)
        paths.append(save_figure(fig, out / "ari_profile.png"))
    return paths


def _n(df):
    return int(df["n_points"].iloc[0]) if "n_points" in df and len(df) else None


def save_profile(df, out_dir: str | Path, chosen: Sequence | None = None) -> list[Path]:
    """Write ``profile.csv`` and the PNG plots into ``out_dir``; returns the paths."""
    from hooks.io import write_text_atomic

    out = Path(out_dir)
    csv = write_text_atomic(out / "profile.csv", df.to_csv(index=False))
    if chosen is None:
        chosen = select_layers_by_id(df)
    return [csv] + plot_profile(df, out, chosen)
