"""Advanced Density Peaks clustering (d'Errico, Facco, Laio, Rodriguez,
Information Sciences 560, 476-492, 2021), same algorithm as DADApy 0.3.4
``compute_clustering_ADP(Z, halo)`` (its Cython implementation):

1. ``g = log_den - log_den_err`` (after shifting log densities positive).
   Putative peaks: points whose g is not below any of their k* neighbours;
   a putative peak inside the k* neighbourhood of a point with larger g is
   dropped.
2. Every other point, in decreasing order of g, joins the cluster of its
   nearest neighbour (scanning *all* ``maxk`` stored neighbours) that is a
   peak or has a larger g. This is computed here without a loop over
   points: each point's "parent" is found with one vectorised pass and
   labels are propagated by pointer jumping.
3. Saddle points: for each pair of clusters, the border point of largest g
   (a point whose first k* neighbour in another cluster has no point of the
   first cluster closer than it, scanning all ``maxk`` neighbours).
4. Peaks a, b with saddle s are merged, highest saddle first, while
   ``rho_a - rho_s < Z (err_a + err_s)`` or ``rho_b - rho_s < Z (err_b + err_s)``.
5. ``halo=True`` labels -1 the points below the highest saddle of their cluster.

Because steps 2-3 scan all stored neighbours, results depend on ``maxk``
(the number of neighbours in the table, DADApy default 100): use the same
``maxk`` to reproduce DADApy.

Example::

    >>> from geometry import knn, compute_density_knn, compute_clustering_adp
    >>> nb = knn(X, k=100)                                        # doctest: +SKIP
    >>> dens = compute_density_knn(nb, k=10)                     # doctest: +SKIP
    >>> res = compute_clustering_adp(nb, dens, Z=1.65)           # doctest: +SKIP
    >>> res.n_clusters, res.labels[:5]                           # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .density import Density
from ._utils import small_ops
from .errors import GeometryInputError
from .neighbors import Neighbors

__all__ = ["ADPResult", "compute_clustering_adp"]


@dataclass
class ADPResult:
    """Output of :func:`compute_clustering_adp` (DADApy attribute names in brackets).

    Attributes:
        labels: (N,) int64 cluster of each point, 0..n_clusters-1; -1 for halo
            points when ``halo=True`` [cluster_assignment].
        n_clusters: number of clusters [N_clusters].
        centers: (n_clusters,) index of each cluster's density peak [cluster_centers].
        log_den_bord, log_den_bord_err: (n_clusters, n_clusters) log density
            (and error) of the saddle between clusters [log_den_bord(_err)].
        bord_indices: (n_clusters, n_clusters) saddle point index, -1 if none.
        n_putative: number of peaks before the merging.
    """

    labels: torch.Tensor
    n_clusters: int
    centers: torch.Tensor
    log_den_bord: torch.Tensor
    log_den_bord_err: torch.Tensor
    bord_indices: torch.Tensor
    n_putative: int


@small_ops
def compute_clustering_adp(nb: Neighbors, density: Density, Z: float = 1.65, halo: bool = False) -> ADPResult:
    """Cluster with Advanced Density Peaks (see the module docstring).

    Args:
        nb: the neighbour table (its ``k`` is DADApy's ``maxk``).
        density: log densities with errors and k* (any estimator of
            :mod:`geometry.density`; DADApy's default is PAk).
        Z: merging threshold in units of the errors (DADApy default 1.65).
        halo: label -1 the points below their cluster's highest saddle.
    """
    log_den, err, kstar = density.log_den, density.log_den_err, density.kstar
    N = nb.n_points
    if log_den.shape[0] != N:
        raise GeometryInputError(f"density has {log_den.shape[0]} points but the neighbour table {N}.")
    if not bool(torch.isfinite(log_den).all() & torch.isfinite(err).all()):
        raise GeometryInputError("log density contains NaN/inf; check the data for duplicates or a bad ID.")
    if int(kstar.max()) > nb.k:
        raise GeometryInputError("kstar exceeds the neighbours in the table; recompute knn with a larger k.")
    dev = log_den.device
    ind = nb.indices.to(dev)
    cols = ind[:, 1:]
    log_den_min = float((log_den - Z * err).min())
    rho_c = log_den - log_den_min + 1.0
    g = rho_c - err
    within = torch.arange(1, cols.shape[1] + 1, device=dev).unsqueeze(0) <= kstar.unsqueeze(1)

    # 1. putative peaks, then drop those inside the k* neighbourhood of a higher point
    g_nb = g[cols]
    putative = ~((g_nb > g.unsqueeze(1)) & within).any(dim=1)
    hit = within & putative[cols] & (g.unsqueeze(1) > g_nb)
    removed = torch.zeros(N, dtype=torch.bool, device=dev)
    removed[cols[hit]] = True
    is_center = putative & ~removed
    centers = torch.nonzero(is_center).flatten()
    n_clus = len(centers)

    # 2. preliminary assignment
    cl = _assign(g, cols, is_center, centers, putative, within, hit)

    # 3. saddle points between the preliminary clusters
    B, Be, P = _saddles(cl, cols, within, is_center, g, rho_c, err, n_clus)

    # 4. merging (loop over merges; O(n_clus) work each)
    rc_cent = rho_c[centers].cpu().numpy()
    e_cent = err[centers].cpu().numpy()
    surv, owner = _merge(B, Be, P, rc_cent, e_cent, Z)

    # 5. final labels
    keep = np.nonzero(surv)[0]
    remap = -np.ones(n_clus, dtype=np.int64)
    remap[keep] = np.arange(len(keep))
    cl_np = cl.cpu().numpy()
    labels = remap[owner[cl_np]] if n_clus else np.zeros(N, dtype=np.int64)
    labels = np.where(cl_np < 0, -1, labels)  # points DADApy leaves unassigned
    Bm, Bem, Pm = B[np.ix_(keep, keep)], Be[np.ix_(keep, keep)], P[np.ix_(keep, keep)]
    if halo and len(keep):
        rho_halo = Bm.max(axis=1)
        rho_np = rho_c.cpu().numpy()
        labels = np.where(rho_np < rho_halo[labels], -1, labels)
    return ADPResult(
        labels=torch.as_tensor(labels, device=dev),
        n_clusters=len(keep),
        centers=centers[torch.as_tensor(keep, device=dev)],
        log_den_bord=torch.as_tensor(Bm + log_den_min - 1.0),
        log_den_bord_err=torch.as_tensor(Bem),
        bord_indices=torch.as_tensor(Pm),
        n_putative=n_clus,
    )


def _assign(g, cols, is_center, centers, putative, within, hit) -> torch.Tensor:
    """Cluster of every point before merging (DADApy's preliminary assignment)."""
    N = g.shape[0]
    dev = g.device
    order = torch.argsort(-g, stable=True)
    rank = torch.empty(N, dtype=torch.int64, device=dev)
    rank[order] = torch.arange(N, device=dev)
    # a neighbour is already labelled when it is a peak or comes earlier in decreasing g
    elig = is_center[cols] | (rank[cols] < rank.unsqueeze(1))
    has = elig.any(dim=1)
    if bool((~has & ~is_center).any()):
        return _assign_sequential(g, cols, is_center, centers, putative, within, hit, order)
    first = elig.to(torch.int8).argmax(dim=1)
    ar = torch.arange(N, device=dev)
    parent = torch.where(is_center, ar, cols[ar, first])
    while True:  # pointer jumping: O(log depth) vectorised passes
        nxt = parent[parent]
        if torch.equal(nxt, parent):
            break
        parent = nxt
    cid = torch.full((N,), -1, dtype=torch.int64, device=dev)
    cid[centers] = torch.arange(len(centers), device=dev)
    return cid[parent]


def _assign_sequential(g, cols, is_center, centers, putative, within, hit, order) -> torch.Tensor:
    """Exact emulation of DADApy's loop, used only when some point has no
    labelled point among its maxk neighbours (DADApy then uses its list of
    removed peaks; a point can stay unassigned, -1)."""
    g_np = g.cpu().numpy()
    cols_np = cols.cpu().numpy()
    N, K = cols_np.shape
    to_remove = _to_remove_table(g_np, cols_np, putative.cpu().numpy(), within.cpu().numpy(), hit.cpu().numpy())
    cl = -np.ones(N, dtype=np.int64)
    cl[centers.cpu().numpy()] = np.arange(len(centers))
    ind_full = np.concatenate([np.arange(N)[:, None], cols_np], axis=1)
    for ele in order.cpu().numpy():
        nn = 0
        while cl[ele] == -1 and nn < K:
            nn += 1
            cl[ele] = cl[ind_full[ele, nn]]
        if cl[ele] == -1:
            _, _, pos = np.intersect1d(ind_full[ele], to_remove[:, 0], return_indices=True)
            if len(pos) == 0:
                continue  # DADApy would raise here (argmax of an empty array)
            higher = to_remove[:, 1][pos]
            max_center = higher[np.argmax(g_np[higher])]
            cl[ele] = cl[max_center]
    return torch.as_tensor(cl, device=g.device)


def _to_remove_table(g, cols, putative, within, hit) -> np.ndarray:
    """DADApy's ``to_remove`` table, reproduced statement by statement
    (including its row offset of the second column)."""
    putative_idx = np.nonzero(putative)[0]
    table = -np.ones((max(len(putative_idx), 1), 2), dtype=np.int64)
    n_rem = 0
    rows, js = np.nonzero(within & putative[cols])
    cvals = cols[rows, js]
    o = np.lexsort((rows, cvals))
    rows, cvals = rows[o], cvals[o]
    starts = np.searchsorted(cvals, putative_idx, side="left")
    ends = np.searchsorted(cvals, putative_idx, side="right")
    for c, s0, s1 in zip(putative_idx, starts, ends):
        scan = rows[s0:s1]  # points i (ascending) having c among their k* neighbours
        max_rho = -999.0
        for i in scan:
            if g[i] > g[c]:
                table[n_rem, 0] = c
                if max_rho < 0:
                    n_rem += 1
                if g[i] > max_rho:
                    max_rho = g[i]
                    if n_rem < len(table):
                        table[n_rem, 1] = i
    return table


def _saddles(cl, cols, within, is_center, g, rho_c, err, n_clus):
    """Saddle density/error/index between every pair of preliminary clusters."""
    dev = cl.device
    N = cl.shape[0]
    B = np.zeros((n_clus, n_clus))
    Be = np.zeros((n_clus, n_clus))
    P = -np.ones((n_clus, n_clus), dtype=np.int64)
    if n_clus > 1:
        other = (cl[cols] != cl.unsqueeze(1)) & within
        cand = (~is_center) & other.any(dim=1)
        p1 = torch.nonzero(cand).flatten()
        first = other[p1].to(torch.int8).argmax(dim=1)
        pp = cols[p1, first]
        c = cl[p1]
        cp = cl[pp]
        same = cl[cols[pp]] == c.unsqueeze(1)  # scan all maxk neighbours of pp
        any_same = same.any(dim=1)
        first_same = cols[pp, same.to(torch.int8).argmax(dim=1)]
        border = (~any_same) | (first_same == p1)
        border &= g[p1] > 0  # DADApy compares with a zero-initialised matrix
        p1, c, cp = p1[border], c[border], cp[border]
        if len(p1):
            gp = g[p1].cpu().numpy()
            p1n, cn, cpn = p1.cpu().numpy(), c.cpu().numpy(), cp.cpu().numpy()
            lo, hi = np.minimum(cn, cpn), np.maximum(cn, cpn)
            key = lo * n_clus + hi
            # highest g per pair; ties -> first in DADApy's scan order (cluster, then point)
            o = np.lexsort((p1n, cn, -gp, key))
            firsts = o[np.r_[True, key[o][1:] != key[o][:-1]]]
            a, b, pt = lo[firsts], hi[firsts], p1n[firsts]
            P[a, b] = pt
            P[b, a] = pt
            rc, er = rho_c.cpu().numpy(), err.cpu().numpy()
            B[a, b] = B[b, a] = rc[pt]
            Be[a, b] = Be[b, a] = er[pt]
    np.fill_diagonal(B, -1.0)
    np.fill_diagonal(Be, 0.0)
    del N, dev
    return B, Be, P


def _merge(B, Be, P, rc, e, Z) -> tuple[np.ndarray, np.ndarray]:
    """DADApy's multimodality test: merge the pair with the highest
    non-significant saddle until none is left. Row maxima of the candidate
    matrix are updated incrementally (ties -> first pair in row-major order)."""
    n = len(rc)
    surv = np.ones(n, dtype=bool)
    owner = np.arange(n)  # surviving cluster that absorbed each preliminary one
    if n < 2:
        return surv, owner
    iu = np.triu(np.ones((n, n), dtype=bool), 1)

    def cand_rows(rows):
        Br, Ber = B[rows], Be[rows]
        c = (rc[rows, None] - Br < Z * (e[rows, None] + Ber)) | (rc[None, :] - Br < Z * (e[None, :] + Ber))
        return np.where(c & iu[rows], Br, -np.inf)

    M = cand_rows(np.arange(n))
    rmax, rarg = M.max(axis=1), M.argmax(axis=1)
    while True:
        i = int(np.argmax(rmax))
        if rmax[i] == -np.inf:
            break
        j = int(rarg[i])
        imod, jmod = i, j
        c1 = (rc[imod] - B[imod, jmod]) / (e[imod] + Be[imod, jmod])
        c2 = (rc[jmod] - B[imod, jmod]) / (e[jmod] + Be[imod, jmod])
        if c1 < c2:
            imod, jmod = jmod, imod
        surv[jmod] = False
        owner[owner == jmod] = imod
        B[imod, jmod] = B[jmod, imod] = -1.0
        Be[imod, jmod] = Be[jmod, imod] = 0.0
        others = np.ones(n, dtype=bool)
        others[[imod, jmod]] = False
        upd = others & (B[imod] < B[jmod])
        for M_ in (B, Be, P):
            M_[imod, upd] = M_[jmod, upd]
            M_[upd, imod] = M_[imod, upd]
        B[jmod, others] = -1.0
        B[others, jmod] = -1.0
        Be[jmod, others] = 0.0
        Be[others, jmod] = 0.0
        # refresh the candidate matrix in rows/columns imod, jmod
        for r in (imod, jmod):
            M[r] = cand_rows(np.array([r]))[0]
        for col in (imod, jmod):
            rows = np.arange(col)
            if len(rows):
                Bc, Bec = B[rows, col], Be[rows, col]
                c = (rc[rows] - Bc < Z * (e[rows] + Bec)) | (rc[col] - Bc < Z * (e[col] + Bec))
                M[rows, col] = np.where(c, Bc, -np.inf)
        stale = (rarg == imod) | (rarg == jmod)
        stale[[imod, jmod]] = True
        for col in (imod, jmod):  # a new value may beat the row maximum
            v = M[:, col]
            better = (v > rmax) | ((v == rmax) & (col < rarg) & (v > -np.inf))
            stale |= better
        rows = np.nonzero(stale)[0]
        rmax[rows], rarg[rows] = M[rows].max(axis=1), M[rows].argmax(axis=1)
    return surv, owner
