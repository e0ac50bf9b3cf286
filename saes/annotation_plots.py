"""Figures for latent ↔ annotation statistics: an F1 heatmap and per-latent activation profiles.

    from saes.annotation_plots import plot_f1_heatmap, plot_profiles
    plot_f1_heatmap(val, test, table, "figures/heatmap.png")      # concepts x their top latents
    plot_profiles([{"title": "latent 12 on P1", "sequence": "MKT...", "activation": a,
                    "spans": [(3, 25, "ZN_FING")]}], "figures/profiles.png")

The heatmap shows, for every concept (row) and every latent among the concepts' top latents
(columns, grouped by the concept that picked them), the test-split F1 (InterPLM: per-residue
precision, per-domain recall) at the threshold chosen on the validation split for that pair;
a diagonal block structure means latents are specific to their concept. Profiles plot a
latent's activation along a protein with its annotated spans shaded. Files are written
atomically (temp file, then ``os.replace``); matplotlib runs headless (Agg).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np


def _save(fig, path) -> Path:
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix or ".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def f1_matrix(val, test, latents) -> np.ndarray:
    """(C, len(latents)) test F1 at each pair's validation-chosen threshold."""
    mv, mt = val.metrics(), test.metrics()
    latents = np.asarray(latents, dtype=int)
    t = mv["f1"][:, latents].argmax(-1)
    return np.take_along_axis(mt["f1"][:, latents], t[..., None], -1)[..., 0]


def plot_f1_heatmap(val, test, table, path, *, top: int = 3, title: str = "Test F1 (threshold chosen on validation)"):
    """Heatmap of :func:`f1_matrix` over the top ``top`` latents of each concept in ``table``."""
    plt = _plt()
    sub = table[table["rank"] <= top]
    latents = list(dict.fromkeys(int(x) for x in sub["latent"]))
    m = f1_matrix(val, test, latents)
    concepts = list(val.concepts)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.55 * len(latents) + 2), max(2.5, 0.5 * len(concepts) + 1.2)))
    im = ax.imshow(m, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(latents)), [str(f) for f in latents], rotation=90)
    ax.set_yticks(range(len(concepts)), concepts)
    ax.set_xlabel("latent")
    if m.size <= 400:
        for (i, j), v in np.ndenumerate(m):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="w" if v < 0.6 else "k")
    fig.colorbar(im, ax=ax, fraction=0.04, label="F1")
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def plot_profiles(profiles, path, *, colors=None):
    """One panel per profile: ``activation`` (L,) along ``sequence`` with ``spans`` shaded."""
    plt = _plt()
    profiles = list(profiles)
    if not profiles:
        raise ValueError("No activation profiles to plot.")
    palette = colors or {}
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(len(profiles), 1, figsize=(10, 1.7 * len(profiles) + 0.4), squeeze=False)
    seen = {}
    for ax, p in zip(axes[:, 0], profiles):
        a = np.asarray(p["activation"], dtype=float)
        for start, end, name in p.get("spans", []):
            col = palette.get(name) or seen.setdefault(name, cycle[len(seen) % len(cycle)])
            ax.axvspan(start - 0.5, end - 0.5, color=col, alpha=0.25, lw=0, label=name)
        ax.plot(np.arange(len(a)), a, color="k", lw=1.2)
        ax.set_xlim(-0.5, len(a) - 0.5)
        ax.set_ylabel("act.", fontsize=8)
        ax.set_title(p.get("title", ""), fontsize=9, loc="left")
        seq = p.get("sequence")
        if seq and len(seq) <= 120:
            ax.set_xticks(range(len(seq)), list(seq), fontsize=5, family="monospace")
        handles, labels = ax.get_legend_handles_labels()
        if handles:
            uniq = dict(zip(labels, handles))
            ax.legend(uniq.values(), uniq.keys(), fontsize=7, loc="upper right")
    fig.tight_layout()
    return _save(fig, path)
