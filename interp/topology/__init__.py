"""Topology across layers: zigzag persistence of kNN clique complexes (Gardinazzi et al. 2025).

"Persistent Topological Features in Large Language Models" (ICML 2025); authors' code:
YuriGardinazzi/conferenceProject (``src/zigzag``, ``src/plots/post_process.py``,
``src/benchmark/benchmark.py``). One point cloud per layer -> undirected kNN graph -> clique
complex up to dimension m -> zigzag of intersections -> bars -> Betti numbers, persistence
similarity, births' frequency and the layer-pruning rule::

    from interp.topology import run_zigzag, zigzag_pruning
    res = run_zigzag(reps, k=5, max_dim=4, n_subsets=16, subset_size=500)   # reps: {layer: (N, D)}
    res.betti.shape, res.ps.shape                                           # (S, 5, L), (S, 5, L, L)
    zigzag_pruning(res.ps[:, 1], res.betti[:, 1], p=0.9)                     # blocks to cut

Shell: ``interp zigzag --reps REPS.safetensors --out DIR`` (or ``--model M --data D``) and
``interp prune --model M --blocks 3,4 --data D``. Modules: ``complexes`` (kNN graph, cliques),
``zigzag`` (the dionysus adapter), ``descriptors``, ``pipeline`` (subsets), ``pruning``,
``extraction`` (registry sites), ``report`` (files and figures), ``cli``.
"""
from .complexes import clique_complex, knn_edges
from .descriptors import (betti, births_relative_frequency, normalized_similarity, persistence_similarity,
                          weighted_similarity)
from .pipeline import ZigzagResult, run_zigzag
from .zigzag import Bars, zigzag_bars

__all__ = ["Bars", "ZigzagResult", "betti", "births_relative_frequency", "clique_complex", "knn_edges",
           "normalized_similarity", "persistence_similarity", "run_zigzag", "weighted_similarity", "zigzag_bars"]
