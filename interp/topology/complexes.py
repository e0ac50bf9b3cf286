"""kNN graphs and their clique complexes, one per layer.

The construction of Gardinazzi et al. (2025), "Persistent Topological Features in Large
Language Models", as the authors' code builds it (YuriGardinazzi/conferenceProject,
``src/zigzag/zigzag_DL.py``, ``ZIGZAG.generate_simplex_tree``):

* ``sklearn.neighbors.kneighbors_graph(X, n_neighbors=k)`` (Euclidean, the point itself
  excluded) gives a directed graph; every directed edge is inserted in a gudhi
  ``SimplexTree``, so the graph is made undirected by *union* (an edge when either point is
  among the other's k nearest);
* ``SimplexTree.expansion(dim)`` then ``get_skeleton(dim)``: the clique (flag) complex with
  simplices up to dimension ``max_dim`` (``dim=4`` in the paper: H0..H3 are valid, H4 bars
  are truncation artefacts because no 5-simplex can fill a 4-cycle).

Here the neighbours come from the project's exact kNN (:func:`geometry.knn`, ties
broken by index, no N x N matrix) and the cliques are enumerated with vectorised numpy
(no simplex tree)::

    >>> import numpy as np
    >>> from interp.topology.complexes import knn_edges, clique_complex
    >>> theta = np.linspace(0, 2 * np.pi, 20, endpoint=False)
    >>> edges = knn_edges(np.c_[np.cos(theta), np.sin(theta)], k=4)   # i ~ i±1, i±2
    >>> [len(s) for s in clique_complex(edges, 20, max_dim=4)]       # vertices, edges, triangles
    [20, 40, 20]
"""
from __future__ import annotations

import numpy as np

__all__ = ["knn_edges", "clique_complex", "complex_size"]


def knn_edges(points, k: int = 5, *, device=None, on_duplicates: str = "raise") -> np.ndarray:
    """Undirected kNN graph of ``points`` as an ``(E, 2)`` int64 array of sorted pairs ``i < j``.

    An edge ``{i, j}`` exists when ``j`` is among the ``k`` nearest neighbours of ``i`` or
    ``i`` among those of ``j`` (the symmetrisation of the authors' simplex tree). The
    neighbours are exact (float64 answer, ties broken by index) from
    :func:`geometry.knn`; identical points raise (``on_duplicates="raise"``) since
    they make the graph depend on tie-breaking.
    """
    from geometry import knn
    from geometry.errors import GeometryInputError

    n = int(points.shape[0])
    if k < 1:
        raise GeometryInputError(f"k={k}: the kNN graph needs k >= 1 neighbours (the paper uses 4 or 5).")
    if n <= k:
        raise GeometryInputError(f"{n} points cannot have k={k} neighbours each; use k < {n} or more points.")
    nb = knn(points, k=k, device=device, on_duplicates=on_duplicates)
    idx = nb.indices[:, 1:].cpu().numpy().astype(np.int64)
    src = np.repeat(np.arange(n, dtype=np.int64), k)
    dst = idx.reshape(-1)
    pairs = np.stack([np.minimum(src, dst), np.maximum(src, dst)], 1)
    return np.unique(pairs, axis=0)


def clique_complex(edges: np.ndarray, n_vertices: int, max_dim: int = 4) -> list:
    """All cliques of the graph with at most ``max_dim + 1`` vertices, by dimension.

    Returns ``[vertices (n, 1), edges (E, 2), triangles (T, 3), ...]``: entry ``d`` holds the
    d-simplices as rows of sorted vertex ids in lexicographic order (the entries stop early
    when there are no cliques of that size). Same simplices as gudhi's
    ``SimplexTree.expansion(max_dim)`` on the graph.
    """
    if max_dim < 1:
        raise ValueError(f"max_dim={max_dim}: the complex needs at least edges (max_dim >= 1).")
    n = int(n_vertices)
    e = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    if len(e) and (np.any(e[:, 0] >= e[:, 1]) or e.max() >= n or e.min() < 0):
        raise ValueError("edges must be pairs i < j of vertex ids in [0, n_vertices).")
    e = np.unique(e, axis=0)  # lexicographic
    out = [np.arange(n, dtype=np.int64)[:, None], e]
    codes = e[:, 0] * n + e[:, 1]  # sorted, since e is lexicographic
    indptr = np.searchsorted(e[:, 0], np.arange(n + 1))
    cur = e
    for _ in range(2, max_dim + 1):
        if len(cur) == 0:
            break
        last = cur[:, -1]
        starts, counts = indptr[last], indptr[last + 1] - indptr[last]
        rows = np.repeat(np.arange(len(cur)), counts)
        if len(rows) == 0:
            break
        # positions starts[r] .. starts[r] + counts[r] - 1, concatenated
        offs = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
        w = e[np.repeat(starts, counts) + offs, 1]  # upper neighbours of the last vertex
        ok = np.ones(len(rows), dtype=bool)
        for c in range(cur.shape[1] - 1):
            q = cur[rows, c] * n + w
            pos = np.searchsorted(codes, q)
            ok &= (pos < len(codes)) & (codes[np.minimum(pos, len(codes) - 1)] == q)
        cur = np.concatenate([cur[rows[ok]], w[ok, None]], 1)
        if len(cur) == 0:
            break
        out.append(cur)
    return out


def complex_size(cx: list) -> int:
    """Number of simplices of a complex from :func:`clique_complex`."""
    return int(sum(len(s) for s in cx))
