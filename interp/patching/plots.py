"""Labelled heatmaps of a sweep table (layer × position, layer × head, or one head × position
map per layer) in the shared style (:mod:`hooks.plot_style`): integer layer ticks, titles naming
model, site, positions and metric, a diverging colour scale centred on 0, written atomically.

    paths = heatmaps(df, "out/", tokens=str_tokens(model, ids[0]), model="gpt2")  # position labels "3 s12"
"""
from __future__ import annotations

from pathlib import Path

from hooks.plot_style import figure, layer_axis, save_figure, styled, title_from


def _panel(ax, table, xlabel, ylabel, title, xticks=None):
    import numpy as np

    vals = table.to_numpy(dtype=float)
    lim = float(np.nanmax(np.abs(vals))) if np.isfinite(vals).any() else 1.0
    im = ax.imshow(vals, cmap="RdBu_r", vmin=-lim or -1, vmax=lim or 1, aspect="auto")
    ax.grid(False)
    if ylabel == "layer":
        layer_axis(ax, list(table.index), axis="y", at=range(len(table.index)))
    else:
        ax.set_yticks(range(len(table.index)), [str(i) for i in table.index])
        ax.set_ylabel(ylabel)
    ax.set_xticks(range(len(table.columns)), xticks or [str(c) for c in table.columns],
                  rotation=90 if len(table.columns) > 8 else 0)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    return im


@styled
def heatmaps(df, out_dir, *, tokens=None, prefix: str = "sweep", model=None, positions=None) -> list:
    """PNG heatmaps of ``df`` (columns site, layer, head, position, effect); one per site family.
    Titles name the model and positions (keywords, else ``df.attrs``), the site and the metric."""
    out, out_dir = [], Path(out_dir)
    metric = df.attrs.get("metric", "metric")
    direction = df.attrs.get("direction", "")
    label = f"effect on {metric}" + (f" ({direction})" if direction else "")
    for site, d in df.groupby("site", sort=False):
        has_head, has_pos = d["head"].notna().any(), d["position"].notna().any()
        pos_meta = positions or df.attrs.get("positions") or ("all" if has_pos else "summed")

        def pos_ticks(cols):
            return None if tokens is None else [f"{c} {tokens[c]!s}" if c < len(tokens) else str(c) for c in cols]

        def title(what):
            return title_from(f"Patching {what}", df.attrs, model=model, site=site, positions=pos_meta)

        if has_head and has_pos:
            layers = list(dict.fromkeys(d["layer"]))
            fig, axes = figure(len(layers), 1, width=max(6, 0.45 * d["position"].nunique() + 2),
                               height=2.4 * len(layers), squeeze=False)
            for ax, L in zip(axes[:, 0], layers):
                t = d[d["layer"] == L].pivot(index="head", columns="position", values="effect")
                im = _panel(ax, t, "position", "head", title(f"layer {int(L)}: head × position"),
                            pos_ticks(list(t.columns)))
                fig.colorbar(im, ax=ax, label=label)
            name = f"{prefix}_{site}_head_position.png"
        else:
            col = "head" if has_head else "position" if has_pos else None
            t = d.pivot(index="layer", columns=col, values="effect") if col else d.set_index("layer")[["effect"]]
            fig, ax = figure(width=max(4.5, 0.45 * t.shape[1] + 3), height=max(2.8, 0.26 * t.shape[0] + 1.6))
            im = _panel(ax, t, col or "", "layer", title(f"layer × {col or 'effect'}"),
                        pos_ticks(list(t.columns)) if col == "position" else None)
            fig.colorbar(im, ax=ax, label=label)
            name = f"{prefix}_{site}_layer_{col or 'only'}.png"
        out.append(save_figure(fig, out_dir / name))
    return out
