"""Atomic outputs (temp file in the same directory, then ``os.replace``): CSV, JSON, Markdown
tables and the PNG figures of the narrow-gate analyses.

    write_frame(df, "runs/gate/ablation.csv"); write_json("runs/gate/gate.json", {...})
    markdown_table(df)                   # the ablation table as GitHub Markdown
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from hooks.io import write_text_atomic
from hooks.plot_style import (COLOURS, HATCHES, figure, layer_axis, legend_outside, line_styles, save_figure, styled,
                               title_from)


def write_text(path, text: str) -> Path:
    return write_text_atomic(path, text)


def write_json(path, obj) -> Path:
    def default(x):
        if hasattr(x, "item"):
            return x.item()
        if hasattr(x, "tolist"):
            return x.tolist()
        return str(x)

    return write_text(path, json.dumps(obj, indent=2, default=default) + "\n")


def write_frame(df, path, index: bool = True) -> Path:
    return write_text_atomic(path, df.to_csv(index=index))


def _fmt(v) -> str:
    if isinstance(v, float):
        return "–" if math.isnan(v) else f"{v:.3f}"
    return str(v)


def markdown_table(df, index_name=None) -> str:
    """A DataFrame as a GitHub Markdown table (floats with 3 decimals)."""
    cols = [str(c) for c in df.columns]
    head = [index_name or (df.index.name or "")] + cols
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    ints = [df[c].dtype.kind in "iub" for c in df.columns]
    for i, idx in enumerate(df.index):
        vals = [str(df.iat[i, j]) if ints[j] else _fmt(df.iat[i, j]) for j in range(len(cols))]
        lines.append("| " + " | ".join([str(idx)] + vals) + " |")
    return "\n".join(lines) + "\n"


def _meta(obj, **kw) -> dict:
    """model / site / positions for a title: keywords first, else the frame's ``attrs``."""
    return {**getattr(obj, "attrs", {}), **{k: v for k, v in kw.items() if v is not None}}


@styled
def plot_flow(res, path, *, model=None) -> Path:
    """Stacked shares of the four key groups per layer, and the text→image-side mass."""
    df = res.shares
    meta = _meta(df, model=model or getattr(res, "meta", {}).get("model"), site="attn_pattern.*",
                 positions="text queries → image-side keys")
    fig, (a, b) = figure(1, 2, width=10.5, height=3.8)
    bottom = None
    for col, color, hatch in zip(("special", "image", "last_image", "eoi"), COLOURS, HATCHES):
        a.bar(df.index, df[col], bottom=bottom, label=col, color=color, hatch=hatch, edgecolor="white", lw=0.3)
        bottom = df[col] if bottom is None else bottom + df[col]
    a.set(ylabel="share of text→image flow", title="share per key group")
    layer_axis(a, list(df.index))
    legend_outside(a)
    b.plot(df.index, df["side_mass"], **line_styles(1)[0])
    b.set(ylabel="text attention on image side", title="flow mass", ylim=(0, None))
    layer_axis(b, list(df.index))
    fig.suptitle(title_from("Cross-modal attention flow", meta))
    return save_figure(fig, path)


@styled
def plot_ablation(df, path, title: str = "", *, model=None) -> Path:
    """Grouped bars: one group per metric column, one bar per ablation (colour and hatch differ)."""
    metrics = [c for c in df.columns if c != "ablation" and df[c].dtype.kind == "f"]
    fig, ax = figure(width=max(4.5, 1.6 * len(metrics) * max(1, len(df)) / 3 + 1.5), height=3.6)
    w = 0.8 / max(len(df), 1)
    for i, (label, row) in enumerate(df.iterrows()):
        ax.bar([m + i * w for m in range(len(metrics))], [row[c] for c in metrics], width=w, label=str(label),
               color=COLOURS[i % len(COLOURS)], hatch=HATCHES[i % len(HATCHES)], edgecolor="white", lw=0.3)
    ax.set_xticks([m + 0.4 - w / 2 for m in range(len(metrics))], metrics)
    ax.set(ylabel="score", xlabel="metric")
    ax.set_title(title_from("Attention knockout" + (f" — {title}" if title else ""),
                            _meta(df, model=None if title else model), site="attn_pattern.* (all layers)",
                            positions="text queries → knocked-out keys"))
    legend_outside(ax, title="ablation")
    return save_figure(fig, path)


@styled
def plot_patch(res, path, *, model=None) -> Path:
    """Flip rate and overlap with the base answer per patched layer."""
    s = res.summary
    st = line_styles(2)
    fig, ax = figure(width=5.5, height=3.6)
    ax.plot(s.index, s["flip_rate"], label="flip rate", **st[0])
    ax.plot(s.index, s["overlap"], label="overlap with base", **st[1])
    ax.set(ylim=(0, 1.02), ylabel="fraction of pairs")
    layer_axis(ax, list(s.index), label="patched layer")
    ax.set_title(title_from(f"Gate patching ({res.mode})", _meta(s, model=model),
                            site="resid_pre", positions="[EOI]" if res.mode == "eoi" else res.mode))
    legend_outside(ax)
    return save_figure(fig, path)


@styled
def plot_layers(df, path, columns, title: str, ylabel: str, *, model=None, site=None, positions=None) -> Path:
    """One line per column of ``df`` (indexed by layer)."""
    fig, ax = figure(width=5.5, height=3.6)
    for c, st in zip(columns, line_styles(len(columns))):
        ax.plot(df.index, df[c], label=c, **st)
    ax.set(ylabel=ylabel)
    layer_axis(ax, list(df.index))
    ax.set_title(title_from(title, _meta(df, model=model, site=site, positions=positions)))
    legend_outside(ax)
    return save_figure(fig, path)
