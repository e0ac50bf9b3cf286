"""Files and figures of ``interp zigzag`` (all written atomically: temp file, then rename).

    bars.csv                     subset, dim, birth, death (zigzag time, authors' units), birth_layer, death_layer
    betti.csv                    subset, layer, layer_name, dim, betti
    persistence_similarity.csv   subset, dim, layer_a, layer_b, ps, z   (z = PS / beta(layer_a))
    inter_layer_persistence.csv  subset, dim, alpha, layer, z_bar      (paper Eq. 8)
    births.csv                   subset, dim, alpha, layer, frequency  (the notebook's pi_hist)
    summary.csv                  quantity, dim, alpha, layer, median, min, max, mean, std (over subsets)
    pruning.json                 blocks cut at each p by each method (see pruning.py)
    params.json                  k, max_dim, subsets, layer names, versions, H_max_dim caveat
    figures: ps_H{p}.png, betti_profile.png, inter_layer_persistence.png, births_frequency.png,
             pruning_scores.png
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from hooks.plot_style import figure, layer_axis, legend_outside, line_styles, save_figure, styled, title_from
from hooks.io import write_csv_atomic, write_json_atomic

__all__ = ["write_results", "plot_results"]


def _rows_summary(res) -> list:
    rows = []
    P = res.betti.shape[1]

    def add(q, arr, alpha=""):
        for p in range(P):
            for l in range(arr.shape[-1]):
                v = arr[:, p, l].astype(float)
                rows.append({"quantity": q, "dim": p, "alpha": alpha, "layer": l, "median": float(np.median(v)),
                             "min": float(v.min()), "max": float(v.max()), "mean": float(v.mean()),
                             "std": float(v.std())})

    add("betti", res.betti)
    for a, zb in res.z_bar.items():
        add("inter_layer_persistence", zb, a)
    for a, bf in res.births.items():
        add("births_frequency", bf, a)
    return rows


def write_results(res, out: Path, plan: dict | None = None, extra_params: dict | None = None) -> list:
    """Write the CSV/JSON files (and figures) of a :class:`~interp.topology.pipeline.ZigzagResult`."""
    from .zigzag import require_dionysus

    dionysus = require_dionysus()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    S, P, L = res.betti.shape
    paths = []
    rows = []
    for s, b in enumerate(res.bars):
        for d, bi, de, bl, dl in zip(b.dim.tolist(), b.birth.tolist(), b.death.tolist(), b.birth_layer.tolist(),
                                     b.death_layer.tolist()):
            rows.append({"subset": s, "dim": d, "birth": bi, "death": de, "birth_layer": bl, "death_layer": dl})
    paths.append(write_csv_atomic(out / "bars.csv", rows or [{"subset": "", "dim": "", "birth": "", "death": "",
                                                               "birth_layer": "", "death_layer": ""}][:0]))
    paths.append(write_csv_atomic(out / "betti.csv", [
        {"subset": s, "layer": l, "layer_name": res.layer_names[l], "dim": p, "betti": int(res.betti[s, p, l])}
        for s in range(S) for l in range(L) for p in range(P)]))
    paths.append(write_csv_atomic(out / "persistence_similarity.csv", [
        {"subset": s, "dim": p, "layer_a": a, "layer_b": c, "ps": int(res.ps[s, p, a, c]), "z": float(res.z[s, p, a, c])}
        for s in range(S) for p in range(P) for a in range(L) for c in range(L)]))
    paths.append(write_csv_atomic(out / "inter_layer_persistence.csv", [
        {"subset": s, "dim": p, "alpha": a, "layer": l, "z_bar": float(zb[s, p, l])}
        for a, zb in res.z_bar.items() for s in range(S) for p in range(P) for l in range(L)]))
    paths.append(write_csv_atomic(out / "births.csv", [
        {"subset": s, "dim": p, "alpha": a, "layer": l, "frequency": float(bf[s, p, l])}
        for a, bf in res.births.items() for s in range(S) for p in range(P) for l in range(L)]))
    paths.append(write_csv_atomic(out / "summary.csv", _rows_summary(res)))
    if plan is not None:
        paths.append(write_json_atomic(out / "pruning.json", plan))
    params = {**res.params, "layer_names": res.layer_names, "subset_sizes": [len(i) for i in res.subset_indices],
              "n_bars": [len(b) for b in res.bars], "n_simplices": [b.n_simplices for b in res.bars],
              "dionysus": getattr(dionysus, "__version__", "?"),
              "caveat": f"H{res.params.get('max_dim')} bars are truncation artefacts (no simplices of dimension "
                        f"{res.params.get('max_dim', 0) + 1} can fill them); H0..H{res.params.get('max_dim', 1) - 1} "
                        "are valid.", **(extra_params or {})}
    paths.append(write_json_atomic(out / "params.json", params))
    paths += plot_results(res, out, plan, extra_params)
    return paths


@styled
def plot_results(res, out: Path, plan: dict | None = None, meta: dict | None = None) -> list:
    """The figures, in the shared style (:mod:`hooks.plot_style`); titles name model, site and
    positions from ``meta`` (the CLI's ``extra_params``) or ``res.params``."""
    out = Path(out)
    S, P, L = res.betti.shape
    x = np.arange(L)
    info = {**res.params, **(meta or {})}
    sub = f"{S} subset{'s' if S > 1 else ''} × {info.get('subset_size', '?')} points, " \
          f"k={info.get('k')}, m={info.get('max_dim')}"

    def title(what):
        return title_from(what, info) + f"\n{sub}"

    paths = []
    for p in range(P):
        fig, ax = figure(width=5.4, height=4.6)
        im = ax.imshow(res.ps[:, p].mean(0), origin="lower", cmap="magma")
        ax.grid(False)
        fig.colorbar(im, ax=ax, label=f"PS$_{p}$ (number of {p}-cycles alive throughout)")
        layer_axis(ax, x, label="layer $\\ell_2$", at=x)
        layer_axis(ax, x, label="layer $\\ell_1$", axis="y", at=x)
        ax.set_title(title(f"Persistence similarity H{p}{' (truncation artefacts)' if p == P - 1 else ''}"))
        paths.append(save_figure(fig, out / f"ps_H{p}.png"))
    fig, ax = figure()
    for p, st in zip(range(1, P), line_styles(P)):
        med = np.median(res.betti[:, p], 0)
        ax.plot(x, med, label=f"$\\beta_{p}$" + (" (artefact)" if p == P - 1 else ""), **st)
        ax.fill_between(x, res.betti[:, p].min(0), res.betti[:, p].max(0), color=st["color"], alpha=0.15)
    layer_axis(ax, x)
    ax.set_ylabel("Betti number (median, range over subsets)")
    ax.set_title(title("Betti numbers per layer"))
    legend_outside(ax)
    paths.append(save_figure(fig, out / "betti_profile.png"))
    for name, data, ylabel in (("inter_layer_persistence", res.z_bar, "inter-layer persistence $\\bar Z_1$"),
                               ("births_frequency", res.births, "births' relative frequency (H1)")):
        fig, ax = figure()
        for (a, arr), st in zip(data.items(), line_styles(len(data))):
            v = arr[:, 1] if P > 1 else arr[:, 0]
            ax.plot(x, v.mean(0), label=f"$\\alpha$={a:g}", **st)
            ax.fill_between(x, v.mean(0) - v.std(0), v.mean(0) + v.std(0), color=st["color"], alpha=0.15)
        if name == "births_frequency":
            ax.axhline(1 / L, color="k", ls=":", lw=1, label="uniform")
        layer_axis(ax, x, label="layer (row = death layer, as the authors' pi_hist)" if name == "births_frequency"
                   else "layer")
        ax.set_ylabel(ylabel)
        ax.set_title(title(f"{ylabel.split(' (')[0].split(' $')[0]} (mean ± std over subsets)"))
        legend_outside(ax)
        paths.append(save_figure(fig, out / f"{name}.png"))
    if plan is not None:
        fig, ax = figure()
        r = np.asarray(plan["zigzag_r"])
        st = line_styles(2)
        ax.plot(np.arange(len(r)), r, label="zigzag $r_i$ (H1)", **st[0])
        for p in plan["cuts"]:
            ax.axhline(float(p) * r.max(), ls=":", lw=1, color="gray")
            ax.text(0, float(p) * r.max(), f"p={p}", fontsize=7, va="bottom")
        handles = ax.get_legend_handles_labels()
        if "block_influence" in plan:
            ax2 = ax.twinx()
            ax2.plot(np.arange(len(plan["block_influence"])), plan["block_influence"],
                     label="block influence (ShortGPT)", **st[1])
            ax2.set_ylabel("block influence", color=st[1]["color"])
            ax2.grid(False)
            h2 = ax2.get_legend_handles_labels()
            handles = (handles[0] + h2[0], handles[1] + h2[1])
        layer_axis(ax, np.arange(len(r)), label="block (last point: final norm, never cut)")
        ax.set_ylabel("$r_i$ = mean$_j$ PS$_1$(i,j)/$\\beta_1$(j)")
        ax.set_title(title("Pruning scores per block"))
        legend_outside(ax, *handles, where="below", bbox_to_anchor=(0.5, -0.25))
        paths.append(save_figure(fig, out / "pruning_scores.png"))
    return paths
