"""Render the main figures of the toolkit from fixed synthetic inputs (no model, no data, a few
seconds on a CPU): the before/after images of ``docs/figures.md`` and the inputs that
``tests/test_plot_style.py`` checks the shared style on.

    python tools/figure_gallery.py docs/figures/before_after --suffix after --width 720

Each figure is drawn by the repository's own plotting function; the inputs carry the metadata a
real run records (model, site, positions in ``DataFrame.attrs`` / ``params``), so the titles can
name them.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np

MODEL = "gpt2"
N_LAYERS = 12


def geometry_profile_frame():
    import pandas as pd

    rng = np.random.default_rng(0)
    names = [f"transformer.h.{i}.ln_1" for i in range(N_LAYERS)] + ["transformer.ln_f"]
    x = np.arange(len(names))
    ids = 8 + 14 * np.exp(-((x - 3) / 2.0) ** 2) + 4 * x / len(x) + rng.normal(0, 0.3, len(x))
    ari = np.clip(np.exp(-((x - 7) / 2.5) ** 2), 0, 1)
    df = pd.DataFrame({"layer": names, "n_points": 500, "id": ids, "id_twonn": ids,
                       "id_gride": ids + 0.8, "id_gride_err": 0.4 + 0 * x, "n_clusters": 4,
                       "ari": ari, "homogeneity": ari, "label_overlap": np.clip(ari + 0.05, 0, 1),
                       "data_overlap_next": 0.5})
    df.attrs.update({"model": MODEL, "site": "input_norm", "positions": "mean over tokens"})
    return df


def landscape_table():
    import pandas as pd

    rows = []
    layers = range(1, N_LAYERS + 2)
    for cond in ("0shot", "1shot", "2shot", "5shot", "sft"):
        for L in layers:
            ari = 0.0 if cond in ("0shot", "sft") else 1.0       # coinciding curves, as in the toy
            rows.append({"condition": cond, "layer": L, "metric": "ari_subjects", "value": ari})
            idv = 10 + 6 * np.sin(L / 3) + (2 if cond == "sft" else 0) + 0.3 * len(cond)
            rows.append({"condition": cond, "layer": L, "metric": "id", "value": idv})
            rows.append({"condition": cond, "layer": L, "metric": "id_err", "value": 0.5})
    t = pd.DataFrame(rows)
    t.attrs.update({"model": MODEL, "site": "input_norm", "positions": "last"})
    return t


def patching_frame():
    import pandas as pd

    rng = np.random.default_rng(1)
    rows = [{"site": "resid_pre", "layer": L, "head": None, "position": p,
             "effect": float(np.exp(-((L - 6) ** 2 + (p - 5) ** 2) / 6) + rng.normal(0, 0.03))}
            for L in range(N_LAYERS) for p in range(8)]
    df = pd.DataFrame(rows)
    df.attrs.update({"metric": "logit_diff", "direction": "noising", "model": MODEL, "positions": "all"})
    return df


def topology_result():
    rng = np.random.default_rng(2)
    S, P, L = 3, 3, N_LAYERS + 1
    betti = np.stack([np.stack([np.ones(L), 3 + 2 * np.sin(np.arange(L) / 2) + rng.normal(0, .3, L),
                                1 + rng.normal(0, .2, L)]) for _ in range(S)]).clip(0)
    ps = np.abs(rng.normal(1, .3, (S, P, L, L)))
    z = {a: np.abs(rng.normal(.5, .1, (S, P, L))) for a in (0.2, 0.5, 0.8)}
    params = {"subset_size": 500, "k": 5, "max_dim": 2, "model": MODEL, "site": "post_attention_layernorm",
              "positions": "last"}
    res = SimpleNamespace(betti=betti, ps=ps, z_bar=z, births=z, params=params)
    plan = {"zigzag_r": list(np.linspace(.2, .9, L)), "cuts": {"0.9": [], "0.8": []},
            "block_influence": list(np.linspace(.5, .1, L))}
    return res, plan


def gate_patch_result():
    import pandas as pd

    s = pd.DataFrame({"flip_rate": [0.05, 0.6, 0.95, 0.95], "overlap": [0.95, 0.4, 0.05, 0.05]},
                     index=pd.Index([0, 1, 2, 3], name="layer"))
    s.attrs.update({"model": "toy gated VLM", "site": "resid_pre", "positions": "[EOI]"})
    return SimpleNamespace(summary=s, mode="eoi")


def protein_profiles():
    rng = np.random.default_rng(3)
    seq = "".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), 90))
    a = np.abs(rng.normal(0, .1, 90))
    a[20:43] += 1.5
    return [{"title": "latent 12 on P00001 (esm2 · resid_post.4)", "sequence": seq, "activation": a,
             "spans": [(20, 43, "ZN_FING"), (60, 80, "TRANSMEM")]}]


def gate_flow_result():
    import pandas as pd

    L = pd.Index(range(6), name="layer")
    eoi = np.array([.1, .5, .7, .8, .8, .75])
    shares = pd.DataFrame({"special": .05, "image": (1 - eoi - .05) * .8, "last_image": (1 - eoi - .05) * .2,
                           "eoi": eoi, "side_mass": np.linspace(.6, .3, 6)}, index=L)
    return SimpleNamespace(shares=shares, meta={"model": "toy gated VLM"})


def gate_tables():
    import pandas as pd

    abl = pd.DataFrame({"accuracy": [.92, .26, .9, .91], "generated": [.88, .25, .86, .87]},
                       index=["none", "[EOI]", "img→text", "random"])
    abl.attrs.update({"model": "toy gated VLM"})
    gap = pd.DataFrame({"cos_median": np.linspace(.1, .6, 6), "homogeneity": np.linspace(.9, .3, 6)},
                       index=pd.Index(range(6), name="layer"))
    gap.attrs.update({"model": "toy gated VLM", "site": "resid_post", "positions": "text and image tokens"})
    return abl, gap


def annotation_counts():
    import pandas as pd

    rng = np.random.default_rng(4)
    concepts = ["ZN_FING", "TRANSMEM", "COILED"]
    f1 = rng.uniform(0, .3, (3, 16, 4))            # concept × latent × threshold
    for c in range(3):
        f1[c, 4 * c:4 * c + 3] += .6
    counts = SimpleNamespace(concepts=concepts, metrics=lambda: {"f1": f1})
    table = pd.DataFrame([{"concept": c, "rank": r + 1, "latent": 4 * i + r} for i, c in enumerate(concepts)
                          for r in range(3)])
    return counts, table


def patching_head_frame():
    import pandas as pd

    rng = np.random.default_rng(5)
    df = pd.DataFrame([{"site": "head_out", "layer": L, "head": h, "position": p, "effect": float(rng.normal(0, .2))}
                       for L in (2, 3) for h in range(4) for p in range(5)])
    df.attrs.update({"metric": "logit_diff", "direction": "noising", "model": MODEL})
    return df


def render_more(out_dir) -> list:
    """The other figure functions (not in the before/after page), for the tests of the style rules."""
    from interp.patching.plots import heatmaps
    from saes.annotation_plots import plot_f1_heatmap
    from steering.narrow_gate.report import plot_ablation, plot_flow, plot_layers

    out = Path(out_dir)
    abl, gap = gate_tables()
    counts, table = annotation_counts()
    return [plot_flow(gate_flow_result(), out / "flow.png"),
            plot_ablation(abl, out / "ablation.png"),
            plot_layers(gap, out / "modality_gap.png", list(gap.columns), "Modality gap", "value"),
            plot_f1_heatmap(counts, counts, table, out / "f1.png", model="esm2", site="resid_post.4"),
            *heatmaps(patching_head_frame(), out / "heads")]


def render_all(out_dir, suffix: str = "", width: int | None = None) -> dict:
    """``{name: png path}`` for the gallery figures, written to ``out_dir/<name>{_suffix}.png``."""
    from geometry.profile import plot_profile
    from interp.landscape.plots import plot_landscape
    from interp.patching.plots import heatmaps
    from interp.topology.report import plot_results
    from saes.annotation_plots import plot_profiles
    from steering.narrow_gate.report import plot_patch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="gallery-"))
    made = {}
    try:
        made["id_profile"] = plot_profile(geometry_profile_frame(), tmp / "geo")[0]
        lp = plot_landscape(landscape_table(), tmp / "landscape")
        made["landscape_ari_subjects"] = lp[0]
        made["landscape_id"] = lp[1]
        made["patching_heatmap"] = heatmaps(patching_frame(), tmp / "patch")[0]
        res, plan = topology_result()
        (tmp / "topo").mkdir()
        tp = {p.name: p for p in plot_results(res, tmp / "topo", plan)}
        made["zigzag_betti_profile"] = tp["betti_profile.png"]
        made["gate_patching"] = plot_patch(gate_patch_result(), tmp / "gate" / "patch.png")
        made["sae_activation_profile"] = plot_profiles(protein_profiles(), tmp / "sae" / "profiles.png")
        final = {}
        for name, p in made.items():
            dst = out / f"{name}{'_' + suffix if suffix else ''}.png"
            if width:
                _resave(Path(p), dst, width)
            else:
                shutil.copyfile(p, dst)
            final[name] = dst
        return final
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _resave(src: Path, dst: Path, width: int) -> None:
    """Downscale a PNG to at most ``width`` pixels wide (small files for the docs)."""
    from PIL import Image

    img = Image.open(src)
    if img.width > width:
        img = img.resize((width, max(1, round(img.height * width / img.width))), Image.LANCZOS)
    img.convert("RGB").quantize(256).save(dst, optimize=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--suffix", default="")
    ap.add_argument("--width", type=int, default=720, help="largest width in pixels")
    a = ap.parse_args()
    for k, v in render_all(a.out, a.suffix, a.width).items():
        print(k, v, v.stat().st_size)
