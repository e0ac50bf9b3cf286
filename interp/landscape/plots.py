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

Drawn in the shared style (:mod:`hooks.plot_style`: Agg canvas, no pyplot state; integer layer
ticks; legends outside the axes; each file written atomically).
"""
from __future__ import annotations

import re
from pathlib import Path

from hooks.plot_style import figure, layer_axis, legend_outside, line_styles, save_figure, styled, title_from

__all__ = ["FIGURES", "plot_landscape", "condition_label"]

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


@styled
def plot_landscape(table, out_dir, metrics=None, *, model=None, site=None, positions=None) -> list:
    """Write one figure per metric (see :data:`FIGURES`) into ``out_dir``; returns the paths. Titles
    name model, site and positions (keywords, else ``table.attrs``)."""
    out = Path(out_dir)
    conds = list(dict.fromkeys(table["condition"]))
    icl = sorted([c for c in conds if _shots(c) is not None], key=_shots)
    other = [c for c in conds if _shots(c) is None]
    styles = dict(zip(icl + other, line_styles(len(icl) + len(other), fill=False, nested=True)))
    meta = dict(model=model, site=site, positions=positions)
    paths = []
    for metric in metrics or FIGURES:
        title, ylim = FIGURES.get(metric, (metric, None))
        sub = table[table["metric"] == metric]
        if sub.empty:
            continue
        err = table[table["metric"] == f"{metric}_err"]
        fig, (ax_icl, ax_sft) = figure(1, 2, width=10.0, height=3.8, sharey=True)

        def curve(ax, cond, **kw):
            d = sub[sub["condition"] == cond].sort_values("layer")
            e = err[err["condition"] == cond].set_index("layer")["value"] if not err.empty else None
            if e is not None and len(e):
                ax.errorbar(d["layer"], d["value"], yerr=e.reindex(d["layer"]).to_numpy(), capsize=2,
                            label=condition_label(cond), **kw)
            else:
                ax.plot(d["layer"], d["value"], label=condition_label(cond), **kw)

        for c in icl:
            curve(ax_icl, c, **styles[c])
        if "0shot" in icl and other:
            curve(ax_sft, "0shot", **{**styles["0shot"], "color": "0.6"}, alpha=0.8)
        for c in other:
            curve(ax_sft, c, **styles[c])
        for ax, name in ((ax_icl, "ICL (few-shot)"), (ax_sft, "SFT (LoRA, 0-shot prompt)")):
            ax.set_title(name)
            layer_axis(ax, sorted(set(sub["layer"])), label="layer (blocks passed; L: final norm, L+1: logits)")
            if ax.lines:
                legend_outside(ax)
        ax_icl.set_ylabel(title)
        if ylim is not None:
            ax_icl.set_ylim(*ylim)
        fig.suptitle(title_from(title, table.attrs, **meta))
        paths.append(save_figure(fig, out / f"{metric}.png"))
    return paths
