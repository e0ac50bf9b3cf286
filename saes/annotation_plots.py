"""Figures for latent ↔ annotation statistics: an F1 heatmap and per-latent activation profiles.

    from saes.annotation_plots import plot_f1_heatmap, plot_profiles
    plot_f1_heatmap(val, test, table, "figures/heatmap.png")      # concepts x their top latents
    plot_profiles([{"title": "latent 12 on P1", "sequence": "MKT...", "activation": a,
                    "spans": [(3, 25, "ZN_FING")]}], "figures/profiles.png")

The heatmap shows, for every concept (row) and every latent among the concepts' top latents
(columns, grouped by the concept that picked them), the test-split F1 (InterPLM: per-residue
precision, per-domain recall) at the threshold chosen on the validation split for that pair;
a diagonal block structure means latents are specific to their concept. Profiles plot a
latent's activation along a protein with its annotated spans shaded. Drawn in the shared
style (:mod:`hooks.plot_style`; Agg canvas, files written atomically, legends outside the data).
"""
from __future__ import annotations

import numpy as np

from hooks.plot_style import COLOURS, HATCHES, figure, legend_outside, save_figure, styled, title_for


def f1_matrix(val, test, latents) -> np.ndarray:
    """(C, len(latents)) test F1 at each pair's validation-chosen threshold."""
    mv, mt = val.metrics(), test.metrics()
    latents = np.asarray(latents, dtype=int)
    t = mv["f1"][:, latents].argmax(-1)
    return np.take_along_axis(mt["f1"][:, latents], t[..., None], -1)[..., 0]


@styled
def plot_f1_heatmap(val, test, table, path, *, top: int = 3, title: str = "Test F1 (threshold chosen on validation)",
                    model=None, site=None):
    """Heatmap of :func:`f1_matrix` over the top ``top`` latents of each concept in ``table``; the
    title names the model and site when given."""
    sub = table[table["rank"] <= top]
    latents = list(dict.fromkeys(int(x) for x in sub["latent"]))
    m = f1_matrix(val, test, latents)
    concepts = list(val.concepts)
    fig, ax = figure(width=max(4.5, 0.55 * len(latents) + 2.5), height=max(2.8, 0.5 * len(concepts) + 1.5))
    im = ax.imshow(m, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    ax.grid(False)
    ax.set_xticks(range(len(latents)), [str(f) for f in latents], rotation=90)
    ax.set_yticks(range(len(concepts)), concepts)
    ax.set_xlabel("SAE latent (top latents of each annotation)")
    ax.set_ylabel("annotation")
    if m.size <= 400:
        for (i, j), v in np.ndenumerate(m):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="w" if v < 0.6 else "k")
    fig.colorbar(im, ax=ax, fraction=0.04, label="F1")
    ax.set_title(title_for(title, model=model, site=site, positions="every residue"))
    return save_figure(fig, path)


@styled
def plot_profiles(profiles, path, *, colors=None):
    """One panel per profile: ``activation`` (L,) along ``sequence`` with ``spans`` shaded (one
    colour and hatch per annotation; legend outside the panels)."""
    profiles = list(profiles)
    if not profiles:
        raise ValueError("No activation profiles to plot.")
    palette = colors or {}
    fig, axes = figure(len(profiles), 1, width=11, height=1.9 * len(profiles) + 0.6, squeeze=False)
    seen = {}
    for ax, p in zip(axes[:, 0], profiles):
        a = np.asarray(p["activation"], dtype=float)
        for start, end, name in p.get("spans", []):
            k = seen.setdefault(name, len(seen))
            ax.axvspan(start - 0.5, end - 0.5, color=palette.get(name) or COLOURS[(k + 1) % len(COLOURS)], alpha=0.25,
                       hatch=HATCHES[(k + 1) % len(HATCHES)], lw=0, label=name)
        ax.plot(np.arange(len(a)), a, color="k", lw=1.2, label="activation")
        ax.set_xlim(-0.5, len(a) - 0.5)
        ax.set_ylabel("activation")
        ax.set_title(p.get("title", ""), loc="left")
        seq = p.get("sequence")
        if seq and len(seq) <= 120:
            ax.set_xticks(range(len(seq)), list(seq), fontsize=5, family="monospace")
            ax.set_xlabel("residue")
        else:
            ax.set_xlabel("residue position")
        legend_outside(ax)
    return save_figure(fig, path)
