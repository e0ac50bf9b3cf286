"""Representations -> kNN clique complexes -> zigzag bars -> descriptors, over random subsets.

The paper's protocol (Gardinazzi et al. 2025, Sec. 4; ``src/zigzag/run_fast_zigzag.py`` run on
each split of ``src/plots/csv/split_sst/*/16_split``): 16 disjoint random subsets of 500
prompts out of 8,000, one zigzag per subset, mean and spread of every descriptor.

    >>> from interp.topology.pipeline import run_zigzag
    >>> res = run_zigzag(reps, k=5, max_dim=4, n_subsets=16, subset_size=500, seed=0)
    >>> res.bars[0], res.betti.shape          # (S, max_dim + 1, L)
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from .complexes import clique_complex, knn_edges
from .descriptors import (DEFAULT_ALPHAS, betti, births_relative_frequency, normalized_similarity,
                          persistence_similarity, weighted_similarity)
from .zigzag import Bars, zigzag_bars

__all__ = ["ZigzagResult", "layer_complexes", "subsets", "run_zigzag"]


@dataclass
class ZigzagResult:
    """Per-subset bars and stacked descriptors (first axis: subset)."""

    layer_names: list
    bars: list                     # one Bars per subset
    subset_indices: list           # point indices of each subset
    betti: np.ndarray              # (S, P, L)
    ps: np.ndarray                 # (S, P, L, L)
    z: np.ndarray                  # (S, P, L, L)
    z_bar: dict                    # alpha -> (S, P, L)
    births: dict                   # alpha -> (S, P, L)
    params: dict = field(default_factory=dict)

    @property
    def n_layers(self) -> int:
        return len(self.layer_names)


def _as_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def layer_complexes(clouds: list, k: int = 5, max_dim: int = 4, *, device=None) -> list:
    """One clique complex (list by dimension) per (N, D) cloud; all clouds must hold the same N points."""
    from geometry.errors import GeometryInputError

    n = {int(c.shape[0]) for c in clouds}
    if len(n) != 1:
        raise GeometryInputError(f"every layer must hold the same points; got point counts {sorted(n)}.")
    return [clique_complex(knn_edges(c, k, device=device), c.shape[0], max_dim) for c in clouds]


def subsets(n_points: int, n_subsets: int = 1, subset_size: int | None = None, seed: int = 0) -> list:
    """Disjoint random subsets of ``range(n_points)`` (one subset of all points by default)."""
    from geometry.errors import GeometryInputError

    if n_subsets < 1:
        raise GeometryInputError(f"--subsets {n_subsets}: need at least one subset.")
    size = subset_size if subset_size is not None else n_points // n_subsets
    if size < 2 or n_subsets * size > n_points:
        raise GeometryInputError(
            f"{n_subsets} disjoint subsets of {size} points need {n_subsets * size} points, but there are "
            f"{n_points}; lower --subsets or --subset-size (the paper: 16 x 500 out of 8,000).")
    if n_subsets == 1 and size == n_points:
        return [np.arange(n_points)]
    perm = np.random.default_rng(seed).permutation(n_points)
    return [np.sort(perm[i * size:(i + 1) * size]) for i in range(n_subsets)]


def _bars_job(args):
    clouds, k, max_dim, connect, device = args
    return zigzag_bars(layer_complexes(clouds, k, max_dim, device=device), connect)


def _init_worker():
    import torch

    torch.set_num_threads(1)  # one process per core already


def run_zigzag(reps, k: int = 5, max_dim: int = 4, *, n_subsets: int = 1, subset_size: int | None = None,
               seed: int = 0, alphas=DEFAULT_ALPHAS, connect: str = "intersection", workers: int | None = None,
               device=None) -> ZigzagResult:
    """The whole pipeline on ``reps`` (dict name -> (N, D), in layer order, or a list of clouds).

    ``workers`` processes (spawned, one torch thread each) run the subsets in parallel, kNN and
    complexes included (default: one per core, at most one per subset).
    """
    from geometry.errors import GeometryInputError

    if isinstance(reps, dict):
        names, clouds = list(reps), [_as_numpy(v) for v in reps.values()]
    else:
        clouds = [_as_numpy(v) for v in reps]
        names = [f"layer.{i}" for i in range(len(clouds))]
    if len(clouds) < 2:
        raise GeometryInputError(f"zigzag persistence needs at least 2 layers; got {len(clouds)}.")
    for nm, c in zip(names, clouds):
        if c.ndim != 2:
            raise GeometryInputError(f"layer {nm!r} has shape {c.shape}; each layer must be (N points, D features).")
    counts = sorted({int(c.shape[0]) for c in clouds})
    if len(counts) != 1:
        raise GeometryInputError(f"every layer must hold the same points; got point counts {counts}.")
    if max_dim < 1:
        raise GeometryInputError(f"--max-dim {max_dim}: need simplices of dimension >= 1 (the paper uses 4).")
    idx = subsets(clouds[0].shape[0], n_subsets, subset_size, seed)
    jobs = [([c[ix] for c in clouds], k, max_dim, connect, device) for ix in idx]
    workers = min(len(jobs), workers or os.cpu_count() or 1)
    if workers > 1:
        import multiprocessing as mp

        # spawn, not fork: the parent may hold torch/OpenMP thread pools (a forked child can hang)
        with mp.get_context("spawn").Pool(workers, initializer=_init_worker) as pool:
            bars = pool.map(_bars_job, jobs, chunksize=1)
    else:
        bars = [_bars_job(j) for j in jobs]
    return summarize(bars, names, idx, max_dim, alphas, params={
        "k": k, "max_dim": max_dim, "n_subsets": len(idx), "subset_size": int(len(idx[0])), "seed": seed,
        "connect": connect, "n_points": int(clouds[0].shape[0])})


def summarize(bars: list, names: list, idx: list, max_dim: int, alphas=DEFAULT_ALPHAS, params=None) -> ZigzagResult:
    """Stack the descriptors of each subset's bars."""
    bt = np.stack([betti(b, max_dim) for b in bars])
    ps = np.stack([persistence_similarity(b, max_dim) for b in bars])
    z = normalized_similarity(ps, bt)
    z_bar = {float(a): weighted_similarity(z, a) for a in alphas}
    births = {float(a): np.stack([[births_relative_frequency(b, p, a) for p in range(max_dim + 1)] for b in bars])
              for a in alphas}
    return ZigzagResult(list(names), bars, idx, bt, ps, z, z_bar, births, dict(params or {}))
