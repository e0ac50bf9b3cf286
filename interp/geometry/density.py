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
  relative gradient < 1e-3), vectorised over points.

The intrinsic dimension: pass ``intrinsic_dim``. When it is ``None`` the
TwoNN estimate (``algorithm="base", mu_fraction=0.9``) on the same
neighbours is used -- DADApy silently does the same when no ID was set.

Example::

    >>> from interp.geometry import knn, compute_density_knn
    >>> nb = knn(X, k=100)                                 # doctest: +SKIP
    >>> dens = compute_density_knn(nb, k=10, intrinsic_dim=2.0)   # doctest: +SKIP
    >>> dens.log_den.shape, dens.log_den_err[0]            # doctest: +SKIP
    (torch.Size([5000]), tensor(0.3162...))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from .errors import GeometryInputError
from .intrinsic_dim import compute_id_2nn
from .knn import Neighbors, knn

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


def compute_density_kstarnn(data: Any, *, intrinsic_dim: float | None = None, alpha: float = 1e-6,
                            bias: bool = False, kstar: torch.Tensor | None = None, **knn_kwargs) -> Density:
    """k-NN log-density with the adaptive k* (DADApy ``compute_density_kstarNN``)."""
    nb, d = _prepare(data, 100, intrinsic_dim, knn_kwargs)
    if kstar is None:
        kstar = compute_kstar(nb, d, alpha=alpha)
    return _knn_formula(nb, kstar, d, bias, "kstarnn")


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
    F = _nr_maxl(F0.clone(), kstar, volumes, max_iter)
    return Density(F - math.log(N), err, kstar, dc, d, "pak")


def _nr_maxl(F: torch.Tensor, kstar: torch.Tensor, volumes: torch.Tensor, max_iter: int) -> torch.Tensor:
    """Vectorised DADApy ``cython_maximum_likelihood_opt_full._nrmaxl``."""
    feps = 2.220446049250313e-16
    dev = F.device
    kmax = volumes.shape[1]
    jj = torch.arange(kmax, device=dev)
    mask = jj.unsqueeze(0) < kstar.unsqueeze(1)
    tiny = ((volumes < 1.0e-300) & mask).any(dim=1)
    todo = torch.nonzero(~tiny).flatten()
    if len(todo) == 0:
        return F
    l = (jj + 1).to(torch.float64)
    V = torch.where(mask, volumes, torch.zeros_like(volumes))[todo]
    k = kstar[todo].to(torch.float64)
    f = F[todo].clone()
    a = torch.zeros_like(f)
    stepmax = 0.1 * f.abs()

    def grads(f, a, V, k):
        gf = V * torch.exp(f.unsqueeze(1) + a.unsqueeze(1) * l)
        g_f = k - gf.sum(1)
        g_a = (k + 1) * k / 2.0 - (l * gf).sum(1)
        h00 = -gf.sum(1)
        h01 = -(l * gf).sum(1)
        h11 = -(l * l * gf).sum(1)
        return g_f, g_a, h00, h01, h11

    g_f, g_a, h00, h01, h11 = grads(f, a, V, k)
    det = h00 * h11 - h01 * h01
    inv = torch.stack([h11 / det, -h01 / det, -h01 / det, h00 / det], 1)
    inv = torch.where((det < feps).unsqueeze(1), torch.zeros_like(inv), inv)
    active = torch.arange(len(todo), device=dev)
    for _ in range(max_iter):
        if len(active) == 0:
            break
        fa, aa, ka = f[active], a[active], k[active]
        gfa, gaa, deta, inva = g_f[active], g_a[active], det[active], inv[active]
        sing = deta < feps
        # fixed point step where the Hessian is singular, damped Newton otherwise
        f_fp = (-aa * ka * (ka + 1) / 2 - (gfa - ka)) / ka
        a_fp = (-f_fp * ka - (gfa - ka)) / (ka * (ka + 1) / 2)
        df = inva[:, 0] * gfa + inva[:, 1] * gaa
        da = inva[:, 2] * gfa + inva[:, 3] * gaa
        lr = torch.full_like(fa, 0.1)
        big = (lr * df).abs() > stepmax[active]
        lr = torch.where(big, (stepmax[active] / df).abs(), lr)
        fa = torch.where(sing, f_fp, fa - lr * df)
        aa = torch.where(sing, a_fp, aa - lr * da)
        ng = grads(fa, aa, V[active], ka)
        ndet = ng[2] * ng[4] - ng[3] * ng[3]
        ninv = torch.stack([ng[4] / ndet, -ng[3] / ndet, -ng[3] / ndet, ng[2] / ndet], 1)
        ninv = torch.where((ndet < feps).unsqueeze(1), inva, ninv)
        small = (aa.abs() <= feps) | (fa.abs() <= feps)
        func = torch.where(small, torch.maximum(ng[0].abs(), ng[1].abs()),
                           torch.maximum((ng[0] / fa).abs(), (ng[1] / aa).abs()))
        f[active], a[active] = fa, aa
        g_f[active], g_a[active], det[active], inv[active] = ng[0], ng[1], ndet, ninv
        active = active[func > 1e-3]
    F[todo] = f
    return F
