"""``interp gate toy``: the whole pipeline on the two shipped toy models, with known answers.

    res = run_toy_world(n=400, seed=1)
    res["gated"]["table"]            # accuracy under none / [EOI] / img→text / random
    res["gated"]["gate"].key         # 'eoi'
    print_report(res)                # both ablation tables side by side, flow shares, patch flips

Expected (the tests check these): in the gated model ``[EOI]`` carries most of the flow,
knocking it out drops accuracy to chance, ``random`` stays within 2 points; in the free model
``[EOI]`` costs little and ``img→text`` a lot; patching ``[EOI]`` flips most gated answers.
"""
from __future__ import annotations

from pathlib import Path

from . import world as W


def run_toy_world(n: int = 400, seed: int = 1, n_pairs: int = 100, out=None, kinds=W.MODEL_KINDS,
                  batch_size: int = 100, flow_examples: int = 200, models: dict = None, geometry: bool = False,
                  n_draws: int = 5, progress=False) -> dict:
    """Flow, ablation table and EOI patching for each toy model; ``models`` overrides the shipped ones.

    ``n_draws``: random draws averaged in the ``random`` row (the authors' 5).
    ``geometry=True`` adds the modality gap and the label overlap at the gate (:mod:`geometry`).
    ``out``: per-model CSV/PNG files and ``report.md`` (``res["written"]``: the paths).
    ``progress``: show the stages (model × flow / ablation / patching / geometry) as they run
    (:mod:`hooks.progress`: a bar on a terminal, plain lines elsewhere), or a rich Console to draw on.
    """
    from hooks.progress import progress as progress_display

    from .. import report

    examples = W.make_examples(n, seed=seed)
    pairs = W.make_pairs(n_pairs, seed=seed + 1)
    res = {"n": n, "seed": seed, "chance": W.chance(examples), "written": []}
    stages = ["flow", "ablation table", "patching"] + (["geometry"] if geometry else [])
    bar = progress_display("gate toy", len(kinds) * len(stages), unit="stages",
                           console=None if isinstance(progress, bool) else progress, enabled=bool(progress))
    with bar:
        for kind in kinds:
            _one_model(res, kind, examples, pairs, stages, bar, seed=seed, batch_size=batch_size,
                       flow_examples=flow_examples, models=models, n_draws=n_draws, out=out)
        if out is not None:
            res["written"].append(report.write_text(Path(out) / "report.md", markdown_report(res)))
    return res


def _one_model(res, kind, examples, pairs, stages, bar, *, seed, batch_size, flow_examples, models, n_draws, out):
    """Flow, ablation table, patching (and geometry) of one toy model into ``res[kind]``; files under ``out/kind``."""
    from ..ablations import ablation_table, standard_ablations
    from ..flow import attention_flow
    from ..patching import patch_gate
    from .. import report

    def stage(name):
        bar.update(description=f"gate toy: {kind} {name}")

    def done(name):
        bar.advance(1, description=f"gate toy: {kind} {name} done")

    hm = (models or {}).get(kind) or W.load_toy_model(kind)
    stage("flow")
    flow = attention_flow(hm, examples[:flow_examples], batch_size=batch_size, task="classify")
    done("flow")
    stage("ablation table")
    table = ablation_table(hm, {"accuracy": (examples, "classify"), "answer": (examples, "vqa")},
                           standard_ablations(hm.n_layers, seed=seed, n_draws=n_draws), batch_size=batch_size)
    table = table.rename(columns={"accuracy accuracy": "accuracy", "answer vqa_accuracy": "generated"})
    done("ablation table")
    stage("patching")
    patch = patch_gate(hm, pairs, layers=list(range(1, hm.n_layers)), batch_size=batch_size)
    done("patching")
    res[kind] = {"flow": flow, "gate": flow.gate(), "table": table, "patch": patch}
    if "geometry" in stages:
        stage("geometry")
        from ..gap import modality_gap
        from ..semantic import semantic_localisation

        res[kind]["gap"] = modality_gap(hm, examples[:100], tokens_per_example=16, batch_size=batch_size,
                                        task="classify", seed=seed)
        cls = W.make_examples(200, seed=seed + 2, questions=("class",))
        res[kind]["semantic"] = semantic_localisation(hm, cls, k=30, batch_size=batch_size)
        done("geometry")
    if out is not None:
        d = Path(out) / kind
        res["written"] += flow.save(d) + patch.save(d)
        res["written"].append(report.write_frame(table, d / "ablation.csv"))
        res["written"].append(report.write_text(d / "ablation.md",
                                                report.markdown_table(table.drop(columns="ablation"), "ablation")))
        for name in ("gap", "semantic"):
            if name in res[kind]:
                res["written"].append(report.write_frame(res[kind][name], d / f"{name}.csv"))
        bar.log(f"{kind}: wrote {d.resolve()}/ (flow, ablation and patching CSV/PNG files)")


def markdown_report(res: dict) -> str:
    """The toy-world results as Markdown (tables side by side, flow shares, patching, geometry)."""
    from ..report import markdown_table

    kinds = [k for k in W.MODEL_KINDS if k in res]
    parts = [f"## Toy world: attention knockout ({res['n']} examples, seed {res['seed']}, chance {res['chance']:.3f})",
             "", "accuracy = constrained answer; generated = VQA accuracy of the greedy answer.", "",
             markdown_table(side_by_side(res), "ablation")]
    for k in kinds:
        r = res[k]
        g = r["gate"]
        parts += [f"### {k}: cross-modal attention flow (gate = {g.key}, {g.share:.1%} of the flow, narrow = {g.narrow})",
                  "", markdown_table(r["flow"].shares, "layer"),
                  f"### {k}: EOI patching (resid_pre.L)", "",
                  markdown_table(r["patch"].summary, "layer")]
        if "gap" in r:
            cols = ["cos_median", "cos_q1", "cos_q3", "homogeneity", "n_clusters", "intrinsic_dim"]
            parts += [f"### {k}: modality gap", "", markdown_table(r["gap"][cols], "layer"),
                      f"### {k}: label overlap (k=30) of the class", "", markdown_table(r["semantic"], "layer")]
    return "\n".join(parts)


def side_by_side(res: dict):
    """One DataFrame: the ablation rows, accuracy (constrained) and generated answers per model."""
    import pandas as pd

    kinds = [k for k in W.MODEL_KINDS if k in res]
    cols = {}
    for k in kinds:
        t = res[k]["table"]
        cols[f"{k} accuracy"] = t["accuracy"]
        cols[f"{k} generated"] = t["generated"]
    df = pd.DataFrame(cols)
    df.index.name = "ablation"
    return df


def print_report(res: dict, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    con = console or Console()
    df = side_by_side(res)
    t = Table(title=f"toy world: attention knockout, {res['n']} examples (chance {res['chance']:.3f})")
    t.add_column("ablation")
    for c in df.columns:
        t.add_column(c, justify="right")
    for idx, row in df.iterrows():
        t.add_row(str(idx), *[f"{v:.3f}" for v in row.tolist()])
    con.print(t)
    for k in W.MODEL_KINDS:
        if k not in res:
            continue
        f, g, p = res[k]["flow"], res[k]["gate"], res[k]["patch"].summary
        sh = f.shares
        con.print(f"[bold]{k}[/]: gate = {g.key} ({g.share:.1%} of the flow; narrow={g.narrow}); "
                  f"EOI share by layer {', '.join(f'{v:.2f}' for v in sh['eoi'])}; "
                  f"text→image-side mass {', '.join(f'{v:.3f}' for v in sh['side_mass'])}")
        con.print("    EOI patching (resid_pre.L): flip rate by layer "
                  + ", ".join(f"L{L} {r:.2f}" for L, r in p["flip_rate"].items()))
