"""One plotting style for every figure of the toolkit: integer layer ticks, titles that name model,
site and positions, legends outside the data, lines told apart by colour *and* dash *and* marker,
FDR q printed as ``< 1e-300`` rather than ``0.0e+00``, PNGs written atomically and readable by the
group (0644). It sits in ``hooks`` (the bottom layer) so that ``saes``, ``steering`` and ``interp``
all draw through it; matplotlib is imported inside the functions, so importing this module stays
light.

    from hooks.plot_style import figure, layer_axis, title_for, legend_outside, line_styles, save_figure, styled

    @styled                                               # draws under the shared rc style
    def plot_curves(layers, curves, path, *, model=None, site=None, positions=None):
        fig, ax = figure()                                # Agg canvas, no pyplot state
        for (name, ys), st in zip(curves.items(), line_styles()):
            ax.plot(layers, ys, label=name, **st)         # colour + dash + marker per line
        layer_axis(ax, layers)                            # integer ticks only (thinned when many)
        ax.set_title(title_for("ID profile", model=model, site=site, positions=positions))
        legend_outside(ax)                                # right of the axes, never over data
        return save_figure(fig, path)                     # temp then rename, mode 0644

    format_q(0.0) == "< 1e-300"; format_q(3.2e-5) == "3.2e-05"

Every function that draws a figure is decorated with :func:`styled` (it is then listed in
:data:`FIGURE_FUNCTIONS`) and writes through :func:`save_figure`; ``tests/test_plot_style.py``
fails on a ``savefig`` or a matplotlib import anywhere else in the repository.
"""
from __future__ import annotations

import contextlib
import functools
import math
import re
from pathlib import Path

from .formatting import format_q  # noqa: F401  (re-exported: text and figures print q the same way)

__all__ = ["RC", "COLOURS", "DASHES", "MARKERS", "HATCHES", "FIGURE_FUNCTIONS", "format_q", "line_styles", "styled",
           "figure", "layer_axis", "layer_numbers", "title_for", "title_from", "legend_outside", "save_figure",
           "capture"]

RC = {"figure.dpi": 110, "savefig.dpi": 150, "font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9,
      "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.spines.top": False, "axes.spines.right": False,
      "axes.grid": True, "grid.alpha": 0.3, "legend.fontsize": 8, "legend.frameon": False,
      "lines.linewidth": 1.6, "lines.markersize": 4, "image.cmap": "viridis"}
# Okabe–Ito colour-blind-safe palette (Okabe & Ito 2008), each paired with a dash and a marker, so
# overlapping lines stay distinguishable in greyscale too.
COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
DASHES = ("-", "--", "-.", ":", (0, (5, 1, 1, 1)), (0, (3, 1, 1, 1, 1, 1)))
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
HATCHES = ("", "//", "..", "xx", "\\\\", "++", "oo", "--")
FIGURE_FUNCTIONS: dict = {}   # "module.function" -> function, filled by @styled
_CAPTURED: list | None = None
_DRAWING: list = []           # names of the @styled functions running (innermost last)


def line_styles(n: int | None = None, *, fill: bool = True, nested: bool = False):
    """``[{color, linestyle, marker, ...}, ...]``: ``n`` styles (or the full cycle), pairwise distinct
    in colour, dash and marker for the first ``min(len(COLOURS), len(DASHES), len(MARKERS))``.
    ``fill=False``: hollow markers; ``nested=True``: line widths and marker sizes decreasing with the
    index, so curves that coincide exactly show as nested strokes (the first drawn is the widest)."""
    k = max(len(COLOURS), len(DASHES), len(MARKERS)) if n is None else n
    out = []
    for i in range(k):
        st = {"color": COLOURS[i % len(COLOURS)], "linestyle": DASHES[i % len(DASHES)],
              "marker": MARKERS[i % len(MARKERS)]}
        if not fill:
            st["markerfacecolor"] = "none"
        if nested and k > 1:
            st["linewidth"] = round(3.2 - 2.2 * i / (k - 1), 2)
            st["markersize"] = round(9.0 - 5.0 * i / (k - 1), 2)
        out.append(st)
    return out


def styled(fn):
    """Decorator for a function that draws figures: runs it under the shared rc style (:data:`RC`)
    and lists it in :data:`FIGURE_FUNCTIONS`."""
    name = f"{fn.__module__}.{fn.__qualname__}"

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import matplotlib

        _DRAWING.append(name)
        try:
            with matplotlib.rc_context(RC):
                return fn(*args, **kwargs)
        finally:
            _DRAWING.pop()

    FIGURE_FUNCTIONS[name] = wrapper
    return wrapper


def figure(nrows: int = 1, ncols: int = 1, *, width: float = 6.0, height: float = 3.6, squeeze: bool = True,
           layout: str | None = "constrained", **subplot_kw):
    """``(fig, ax)`` (or ``(fig, axes)`` for a grid, as ``plt.subplots``) on matplotlib's Agg canvas
    (no pyplot state, no global backend change) in the shared style."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(width, height), layout=layout)
        FigureCanvasAgg(fig)
        axes = fig.subplots(nrows, ncols, squeeze=squeeze, **subplot_kw)
    for a in (axes.flat if hasattr(axes, "flat") else [axes]):
        a.spines["top"].set_visible(False)
        a.spines["right"].set_visible(False)
    return fig, axes


def layer_numbers(names) -> tuple[list[int], dict]:
    """Integer layer numbers for layer names: the integer that changes from name to name
    (``"transformer.h.3.ln_1"`` -> 3, ``"resid_post.7"`` -> 7, ``5`` -> 5); names without it
    (``"transformer.ln_f"``) are numbered after the largest, in order, and those before the first
numbered name (``"embed"``) below the smallest (``-1``). Returns
    ``(numbers, {number: name})`` for the unnumbered ones (for the axis label)."""
    from collections import Counter

    ints = [[int(n)] if isinstance(n, int) or type(n).__name__.startswith(("int", "uint"))
            else [int(t) for t in re.findall(r"\d+", str(n))] for n in names]
    lengths = Counter(len(i) for i in ints if i)
    width = lengths.most_common(1)[0][0] if lengths else 0
    same = [i for i in ints if len(i) == width]
    varying = [j for j in range(width) if len({i[j] for i in same}) > 1]
    col = varying[0] if varying else width - 1
    found = [i[col] if width and len(i) == width else None for i in ints]
    known = [k for k, f in enumerate(found) if f is not None]
    if not known:                             # no numbers at all: the order
        return list(range(len(found))), {k: str(n) for k, n in enumerate(names)}
    first = known[0] if known else len(found)
    top = max([f for f in found if f is not None], default=-1)
    low = min([f for f in found if f is not None], default=0)
    extra, out = {}, list(found)
    for k in range(first - 1, -1, -1):       # unnumbered names before the first numbered one
        low -= 1
        out[k], extra[low] = low, str(names[k])
    for k in range(first, len(found)):
        if out[k] is None:
            top += 1
            out[k], extra[top] = top, str(names[k])
    return out, extra


def layer_axis(ax, layers=None, label: str = "layer", max_ticks: int = 16, axis: str = "x", at=None) -> list:
    """Integer ticks only on a layer axis: every layer up to ``max_ticks``, else an integer stride.
    ``layers``: the layer numbers (ints, or names: see :func:`layer_numbers`); ``at``: where the
    ticks go when they are not the layer values themselves (heatmap rows/columns ``0..n-1``).
    Returns the layer numbers that got a tick."""
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    set_label = ax.set_xlabel if axis == "x" else ax.set_ylabel
    set_ticks = ax.set_xticks if axis == "x" else ax.set_yticks
    set_label(label)
    if layers is None:
        (ax.xaxis if axis == "x" else ax.yaxis).set_major_locator(MaxNLocator(integer=True))
        return []
    nums, _ = layer_numbers(list(np.asarray(layers, dtype=object).ravel()))
    pos = list(nums) if at is None else [float(a) for a in at]
    pairs = sorted(dict(zip(pos, nums)).items()) if at is None else list(zip(pos, nums))
    stride = max(1, math.ceil(len(pairs) / max_ticks))
    pairs = pairs[::stride]
    set_ticks([p for p, _ in pairs], [str(int(n)) for _, n in pairs])
    return [int(n) for _, n in pairs]


def title_for(what: str, *, model=None, site=None, positions=None, n=None) -> str:
    """``"what — model · site · positions P · n = N"`` with the parts that are known."""
    parts = [str(p) for p in (model, site, None if positions is None else f"positions {positions}") if p]
    if n is not None:
        parts.append(f"n = {n}")
    return what + (" — " + " · ".join(parts) if parts else "")


def title_from(what: str, meta=None, **override) -> str:
    """:func:`title_for` with model, site, positions and n read from ``meta`` (a ``DataFrame.attrs``
    or params dict) unless given as keywords (``None`` keywords fall back to ``meta``)."""
    meta = dict(meta or {})
    kw = {k: override.get(k) if override.get(k) is not None else meta.get(k) for k in ("model", "site", "positions", "n")}
    return title_for(what, **kw)


def legend_outside(ax, *args, where: str = "right", **kw):
    """The legend outside the axes (never over the data): to the right (``where="right"``) or below
    (``where="below"``, for wide figures). Without explicit handles, repeated labels are shown once."""
    if where == "below":
        kw = {"loc": "upper center", "bbox_to_anchor": (0.5, -0.22), "ncols": 4, **kw}
    else:
        kw = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0), **kw}
    if not args:
        handles, labels = ax.get_legend_handles_labels()
        uniq = dict(zip(labels, handles))
        args = (list(uniq.values()), list(uniq.keys()))
    return ax.legend(*args, borderaxespad=0.0, **kw)


@contextlib.contextmanager
def capture():
    """Collect ``(path, fig, function)`` of every figure :func:`save_figure` writes inside the block
    (``function``: the :func:`styled` function drawing it, ``None`` outside one; the figures stay
    open for inspection); for tests of the style rules."""
    global _CAPTURED
    prev, _CAPTURED = _CAPTURED, []
    try:
        yield _CAPTURED
    finally:
        _CAPTURED = prev


def save_figure(fig, path, *, close: bool = True, mode: int = 0o644, dpi: float | None = None) -> Path:
    """Write ``fig`` to ``path`` atomically (temp file in the same folder, then rename) with
    permissions ``mode`` (group/world readable by default); the folder is created."""
    from .io import atomic_path

    path = Path(path)
    try:
        with atomic_path(path, mode=mode) as tmp:
            fig.savefig(tmp, bbox_inches="tight", dpi=dpi or RC["savefig.dpi"])
    finally:
        if _CAPTURED is not None:
            _CAPTURED.append((path, fig, _DRAWING[-1] if _DRAWING else None))
        elif close and fig.canvas.manager is not None:     # a pyplot figure: free pyplot's reference
            import matplotlib.pyplot as plt

            plt.close(fig)
    return path
