"""Representation geometry in torch: neighbours, intrinsic dimension,
densities, Advanced Density Peaks clustering, neighbourhood overlaps and
layer profiles -- numerically faithful to DADApy 0.3.4, batched and
device-agnostic (CUDA when available).

A bottom-level package: it imports numpy, scipy and torch (scikit-learn, pandas and
matplotlib inside the functions that need them) and nothing of this project, so ``saes``,
``steering`` and ``interp`` can all use it. (``interp.geometry`` re-exports it for older
imports; the ``interp geometry`` command lives in :mod:`interp.geometry.cli`.)

Functional API (arrays in: numpy or torch; arrays out: torch)::

    from geometry import (knn, compute_id_2nn, return_id_scaling_gride,
        compute_density_knn, compute_clustering_adp, label_overlap, data_overlap)

    nb = knn(X, k=100)                              # exact, self in column 0
    compute_id_2nn(nb)                              # TwoNN  -> IDEstimate(id, err, scale)
    return_id_scaling_gride(nb, range_max=64)       # Gride  -> IDScaling(ids, errs, scales)
    dens = compute_density_knn(nb, k=10)            # log-densities and errors
    adp = compute_clustering_adp(nb, dens, Z=1.65)  # ADPResult(labels, n_clusters, ...)
    label_overlap(nb, labels, k=30); data_overlap(nb, knn(Y, 100), k=30)

or the DADApy-like class ``Data(X)`` with the same verbs as methods, and
``layer_profile`` / ``select_layers_by_id`` for layer-wise analyses.

Importing this package is light: the names below load their module on first
use (torch then; scikit-learn, pandas, matplotlib only inside the functions
that need them; never transformers, transformer_lens or nnsight).

Precision: neighbours are found with bf16/float32 products and re-ranked and
certified in float64 (see ``geometry.neighbors``), so every result
equals the float64 computation DADApy does. Small array operations run with
one intra-op thread on the CPU (``geometry._utils.SMALL_OP_THREADS``):
many threads make each tiny op pay an OpenMP barrier, ruinous on a loaded
machine; the big products use all threads.
"""

_EXPORTS = {
    "adp": ("ADPResult", "compute_clustering_adp"),
    "data": ("Data",),
    "density": ("Density", "compute_density_knn", "compute_density_kstarnn", "compute_density_pak", "compute_kstar"),
    "errors": ("DuplicatePointsError", "GeometryInputError"),
    "intrinsic_dim": ("IDEstimate", "IDScaling", "compute_id_2nn", "compute_id_gride", "return_id_scaling_2nn",
                      "return_id_scaling_gride"),
    "neighbors": ("Neighbors", "find_duplicates", "knn", "remove_identical_points"),
    "overlap": ("adjusted_rand_index", "data_overlap", "homogeneity", "label_overlap"),
    "profile": ("layer_profile", "plot_profile", "save_profile", "select_layers_by_id"),
}
_WHERE = {name: mod for mod, names in _EXPORTS.items() for name in names}


def __getattr__(name):
    # Lazy exports: ``import geometry`` (and the CLI registration) does not import torch.
    if name in _WHERE:
        import importlib

        value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_WHERE))


__all__ = [
    "ADPResult",
    "Data",
    "Density",
    "DuplicatePointsError",
    "GeometryInputError",
    "IDEstimate",
    "IDScaling",
    "Neighbors",
    "adjusted_rand_index",
    "compute_clustering_adp",
    "compute_density_knn",
    "compute_density_kstarnn",
    "compute_density_pak",
    "compute_id_2nn",
    "compute_id_gride",
    "compute_kstar",
    "data_overlap",
    "find_duplicates",
    "homogeneity",
    "knn",
    "label_overlap",
    "layer_profile",
    "plot_profile",
    "remove_identical_points",
    "return_id_scaling_2nn",
    "return_id_scaling_gride",
    "save_profile",
    "select_layers_by_id",
]
