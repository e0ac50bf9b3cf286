"""Figures of the landscape table: one PNG per metric, ICL and SFT side by side.

Left panel: the k-shot (ICL) conditions, one line per k. Right panel: SFT (0-shot prompt
format), with the 0-shot curve in grey for reference. Same y axis on both panels, as in the
figures of Doimo et al. (NeurIPS 2024): ARI with subjects and with answer letters, label
overlaps with subjects and letters, intrinsic dimension (with its error bars), number of ADP
clusters, fraction of core points. Curves differ in colour, marker and line style, so
coinciding curves (e.g. ARI 1.0 at every layer) stay distinguishable. The x axis is the
paper's layer label (:mod:`interp.landscape.sites`).

    from interp.landscape.plots import plot_landscape
    paths = plot_landscape(table, "runs/x/figures")     # ari_subjects.png, ari_letters.png, ...

Matplotlib's Agg canvas is used directly (no pyplot state, no global backend change); each
file is written atomically.
"""
from __future__ import annotations

import io
import os
import re
from pathlib import Path

__all__ = ["FIGURES", "plot_landscape", "condition_label"]

MARKERS = ("o", "s", "^", "D", "v", "P", "X")
STYLES = ("-", "--", ":", "-.")

FIGURES = {
    "ari_subjects": ("ARI (ADP clusters vs subjects)", (-0.05, 1.05)),
    "ari_letters": ("ARI (ADP clusters vs answer letters)", (-0.05, 1.05)),
    "overlap_subjects": ("label overlap with subjects", (-0.05, 1.05)),
    "overlap_letters": ("label overlap with answer letters", (-0.05, 1.05)),
    "id": ("intrinsic dimension (Gride, ± error)", None),
    "n_clusters": ("number of ADP clusters", None),
    "core_fraction": ("fraction of core points", (-0.05, 1.05)),
}


def condition_label(cond: str) -> str:
    m = re.fullmatch(r"(\d+)shot", str(cond))
    return f"{m.group(1)}-shot" if m else ("SFT" if str(cond) == "sft" else str(cond))


def _shots(cond: str):
    m = re.fullmatch(r"(\d+)shot", str(cond))
    return int(m.group(1)) if m else None


def _save_atomic(fig, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_bytes(buf.getvalue())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def plot_landscape(table, out_dir, metrics=None) -> list:
    """Write one figure per metric (see :data:`FIGURES`) into ``out_dir``; returns the paths."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    conds = list(dict.fromkeys(table["condition"]))
    icl = sorted([c for c in conds if _shots(c) is not None], key=_shots)
    other = [c for c in conds if _shots(c) is None]
    cmap = colormaps["viridis"]
    paths = []
    for metric in metrics or FIGURES:
        title, ylim = FIGURES.get(metric, (metric, None))
        sub = table[table["metric"] == metric]
        if sub.empty:
            continue
        err = table[table["metric"] == f"{metric}_err"]
        fig = Figure(figsize=(9.0, 3.6), tight_layout=True)
        FigureCanvasAgg(fig)
        ax_icl = fig.add_subplot(1, 2, 1)
        ax_sft = fig.add_subplot(1, 2, 2, sharey=ax_icl)

        def curve(ax, cond, **kw):
            d = sub[sub["condition"] == cond].sort_values("layer")
            e = err[err["condition"] == cond].set_index("layer")["value"] if not err.empty else None
            if e is not None and len(e):
                ax.errorbar(d["layer"], d["value"], yerr=e.reindex(d["layer"]).to_numpy(), capsize=2,
                            label=condition_label(cond), **kw)
            else:
                ax.plot(d["layer"], d["value"], label=condition_label(cond), **kw)

        for i, c in enumerate(icl):
            curve(ax_icl, c, marker=MARKERS[i % len(MARKERS)], ms=4, ls=STYLES[i % len(STYLES)], mfc="none",
                  color=cmap(i / max(1, len(icl) - 1) * 0.85))
        if "0shot" in icl and other:
            curve(ax_sft, "0shot", color="0.6", ls="--", marker="o", ms=3, mfc="none")
        for j, c in enumerate(other):
            curve(ax_sft, c, marker=MARKERS[(j + 1) % len(MARKERS)], ms=4, ls=STYLES[j % len(STYLES)],
                  color=("tab:red", "tab:purple", "tab:brown")[j % 3])
        for ax, name in ((ax_icl, "ICL (few-shot)"), (ax_sft, "SFT (LoRA, 0-shot prompt)")):
            ax.set_title(name, fontsize=10)
            ax.set_xlabel("layer (blocks passed; L: final norm, L+1: logits)")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if ax.lines:
                ax.legend(fontsize=8)
        ax_icl.set_ylabel(title)
        if ylim is not None:
            ax_icl.set_ylim(*ylim)
        paths.append(_save_atomic(fig, out / f"{metric}.png"))
    return paths
