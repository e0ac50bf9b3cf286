"""One plotting style for every figure: integer layer ticks, titles that name model, site and
positions, legends outside the data, lines told apart by colour *and* dash and marker, FDR q
printed as ``< 1e-300`` rather than ``0.0e+00``, and PNGs written atomically and readable by
the group (0644).

    from interp.plot_style import figure, layer_axis, title_for, legend_outside, line_styles, save_figure, format_q

    fig, ax = figure()                                    # the shared rc style, one size
    for (name, ys), st in zip(curves.items(), line_styles()):
        ax.plot(layers, ys, label=name, **st)             # colour + dash + marker per line
    layer_axis(ax, layers)                                # integer ticks only (thinned when many)
    ax.set_title(title_for("ID profile", model="gpt2", site="resid_post.*", positions="last"))
    legend_outside(ax)                                    # to the right of the axes, never over data
    save_figure(fig, "runs/x/id_profile.png")             # temp then rename, mode 0644
    format_q(0.0) == "< 1e-300"; format_q(3.2e-5) == "3.2e-05"

matplotlib is imported inside the functions (importing this module stays light).
"""
from __future__ import annotations

import math
import os
from pathlib import Path

RC = {"figure.dpi": 110, "savefig.dpi": 150, "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9,
      "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3,
      "legend.fontsize": 8, "legend.frameon": False, "lines.linewidth": 1.6, "lines.markersize": 4}
# Okabe–Ito colour-blind-safe palette (Okabe & Ito 2008), each paired with a dash and a marker, so
# overlapping lines stay distinguishable in greyscale too.
COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
DASHES = ("-", "--", "-.", ":", (0, (5, 1, 1, 1)), (0, (3, 1, 1, 1, 1, 1)))
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
SMALLEST = 1e-300


def format_q(q, digits: int = 1) -> str:
    """A p or q value for text and figures: ``< 1e-300`` when it underflowed (0 or subnormal),
    ``nan`` for missing, otherwise scientific notation (``3.2e-05``)."""
    if q is None or (isinstance(q, float) and math.isnan(q)):
        return "nan"
    q = float(q)
    if q < SMALLEST:
        return "< 1e-300"
    return f"{q:.{digits}e}"


def line_styles(n: int | None = None):
    """``[{color, linestyle, marker}, ...]``: ``n`` styles (or the full cycle), all pairwise distinct
    in colour, dash and marker for the first ``min(len(COLOURS), len(DASHES), len(MARKERS))``."""
    k = max(len(COLOURS), len(DASHES), len(MARKERS)) if n is None else n
    return [{"color": COLOURS[i % len(COLOURS)], "linestyle": DASHES[i % len(DASHES)],
             "marker": MARKERS[i % len(MARKERS)]} for i in range(k)]


def figure(width: float = 6.0, height: float = 3.6, **kw):
    """``(fig, ax)`` in the shared style (``RC``)."""
    import matplotlib

    matplotlib.use(os.environ.get("MPLBACKEND", "Agg"), force=False)
    import matplotlib.pyplot as plt

    with plt.rc_context(RC):
        fig, ax = plt.subplots(figsize=(width, height), **kw)
    for a in (ax.flat if hasattr(ax, "flat") else [ax]):
        a.spines["top"].set_visible(False)
        a.spines["right"].set_visible(False)
        a.grid(True, alpha=0.3)
    return fig, ax


def layer_axis(ax, layers=None, label: str = "layer", max_ticks: int = 16, axis: str = "x") -> list:
    """Integer ticks only on a layer axis (every layer up to ``max_ticks``, else an integer
    stride); returns the tick positions."""
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    set_label = ax.set_xlabel if axis == "x" else ax.set_ylabel
    set_ticks = ax.set_xticks if axis == "x" else ax.set_yticks
    set_label(label)
    if layers is None:
        (ax.xaxis if axis == "x" else ax.yaxis).set_major_locator(MaxNLocator(integer=True))
        return []
    ls = sorted({int(v) for v in np.asarray(layers).ravel()})
    stride = max(1, math.ceil(len(ls) / max_ticks))
    ticks = ls[::stride]
    set_ticks(ticks, [str(t) for t in ticks])
    return ticks


def title_for(what: str, *, model=None, site=None, positions=None, n=None) -> str:
    """``"what — model · site · positions · n = N"`` with the parts that are known."""
    parts = [str(p) for p in (model, site, None if positions is None else f"positions {positions}") if p]
    if n is not None:
        parts.append(f"n = {n}")
    return what + (" — " + " · ".join(parts) if parts else "")


def legend_outside(ax, **kw):
    """The legend to the right of the axes (never over the data)."""
    return ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, **kw)


def save_figure(fig, path, *, close: bool = True, mode: int = 0o644) -> Path:
    """Write ``fig`` to ``path`` atomically (temp file then rename) with permissions ``mode``
    (group/world readable by default)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        fig.savefig(tmp, bbox_inches="tight")
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
        if close:
            import matplotlib.pyplot as plt

            plt.close(fig)
    return path
