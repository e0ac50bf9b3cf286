"""Point-wise log-density estimates (DADApy ``DensityEstimation`` conventions).

* :func:`compute_density_knn` -- the k-NN estimator: with d the intrinsic
  dimension, omega_d = pi^(d/2) / Gamma(d/2 + 1) and r_k the distance to the
  k-th neighbour, ``log rho_i = log k - log N - log(omega_d r_k^d)`` with
  error ``1/sqrt(k)`` (``bias=True`` adds ``(k/N)^(2/d)`` in quadrature,
  DADApy's experimental option). Note DADApy divides by N (not N - 1).
* :func:`compute_kstar` -- the point-adaptive neighbourhood size k* of
  Rodriguez et al., JCTC 14, 1206 (2018): grow k from 4 while the
  likelihood-ratio statistic between the volume around i and around its
  k-th neighbour stays below chi2.isf(alpha, 1) (default alpha = 1e-6).
* :func:`compute_density_kstarnn` -- the k-NN formula with k = k*_i.
* :func:`compute_density_pak` -- PAk (Rodriguez et al. 2018): the density
  and a linear correction fitted by maximum likelihood on the k*_i shells,
  with DADApy's damped Newton-Raphson (learning rate 0.1, stop when the
  relative gradient < 1e-3 or after 10000 steps), vectorised over points
  (numpy); a point whose update no longer changes it in float64 is retired
  early -- same result, without running DADApy's 10000 idle steps.

The intrinsic dimension: pass ``intrinsic_dim``. When it is ``None`` the
TwoNN estimate (``algorithm="base", mu_fraction=0.9``) on the same
neighbours is used -- DADApy silently does the same when no ID was set.

Example::

    >>> from geometry import knn, compute_density_knn
    >>> nb = knn(X, k=100)                                 # doctest: +SKIP
    >>> dens = compute_density_knn(nb, k=10, intrinsic_dim=2.0)   # doctest: +SKIP
    >>> dens.log_den.shape, dens.log_den_err[0]            # doctest: +SKIP
    (torch.Size([5000]), tensor(0.3162...))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ._utils import small_ops
from .errors import GeometryInputError
from .intrinsic_dim import compute_id_2nn
from .neighbors import Neighbors, knn

__all__ = [
    "Density",
    "compute_density_knn",
    "compute_density_kstarnn",
    "compute_density_pak",
    "compute_kstar",
    "log_unit_ball_volume",
]


@dataclass
class Density:
    """Log-densities (normalised by N) with their errors.

    Attributes:
        log_den, log_den_err: (N,) float64.
        kstar: (N,) int64 neighbourhood size used at each point.
        dc: (N,) float64 distance to the kstar-th neighbour.
        intrinsic_dim: the ID the volumes were computed with.
        method: ``"knn"``, ``"kstarnn"`` or ``"pak"``.
    """

    log_den: torch.Tensor
    log_den_err: torch.Tensor
    kstar: torch.Tensor
    dc: torch.Tensor
    intrinsic_dim: float
    method: str


def log_unit_ball_volume(d: float) -> float:
    """log(pi^(d/2) / Gamma(d/2 + 1)), the log volume of the unit d-ball."""
    return d / 2.0 * math.log(math.pi) - math.lgamma((d + 2.0) / 2.0)


def _prepare(data: Any, k: int, intrinsic_dim: float | None, knn_kwargs) -> tuple[Neighbors, float]:
    if isinstance(data, Neighbors):
        nb = data
    else:
        n_points = len(data)
        maxk = knn_kwargs.pop("maxk", None) or max(k, min(100, n_points - 1))
        nb = knn(data, maxk, **knn_kwargs)
    if intrinsic_dim is None:
        intrinsic_dim = compute_id_2nn(nb).id
    if not (intrinsic_dim > 0 and math.isfinite(intrinsic_dim)):
        raise GeometryInputError(f"intrinsic_dim must be a positive number, got {intrinsic_dim!r}.")
    return nb, float(intrinsic_dim)


def _knn_formula(nb: Neighbors, kstar: torch.Tensor, d: float, bias: bool, method: str) -> Density:
    N = nb.n_points
    dc = torch.gather(nb.distances, 1, kstar.unsqueeze(1)).squeeze(1)
    if bool((dc <= 0).any()):
        raise GeometryInputError("zero neighbour distances (identical points): remove duplicates first.")
    kf = kstar.to(torch.float64)
    log_den = torch.log(kf) - (log_unit_ball_volume(d) + d * torch.log(dc)) - math.log(N)
    err = 1.0 / torch.sqrt(kf)
    if bias:
        err = torch.sqrt(err**2 + (kf / N) ** (2.0 / d))
    return Density(log_den, err, kstar, dc, d, method)


@small_ops
def compute_density_knn(data: Any, k: int = 10, *, intrinsic_dim: float | None = None,
                        bias: bool = False, **knn_kwargs) -> Density:
    """k-NN log-density of every point (DADApy ``compute_density_kNN``; default k = 10).

    Args:
        data: points (N, D) or a :class:`Neighbors` table with at least k neighbours.
        k: neighbour whose distance sets the volume.
        intrinsic_dim: the ID; ``None`` = TwoNN on the same neighbours (as DADApy).
        bias: add DADApy's experimental bias term to the error.
    """
    nb, d = _prepare(data, k, intrinsic_dim, knn_kwargs)
    if not 1 <= k <= nb.k:
        raise GeometryInputError(f"k={k} must be between 1 and the {nb.k} stored neighbours; recompute knn with more.")
    kstar = torch.full((nb.n_points,), int(k), dtype=torch.int64, device=nb.distances.device)
    return _knn_formula(nb, kstar, d, bias, "knn")


def _chi2_isf_1dof(alpha: torch.Tensor) -> torch.Tensor:
    # chi2(1) survival function: P(Z^2 > x) = alpha  <=>  x = ndtri(alpha / 2)^2
    return torch.special.ndtri(alpha / 2.0) ** 2


@small_ops
def compute_kstar(nb: Neighbors, intrinsic_dim: float, *, alpha: float = 1e-6,
                  bonferroni_deloc: bool = False, bonferroni_loc: bool = False) -> torch.Tensor:
    """Point-adaptive k* (DADApy ``compute_kstar``; Rodriguez et al. 2018).

    For k = 4, 5, ..., maxk - 1 the statistic
    ``D_k = -2 (k-1) [log v_i + log v_j - 2 log(v_i + v_j) + log 4]`` compares
    the volume v_i of the ball reaching the (k-1)-th neighbour of i with
    the same volume around j, the k-th neighbour of i; k*_i is the last k
    before D_k exceeds ``chi2.isf(alpha, 1)`` (maxk - 1 if never).
    """
    d = float(intrinsic_dim)
    dist, ind = nb.distances, nb.indices
    N, maxk = nb.n_points, nb.k
    dev = dist.device
    alpha_eff = alpha / N if bonferroni_deloc else alpha
    if maxk <= 4:
        return torch.full((N,), maxk - 1, dtype=torch.int64, device=dev)
    js = torch.arange(4, maxk, device=dev)  # j = 4 .. maxk-1, ksel = j - 1
    ksel = js - 1
    log_pref = log_unit_ball_volume(d)
    log_vi = log_pref + d * torch.log(dist[:, ksel])
    nbj = ind[:, js]
    log_vj = log_pref + d * torch.log(dist[nbj, ksel.unsqueeze(0).expand_as(nbj)])
    dL = -2.0 * ksel.to(torch.float64) * (log_vi + log_vj - 2.0 * torch.logaddexp(log_vi, log_vj) + math.log(4.0))
    if bonferroni_loc:
        h = torch.arange(len(js), device=dev, dtype=torch.float64)
        thr = _chi2_isf_1dof(alpha_eff / (h + 1.0))
    else:
        thr = _chi2_isf_1dof(torch.tensor(alpha_eff, dtype=torch.float64, device=dev)).expand(len(js))
    over = dL > thr
    first = torch.where(over.any(dim=1), over.to(torch.int8).argmax(dim=1), torch.full((N,), len(js), device=dev))
    return (first + 4 - 1).to(torch.int64)


@small_ops
def compute_density_kstarnn(data: Any, *, intrinsic_dim: float | None = None, alpha: float = 1e-6,
                            bias: bool = False, kstar: torch.Tensor | None = None, **knn_kwargs) -> Density:
    """k-NN log-density with the adaptive k* (DADApy ``compute_density_kstarNN``)."""
    nb, d = _prepare(data, 100, intrinsic_dim, knn_kwargs)
    if kstar is None:
        kstar = compute_kstar(nb, d, alpha=alpha)
    return _knn_formula(nb, kstar, d, bias, "kstarnn")


@small_ops
def compute_density_pak(data: Any, *, intrinsic_dim: float | None = None, alpha: float = 1e-6,
                        kstar: torch.Tensor | None = None, max_iter: int = 10000, **knn_kwargs) -> Density:
    """PAk log-density (Rodriguez, d'Errico, Facco, Laio, JCTC 14, 1206, 2018).

    Same algorithm as DADApy's optimised ``compute_density_PAk``: shell
    volumes v_ij between consecutive neighbours (j < k*_i), then per point
    the maximum of ``L(F, a) = k F + a k(k+1)/2 - sum_j v_ij exp(F + a j)``
    by damped Newton-Raphson (learning rate 0.1, step capped at
    0.1 |F_start|, stop at relative gradient < 1e-3). The error is
    ``sqrt((4k + 2) / (k (k - 1)))``.
    """
    nb, d = _prepare(data, 100, intrinsic_dim, knn_kwargs)
    if kstar is None:
        kstar = compute_kstar(nb, d, alpha=alpha)
    N = nb.n_points
    dist = nb.distances
    kf = kstar.to(torch.float64)
    err = torch.sqrt((4 * kf + 2) / (kf * (kf - 1)))
    dc = torch.gather(dist, 1, kstar.unsqueeze(1)).squeeze(1)
    kmax = int(kstar.max())
    r, r1 = dist[:, :kmax], dist[:, 1 : kmax + 1]
    ratio = r / r1
    res = 1e-15  # np.finfo(float64).resolution
    ratio = torch.where((ratio - 1.0).abs() < res, ratio - 10 * res, ratio)
    exponent = d * torch.log(r1) + torch.log(1 - ratio**d)
    exponent = exponent.clamp(max=300.0)
    log_pref = log_unit_ball_volume(d)
    volumes = math.exp(log_pref) * torch.exp(exponent)
    F0 = torch.log(kf) - (log_pref + d * torch.log(dc))
    F = _nr_maxl(F0.cpu().numpy().copy(), kstar.cpu().numpy(), volumes.cpu().numpy(), max_iter)
    F = torch.as_tensor(F, device=dist.device)
    return Density(F - math.log(N), err, kstar, dc, d, "pak")


def _nr_maxl(F: np.ndarray, kstar: np.ndarray, volumes: np.ndarray, max_iter: int) -> np.ndarray:
    """Vectorised DADApy ``cython_maximum_likelihood_opt_full._nrmaxl`` (numpy, CPU).

    Per point: damped Newton-Raphson on (F, a) until the relative gradient
    is <= 1e-3 or ``max_iter`` steps. A point whose state stops changing
    (a float64 fixed point of the update) is final: further steps would
    leave it unchanged, so it is retired early with the same result.
    """
    feps = float(np.finfo(np.float64).eps)
    kmax = volumes.shape[1]
    jj = np.arange(kmax)
    mask = jj[None, :] < kstar[:, None]
    tiny = ((volumes < 1.0e-300) & mask).any(axis=1)
    todo = np.nonzero(~tiny)[0]
    if len(todo) == 0:
        return F
    l = (jj + 1).astype(np.float64)
    V = np.where(mask, volumes, 0.0)[todo]
    k = kstar[todo].astype(np.float64)
    f = F[todo].copy()
    a = np.zeros_like(f)
    stepmax = 0.1 * np.abs(f)

    def grads(f, a, V, k, l):
        gf = V * np.exp(f[:, None] + a[:, None] * l)
        s0 = gf.sum(1)
        s1 = gf @ l
        s2 = gf @ (l * l)
        return k - s0, (k + 1) * k / 2.0 - s1, -s0, -s1, -s2

    def inverse(h00, h01, h11, old=None):
        det = h00 * h11 - h01 * h01
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = np.stack([h11 / det, -h01 / det, -h01 / det, h00 / det], 1)
        sing = det < feps
        inv[sing] = 0.0 if old is None else old[sing]
        return det, inv

    g_f, g_a, h00, h01, h11 = grads(f, a, V, k, l)
    det, inv = inverse(h00, h01, h11)
    # working set (compacted when it shrinks) and its state
    w = np.arange(len(todo))
    wf, wa, wk, wV, ws = f.copy(), a.copy(), k.copy(), V, stepmax.copy()
    wgf, wga, wdet, winv = g_f, g_a, det, inv
    live = np.ones(len(w), dtype=bool)
    for _ in range(max_iter):
        if not live.any():
            break
        if live.sum() < 0.5 * len(live):
            f[w], a[w] = wf, wa
            keep = np.nonzero(live)[0]
            w, wf, wa, wk, wV, ws = w[keep], wf[keep], wa[keep], wk[keep], wV[keep], ws[keep]
            wgf, wga, wdet, winv = wgf[keep], wga[keep], wdet[keep], winv[keep]
            live = np.ones(len(w), dtype=bool)
        sing = wdet < feps
        with np.errstate(divide="ignore", invalid="ignore"):
            f_fp = (-wa * wk * (wk + 1) / 2 - (wgf - wk)) / wk
            a_fp = (-f_fp * wk - (wgf - wk)) / (wk * (wk + 1) / 2)
            df = winv[:, 0] * wgf + winv[:, 1] * wga
            da = winv[:, 2] * wgf + winv[:, 3] * wga
            lr = np.where(np.abs(0.1 * df) > ws, np.abs(ws / df), 0.1)
        nf = np.where(sing, f_fp, wf - lr * df)
        na = np.where(sing, a_fp, wa - lr * da)
        nf = np.where(live, nf, wf)
        na = np.where(live, na, wa)
        frozen = (nf == wf) & (na == wa)
        ngf, nga, n00, n01, n11 = grads(nf, na, wV, wk, l)
        ndet, ninv = inverse(n00, n01, n11, winv)
        small = (np.abs(na) <= feps) | (np.abs(nf) <= feps)
        with np.errstate(divide="ignore", invalid="ignore"):
            func = np.where(small, np.maximum(np.abs(ngf), np.abs(nga)),
                            np.maximum(np.abs(ngf / nf), np.abs(nga / na)))
        wf, wa, wgf, wga, wdet, winv = nf, na, ngf, nga, ndet, ninv
        live &= (func > 1e-3) & ~frozen
    f[w], a[w] = wf, wa
    F[todo] = f
    return F
