"""The authors' zigzag pipeline, transcribed for parity tests and the benchmark baseline.

Gardinazzi et al. (2025), YuriGardinazzi/conferenceProject ``src/zigzag/zigzag_DL.py``
(``generate_simplex_tree``, ``compute_layers_with_intersection``, ``compute_filtration_times``)
and ``src/zigzag/utils/fclaux.py`` (``ranges``): a dense kNN graph from scikit-learn
(``kneighbors_graph(...).toarray()``), a gudhi simplex tree per layer, a dense appearance
matrix, then ``dionysus.zigzag_homology_persistence``. Only the plumbing is condensed (no
tqdm, no file I/O); the definitions and the data structures are theirs.
"""
from __future__ import annotations

import itertools

import numpy as np


def _ranges(i):
    for _, b in itertools.groupby(enumerate(i), lambda pair: pair[1] - pair[0]):
        b = list(b)
        yield b[0][1] + 1, b[-1][1] + 2


def authors_bars(reps: list, knn: int = 5, dim: int = 4):
    """``[(dim, birth, death), ...]`` exactly as their dionysus path produces them."""
    import dionysus as d
    import gudhi as gd
    import sklearn.neighbors

    simplices, padded, sid, seen = [], [], {}, set()
    for i in range(len(reps)):
        padded.append([])
        G = sklearn.neighbors.kneighbors_graph(reps[i], n_neighbors=knn)
        ind = np.array(np.where(G.toarray() == 1)).T
        S = gd.SimplexTree()
        for k in range(len(reps[i])):
            S.insert([k])
        for k in range(len(ind)):
            S.insert(list(ind[k]))
        S.expansion(dim)
        for s in S.get_skeleton(dim):
            t = tuple(s[0])
            if t not in seen:
                sid[t] = len(simplices)
                simplices.append(s[0])
                seen.add(t)
            padded[i].append(sid[t])
    layers = []
    for i in range(2 * len(padded) - 1):
        layers.append(list(set(padded[i // 2]).intersection(padded[(i + 1) // 2])) if i % 2 else padded[i // 2])
    f = d.Filtration(simplices)
    appearance = np.zeros((len(layers), len(simplices)), dtype=int)
    for k in range(len(layers)):
        appearance[k, layers[k]] = 1
    times = [list(np.array([list(r) for r in _ranges(np.where(appearance[:, i] == 1)[0])]).flatten())
             for i in range(len(simplices))]
    _, dgms, _ = d.zigzag_homology_persistence(f, times)
    return [(p, int(pt.birth), int(pt.death)) for p, dgm in enumerate(dgms) for pt in dgm]
