"""Layer descriptors from zigzag bars: Betti numbers, persistence similarity, Z_p, births.

Definitions as the authors' code computes them (YuriGardinazzi/conferenceProject):

* ``betti(bars)[p, l]``: bars of dimension p alive on layer l, i.e. covering zigzag position
  ``2l`` (``src/plots/post_process.py``, ``find_betti_curve`` then ``find_betti_layers``);
* ``persistence_similarity(bars)[p, a, b]`` = PS_p(a, b): p-bars alive on *every* layer from
  ``min(a, b)`` to ``max(a, b)`` (effective birth <= min, effective death > max;
  ``find_eff_pis`` + ``find_ph_sim``); its diagonal is the Betti number;
* ``normalized_similarity`` = Z_p(a, b) = PS_p(a, b) / beta_p(a), rows with beta_p(a) = 0 set to
  0 (``src/plots/plots_main_text.ipynb``, ``inter_layer_persistance``; paper Eq. 7);
* ``weighted_similarity(Z, alpha)[l]`` = sum_j Z(l, j) |l - j|^alpha / sum_j |l - j|^alpha, the
  diagonal weight 1e-10 when alpha < 0 (``weighed_inter_layer_persistance``; paper Eq. 8);
* ``births_relative_frequency(bars, p, alpha)``: the notebook's ``pi_hist`` over
  ``effective_pi``: the [death, birth] histogram of effective bars restricted to finite deaths
  (bars still alive on the last layer are left out, as the notebook's slice does), weighted by
  |death - birth|^alpha, summed over births for each *death* row, normalised to sum 1. The row
  index is the death layer: that is what the authors' code does and what reproduces their
  figures (paper Eq. 5 reads as births); we follow the code.

    >>> from interp.topology.descriptors import betti, persistence_similarity
    >>> b = betti(bars, max_dim=3)            # (4, L)
    >>> ps = persistence_similarity(bars, 3)  # (4, L, L)
"""
from __future__ import annotations

import numpy as np

__all__ = ["betti", "persistence_similarity", "normalized_similarity", "weighted_similarity",
           "effective_histogram", "births_relative_frequency", "DEFAULT_ALPHAS"]

DEFAULT_ALPHAS = (-1.0, 0.0, 0.5, 1.0, 2.0)  # the exponents of the paper's Fig. 3


def _n_dims(bars, max_dim):
    return int(max_dim) + 1 if max_dim is not None else (int(bars.dim.max()) + 1 if len(bars) else 1)


def betti(bars, max_dim: int | None = None) -> np.ndarray:
    """``(max_dim + 1, L)`` Betti numbers per layer: bars with ``birth-1 <= 2l < death-1``."""
    L, P = bars.n_layers, _n_dims(bars, max_dim)
    out = np.zeros((P, L), dtype=np.int64)
    pos = 2 * np.arange(L)
    for p in range(P):
        m = bars.dim == p
        b, d = bars.birth[m] - 1, bars.death[m] - 1
        out[p] = ((b[:, None] <= pos[None]) & (pos[None] < d[:, None])).sum(0)
    return out


def persistence_similarity(bars, max_dim: int | None = None) -> np.ndarray:
    """``(max_dim + 1, L, L)`` PS_p(a, b): p-bars alive on all layers between a and b (symmetric)."""
    L, P = bars.n_layers, _n_dims(bars, max_dim)
    out = np.zeros((P, L, L), dtype=np.int64)
    bl, dl = bars.birth_layer, bars.death_layer
    for p in range(P):
        m = (bars.dim == p) & (dl > bl)
        # count[b, d]: bars born at effective layer b, dying at effective layer d (0..L)
        count = np.zeros((L + 1, L + 1), dtype=np.int64)
        np.add.at(count, (bl[m], dl[m]), 1)
        # PS(a, c) for a <= c = sum_{b <= a, d > c} count[b, d]
        cum_b = np.cumsum(count, 0)                        # born <= a
        tail = np.cumsum(cum_b[:, ::-1], 1)[:, ::-1]       # tail[a, c] = sum_{d >= c}
        up = tail[:L, 1:L + 1]                             # [a, c] -> death > c
        ps = np.triu(up)
        out[p] = ps + np.triu(ps, 1).T
    return out


def normalized_similarity(ps: np.ndarray, betti_: np.ndarray) -> np.ndarray:
    """Z_p(a, b) = PS_p(a, b) / beta_p(a); rows with beta_p(a) = 0 are 0 (as the authors' notebook)."""
    ps = np.asarray(ps, float)
    b = np.asarray(betti_, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = ps / b[..., :, None]
    return np.where(b[..., :, None] > 0, z, 0.0)


def _weights(L: int, alpha: float) -> np.ndarray:
    i = np.arange(L)
    gap = np.abs(i[:, None] - i[None, :]).astype(float)
    with np.errstate(divide="ignore"):
        w = gap ** alpha
    if alpha < 0:
        np.fill_diagonal(w, 1e-10)
    return w


def weighted_similarity(z: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """Z̄(l) = sum_j Z(l, j) |l-j|^alpha / sum_j |l-j|^alpha (paper Eq. 8); ``z`` is (..., L, L)."""
    L = z.shape[-1]
    w = _weights(L, alpha)
    return (z * w).sum(-1) / w.sum(-1)


def effective_histogram(bars, p: int) -> np.ndarray:
    """``(L + 1, L + 1)`` counts ``[death_layer, birth_layer]`` of p-bars, bars with equal layers left
    out (``POSTPROCESS.find_eff_pis``); row L holds the bars alive on the last layer."""
    L = bars.n_layers
    bl, dl = bars.birth_layer, bars.death_layer
    m = (bars.dim == p) & (dl != bl)
    out = np.zeros((L + 1, L + 1), dtype=np.int64)
    np.add.at(out, (dl[m], bl[m]), 1)
    return out


def births_relative_frequency(bars, p: int = 1, alpha: float = 0.0) -> np.ndarray:
    """Length-L distribution over layers (the notebook's ``pi_hist(..., axis=1)``; row = death layer).

    All zeros when no bar enters (no finite-death p-bar)."""
    L = bars.n_layers
    h = effective_histogram(bars, p)[:L, :L].astype(float)
    w = _weights(L, alpha)
    out = (h * w).sum(1) / w.sum(1)
    s = out.sum()
    return out / s if s > 0 else out
