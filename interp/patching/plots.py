"""Labelled heatmaps of a sweep table (layer × position, layer × head, or one head × position
map per layer), written atomically.

    paths = heatmaps(df, "out/", tokens=str_tokens(model, ids[0]))   # position labels "3 s12"
"""
from __future__ import annotations

import os
from pathlib import Path


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _panel(ax, table, xlabel, ylabel, title, xticks=None):
    import numpy as np

    vals = table.to_numpy(dtype=float)
    lim = float(np.nanmax(np.abs(vals))) if np.isfinite(vals).any() else 1.0
    im = ax.imshow(vals, cmap="RdBu_r", vmin=-lim or -1, vmax=lim or 1, aspect="auto")
    ax.set_yticks(range(len(table.index)), [str(i) for i in table.index])
    ax.set_xticks(range(len(table.columns)), xticks or [str(c) for c in table.columns],
                  rotation=90 if len(table.columns) > 8 else 0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return im


def heatmaps(df, out_dir, *, tokens=None, prefix: str = "sweep") -> list:
    """PNG heatmaps of ``df`` (columns site, layer, head, position, effect); one per site family."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    out, out_dir = [], Path(out_dir)
    metric = df.attrs.get("metric", "metric")
    label = f"effect on {metric} ({df.attrs.get('direction', '')})"
    for site, d in df.groupby("site", sort=False):
        has_head, has_pos = d["head"].notna().any(), d["position"].notna().any()
        def pos_ticks(cols):
            return None if tokens is None else [f"{c} {tokens[c]!s}" if c < len(tokens) else str(c) for c in cols]
        if has_head and has_pos:
            layers = list(dict.fromkeys(d["layer"]))
            fig, axes = plt.subplots(len(layers), 1, figsize=(max(6, 0.45 * d["position"].nunique() + 2), 2.4 * len(layers)),
                                     squeeze=False)
            for ax, L in zip(axes[:, 0], layers):
                t = d[d["layer"] == L].pivot(index="head", columns="position", values="effect")
                im = _panel(ax, t, "position", "head", f"{site} layer {L}", pos_ticks(list(t.columns)))
                fig.colorbar(im, ax=ax, label=label)
            name = f"{prefix}_{site}_head_position.png"
        else:
            col = "head" if has_head else "position" if has_pos else None
            t = d.pivot(index="layer", columns=col, values="effect") if col else d.set_index("layer")[["effect"]]
            fig, ax = plt.subplots(figsize=(max(4, 0.45 * t.shape[1] + 2), max(2.5, 0.4 * t.shape[0] + 1.5)))
            im = _panel(ax, t, col or "", "layer", f"{site}: layer × {col or 'effect'}",
                        pos_ticks(list(t.columns)) if col == "position" else None)
            fig.colorbar(im, ax=ax, label=label)
            name = f"{prefix}_{site}_layer_{col or 'only'}.png"
        out.append(_save(fig, out_dir / name))
        plt.close(fig)
    return out
