"""Zigzag persistence of a sequence of complexes, through dionysus 2.1.1 (the one adapter).

The zigzag of Gardinazzi et al. (2025) joins consecutive layers by their intersection,

    K_0 ⊇ K_0 ∩ K_1 ⊆ K_1 ⊇ K_1 ∩ K_2 ⊆ ... ⊆ K_{L-1}        (zigzag positions 0 .. 2L-2),

and follows the authors' code (YuriGardinazzi/conferenceProject, ``src/zigzag/zigzag_DL.py``,
``compute_layers_with_intersection`` and ``compute_filtration_times``; ``utils/fclaux.py``,
``ranges``): a simplex present on the contiguous zigzag positions ``a..b`` is inserted at time
``a + 1`` and deleted at time ``b + 2``; one list of such times per simplex goes to
``dionysus.zigzag_homology_persistence``. Everything present on the last layer is deleted at
time ``2L``, so every bar is finite and a bar killed at ``2L`` means "alive at the end".

Bars are ``(dim, birth, death)`` in that zigzag time (the authors' CSV files, read by their
``src/plots/post_process.py`` with ``start_ind = 1``). Their positions are ``birth - 1`` and
``death - 1`` (half-open), and the *effective layer* of a position ``i`` is ``ceil(i / 2)``
(``POSTPROCESS.find_eff_pis``): a bar is alive on the layers ``birth_layer .. death_layer - 1``.
A class born and killed at the same time never exists on any complex of the zigzag; dionysus
(like the authors' pyfzz post-processing in ``run_fast_zigzag.py``) reports no bar for it.

    >>> from interp.topology.zigzag import zigzag_bars
    >>> bars = zigzag_bars([cx0, cx1, cx2])            # complexes from clique_complex
    >>> bars.dim, bars.birth, bars.death, bars.birth_layer, bars.death_layer

``connect="union"`` builds K_0 ⊆ K_0 ∪ K_1 ⊇ K_1 ... instead (a check of the Mayer–Vietoris
diamond principle; not the paper's construction).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Bars", "zigzag_bars", "zigzag_times"]


@dataclass
class Bars:
    """Zigzag bars: parallel int arrays ``dim``, ``birth``, ``death`` (zigzag time, authors' units).

    ``n_layers`` is the number of layers L (times run from 1 to 2L). ``n_simplices`` counts
    the distinct simplices of the zigzag (diagnostics).
    """

    dim: np.ndarray
    birth: np.ndarray
    death: np.ndarray
    n_layers: int
    n_simplices: int = 0
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.dim)

    @property
    def birth_layer(self) -> np.ndarray:
        """Effective birth layer ``ceil((birth - 1) / 2)``."""
        return -((-(self.birth - 1)) // 2)

    @property
    def death_layer(self) -> np.ndarray:
        """Effective death layer ``ceil((death - 1) / 2)``; ``n_layers`` = alive on the last layer."""
        return -((-(self.death - 1)) // 2)

    def of_dim(self, p: int) -> "Bars":
        m = self.dim == p
        return Bars(self.dim[m], self.birth[m], self.death[m], self.n_layers, self.n_simplices, dict(self.meta))

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame({"dim": self.dim, "birth": self.birth, "death": self.death,
                             "birth_layer": self.birth_layer, "death_layer": self.death_layer})

    @staticmethod
    def concat(parts: list, n_layers: int) -> "Bars":
        cat = (lambda a: np.concatenate(a) if a else np.zeros(0, np.int64))
        return Bars(cat([b.dim for b in parts]), cat([b.birth for b in parts]), cat([b.death for b in parts]),
                    n_layers, sum(b.n_simplices for b in parts))


def zigzag_times(complexes: list, connect: str = "intersection"):
    """Global simplices and their insertion/deletion times.

    Returns ``(simplices, times)``: ``simplices[d]`` is a ``(S_d, d+1)`` array of the distinct
    d-simplices over all layers, ``times[d]`` a list (one per simplex) of alternating
    insertion/deletion times as in ``compute_filtration_times``.
    """
    if connect not in ("intersection", "union"):
        raise ValueError(f"connect={connect!r}: use 'intersection' (the paper) or 'union'.")
    L = len(complexes)
    if L < 1:
        raise ValueError("zigzag needs at least one layer.")
    max_d = max(len(c) for c in complexes)
    simplices, times = [], []
    for d in range(max_d):
        per = [c[d] if d < len(c) else np.zeros((0, d + 1), np.int64) for c in complexes]
        allv = np.concatenate(per, 0)
        if len(allv) == 0:
            break
        uniq, inv = np.unique(allv, axis=0, return_inverse=True)
        inv = inv.reshape(-1)
        lay = np.repeat(np.arange(L), [len(p) for p in per])
        pres = np.zeros((len(uniq), L), dtype=bool)
        pres[inv, lay] = True
        z = np.zeros((len(uniq), 2 * L + 1), dtype=np.int8)  # padded: z[:, 1 + pos]
        z[:, 1::2] = pres
        mid = (pres[:, :-1] & pres[:, 1:]) if connect == "intersection" else (pres[:, :-1] | pres[:, 1:])
        z[:, 2:-1:2] = mid
        z = np.concatenate([z, np.zeros((len(uniq), 1), np.int8)], 1)
        rows, cols = np.nonzero(np.diff(z, axis=1))  # change between pos-1 and pos at column pos
        t = (cols + 1).astype(float)                   # insertion a+1 / deletion (b+1)+1
        split = np.searchsorted(rows, np.arange(1, len(uniq)))
        simplices.append(uniq)
        times.append([x.tolist() for x in np.split(t, split)])
    return simplices, times


def require_dionysus():
    """The dionysus module, or a clear error saying how to install it (an optional extra)."""
    try:
        import dionysus
    except ImportError:
        raise ImportError(
            "Zigzag persistence needs dionysus, an optional dependency: pip install 'interp[topology]' "
            "(dionysus 2.1.1 ships wheels for CPython 3.11; 2.2.x needs Boost to build)."
        ) from None
    return dionysus


def zigzag_bars(complexes: list, connect: str = "intersection", prime: int = 2) -> Bars:
    """Zigzag bars of the layer complexes (each a list by dimension, as :func:`clique_complex`)."""
    dn = require_dionysus()
    simplices, times = zigzag_times(complexes, connect)
    flat = [r for s in simplices for r in s.tolist()]
    tflat = [t for ts in times for t in ts]
    f = dn.Filtration(flat)
    _, dgms, _ = dn.zigzag_homology_persistence(f, tflat, prime=prime)
    dims, births, deaths = [], [], []
    for p, dgm in enumerate(dgms):
        for pt in dgm:
            if not np.isfinite(pt.death):  # impossible here: every simplex is deleted at the end
                raise RuntimeError(f"dionysus returned an infinite H{p} bar; the zigzag times are inconsistent.")
            dims.append(p)
            births.append(int(round(pt.birth)))
            deaths.append(int(round(pt.death)))
    L = len(complexes)
    return Bars(np.asarray(dims, np.int64), np.asarray(births, np.int64), np.asarray(deaths, np.int64), L,
                len(flat), {"connect": connect})
