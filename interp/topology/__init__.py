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
_WHERE = {"clique_complex": "complexes", "knn_edges": "complexes", "betti": "descriptors",
          "births_relative_frequency": "descriptors", "normalized_similarity": "descriptors",
          "persistence_similarity": "descriptors", "weighted_similarity": "descriptors",
          "ZigzagResult": "pipeline", "run_zigzag": "pipeline", "Bars": "zigzag", "zigzag_bars": "zigzag",
          "zigzag_pruning": "pruning"}
__all__ = sorted(_WHERE)


def __getattr__(name):  # lazy: registering the CLI does not import numpy or dionysus
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(name)
