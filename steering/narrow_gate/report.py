"""Atomic outputs (temp file in the same directory, then ``os.replace``): CSV, JSON, Markdown
tables and the PNG figures of the narrow-gate analyses.

    write_frame(df, "runs/gate/ablation.csv"); write_json("runs/gate/gate.json", {...})
    markdown_table(df)                   # the ablation table as GitHub Markdown
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path


def _atomic(path, write) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_text(path, text: str) -> Path:
    return _atomic(path, lambda t: t.write_text(text))


def write_json(path, obj) -> Path:
    def default(x):
        if hasattr(x, "item"):
            return x.item()
        if hasattr(x, "tolist"):
            return x.tolist()
        return str(x)

    return write_text(path, json.dumps(obj, indent=2, default=default) + "\n")


def write_frame(df, path, index: bool = True) -> Path:
    return _atomic(path, lambda t: df.to_csv(t, index=index))


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


def _savefig(fig, path) -> Path:
    import matplotlib.pyplot as plt

    def write(tmp):
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")

    try:
        return _atomic(path, write)
    finally:
        plt.close(fig)


def _plt():
    import matplotlib

    if "MPLBACKEND" not in os.environ:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_flow(res, path) -> Path:
    """Stacked shares of the four key groups per layer, and the text→image-side mass."""
    plt = _plt()
    df = res.shares
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5))
    bottom = None
    for col, color in zip(("special", "image", "last_image", "eoi"), ("#999999", "#4c72b0", "#55a868", "#c44e52")):
        a.bar(df.index, df[col], bottom=bottom, label=col, color=color)
        bottom = df[col] if bottom is None else bottom + df[col]
    a.set(xlabel="layer", ylabel="share of text→image flow", title="cross-modal attention flow")
    a.legend(fontsize=8)
    b.plot(df.index, df["side_mass"], marker="o")
    b.set(xlabel="layer", ylabel="text attention on image side", title="flow mass", ylim=(0, None))
    return _savefig(fig, path)


def plot_ablation(df, path, title: str = "") -> Path:
    """Grouped bars: one group per metric column, one bar per ablation."""
    plt = _plt()
    metrics = [c for c in df.columns if c != "ablation" and df[c].dtype.kind == "f"]
    fig, ax = plt.subplots(figsize=(max(4, 1.6 * len(metrics) * max(1, len(df)) / 3), 3.5))
    w = 0.8 / max(len(df), 1)
    for i, (label, row) in enumerate(df.iterrows()):
        ax.bar([m + i * w for m in range(len(metrics))], [row[c] for c in metrics], width=w, label=str(label))
    ax.set_xticks([m + 0.4 - w / 2 for m in range(len(metrics))], metrics)
    ax.set(title=title or "attention knockout", ylabel="score")
    ax.legend(fontsize=8)
    return _savefig(fig, path)


def plot_patch(res, path) -> Path:
    plt = _plt()
    s = res.summary
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(s.index, s["flip_rate"], marker="o", label="flip rate")
    ax.plot(s.index, s["overlap"], marker="s", label="overlap with base")
    ax.set(xlabel="layer", ylim=(0, 1.02), title=f"gate patching ({res.mode})")
    ax.legend(fontsize=8)
    return _savefig(fig, path)


def plot_layers(df, path, columns, title: str, ylabel: str) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for c in columns:
        ax.plot(df.index, df[c], marker="o", label=c)
    ax.set(xlabel="layer", ylabel=ylabel, title=title)
    ax.legend(fontsize=8)
    return _savefig(fig, path)
