"""Shell commands of the narrow-gate analyses, added to the ``interp`` app by :func:`register`.

    interp gate flow   --model MODEL --data DATA [--limit 2000 --seed 42] --out DIR   # flow shares, gate, gap
    interp gate ablate --model MODEL --data DATA [--windows 8,16] --out DIR      # Table 1: none/[EOI]/img→text/random
    interp gate steer  --model MODEL --data DATA [--layers 8,16] --out DIR       # EOI patching flip rates
    interp gate toy                                                              # the planted-gate toy world
    interp toy train-gate-models [--out DIR --seed 0]                            # retrain the toy models

``MODEL`` is anything ``hooks.load`` takes (HF id, local dir, HF cache) or ``toy:gated`` /
``toy:free``; ``DATA`` is a :func:`steering.narrow_gate.data.load_data` spec (``vqav2``,
``coco-karpathy``, ``flickr30k``, an ImageNet-style folder, a jsonl/parquet file, ``toy``).
Outputs are CSV + PNG (+ Markdown/JSON), written atomically. Heavy imports happen inside the
commands, so ``interp --help`` stays fast.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from steering.cli_common import console as _console, fail as _fail
from steering.cli_common import subcommand_group as get_or_add_typer
from steering.cli_common import (opt_batch_size, opt_data, opt_device, opt_dtype, opt_limit, opt_model, opt_out,
                                 opt_old_name, opt_seed, resolve_device, take_old)

GATE_HELP = "Narrow-gate analyses of VLMs (Serra et al. 2025): attention flow, knockouts, gate patching."
TOY_HELP = "Toy worlds with known answers: train their small models."


def _errors():
    import hooks

    from .errors import NarrowGateError

    return (NarrowGateError, hooks.HookError, FileNotFoundError)


def load_model(model: str, dtype: Optional[str] = None, device: Optional[str] = None):
    """``toy:gated`` / ``toy:free`` or anything ``hooks.load`` accepts."""
    if model.startswith("toy:"):
        from .toy import load_toy_model

        return load_toy_model(model[4:])
    import hooks

    return hooks.load(model, dtype=dtype, device=resolve_device(device))


def _ints(s: Optional[str]):
    if s is None or s.strip().lower() in ("", "all", "none"):
        return None
    from .errors import LayerWindowError

    try:
        return [int(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise LayerWindowError(f"Expected comma-separated layer numbers, got {s!r}.") from None


def _table(df, title: str):
    from rich.table import Table

    t = Table(title=title)
    t.add_column(df.index.name or "")
    for c in df.columns:
        t.add_column(str(c), justify="right")
    for idx, row in df.iterrows():
        t.add_row(str(idx), *[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.tolist()])
    return t


MODEL_OPT = opt_model(help="HF id, local dir, HF cache, or toy:gated / toy:free")
DATA_OPT = opt_data(help="vqav2 | coco-karpathy | flickr30k | hf:ID[:SPLIT] | image folder | file | toy")
LIMIT_OPT = opt_limit(help="use only N examples, drawn with --seed (default: all; the paper used 2000)")
N_OLD = opt_old_name("--n", "--limit")
TASK_OPT = typer.Option(None, help="task of the data: classify, vqa or caption (default: the data set's own)")
BATCH_OPT = opt_batch_size()
SEED_OPT = opt_seed(help="seed of the example draw and the random controls")


def flow(model: str = MODEL_OPT, data: str = DATA_OPT, out: Path = opt_out("gate flow"),
         n: Optional[int] = LIMIT_OPT, n_old: Optional[int] = N_OLD, seed: int = SEED_OPT, batch_size: int = BATCH_OPT,
         task: Optional[str] = TASK_OPT,
         layers: Optional[str] = typer.Option(None, help="comma-separated layers (default all)"),
         gap: bool = typer.Option(True, help="also the modality gap (cosine, ADP homogeneity)"),
         semantic: bool = typer.Option(True, help="also label overlap at the gate (labelled data)"),
         dtype: Optional[str] = opt_dtype(), device: Optional[str] = opt_device()):
    """Cross-modal attention flow per layer, the gate, and the modality gap."""
    n = take_old(n, n_old)
    from . import report
    from .data import load_data
    from .flow import attention_flow

    try:
        hm = load_model(model, dtype, device)
        examples, t = load_data(data, n=n, seed=seed, task=task)
        lay = _ints(layers)
        res = attention_flow(hm, examples, layers=lay, batch_size=batch_size, task=t, progress=True)
        res.meta["model"] = model  # gate.json and the figure title name it
        res.save(out)
        con = _console()
        con.print(_table(res.shares, f"attention flow — {model}"))
        g = res.gate()
        con.print(f"gate: [bold]{g.key}[/] carries {g.share:.1%} of the text→image flow "
                  f"({'narrow' if g.narrow else 'not narrow'}; runner-up {g.runner_up} {g.runner_up_share:.1%})")
        if gap:
            from .gap import modality_gap

            gdf = modality_gap(hm, examples[: min(len(examples), 500)], layers=lay, batch_size=batch_size, task=t,
                               seed=seed)
            report.write_frame(gdf, out / "modality_gap.csv")
            report.plot_layers(gdf, out / "modality_gap.png", [c for c in ("cos_median", "homogeneity") if c in gdf],
                               "modality gap", "value", model=model, positions="text and image tokens")
            con.print(_table(gdf, "modality gap"))
        labelled = sum(e.get("label") is not None for e in examples)
        if semantic and labelled and labelled < len(examples):
            con.print(f"semantic step skipped: only {labelled} of {len(examples)} examples carry a class label")
        elif semantic and labelled and labelled <= 30:
            con.print(f"semantic step skipped: label overlap (k=30) needs at least 31 labelled examples, "
                      f"got {labelled} (use --limit 31 or more)")
        elif semantic and labelled:
            from .semantic import semantic_localisation

            sdf = semantic_localisation(hm, examples, layers=lay, batch_size=batch_size)
            report.write_frame(sdf, out / "semantic_overlap.csv")
            report.plot_layers(sdf, out / "semantic_overlap.png", list(sdf.columns), "label overlap (k=30)", "overlap",
                               model=model)
            con.print(_table(sdf, "label overlap (k=30)"))
    except _errors() as e:
        _fail(str(e))
    _console().print(f"wrote {out}")


def ablate(model: str = MODEL_OPT, data: str = DATA_OPT, out: Path = opt_out("gate ablate"),
           n: Optional[int] = LIMIT_OPT, n_old: Optional[int] = N_OLD, seed: int = SEED_OPT, batch_size: int = BATCH_OPT,
           task: Optional[str] = TASK_OPT,
           windows: Optional[str] = typer.Option(None, help="extra windows of last-k layers, e.g. 8,16"),
           mode: str = typer.Option("zero", help="zero (post-softmax, no renormalisation) | mask"),
           n_random: int = typer.Option(10, help="random knockouts of as many edges (the control)"), n_draws: int = typer.Option(5, help="random draws averaged (authors: 5)"),
           dtype: Optional[str] = opt_dtype(), device: Optional[str] = opt_device()):
    """Table 1: task metrics under none / [EOI] (last image for LLaVA) / img→text / random knockouts."""
    n = take_old(n, n_old)
    from . import report
    from .ablations import ablation_table, standard_ablations
    from .data import load_data

    from .tasks import check_ready

    try:
        examples, t = load_data(data, n=n, seed=seed, task=task)
        check_ready(t)  # e.g. CIDEr's package: fail before loading the model or generating anything
        hm = load_model(model, dtype, device)
        wins = [None] + (_ints(windows) or [])
        abl = standard_ablations(hm.n_layers, windows=wins, mode=mode, n_random=n_random, seed=seed,
                                 n_draws=n_draws)
        df = ablation_table(hm, {"": (examples, t)}, abl, batch_size=batch_size,
                            progress=lambda row: _console().print(f"  {row['label']}: " + ", ".join(
                                f"{k} {v:.3f}" for k, v in row.items() if isinstance(v, float))))
    except _errors() as e:
        _fail(str(e))
    report.write_frame(df, out / "ablation.csv")
    report.write_text(out / "ablation.md", report.markdown_table(df.drop(columns="ablation"), "ablation"))
    report.plot_ablation(df.drop(columns="ablation"), out / "ablation.png", f"{model} · {data}")
    report.write_json(out / "results.json", {"model": model, "data": data, "task": t, "n": len(examples),
                                              "seed": seed, "mode": mode, "table": df.reset_index().to_dict("records"),
                                              "random_draws": df.attrs.get("draws", {}),
                                              "gate": df.attrs.get("gate_name")})
    _console().print(_table(df.drop(columns="ablation"), f"attention knockout — {model} · {data}"))
    _console().print(f"wrote {out}")


def steer(model: str = MODEL_OPT, data: str = DATA_OPT, out: Path = opt_out("gate steer"),
          n: Optional[int] = LIMIT_OPT, n_old: Optional[int] = N_OLD, seed: int = SEED_OPT, batch_size: int = BATCH_OPT,
          layers: Optional[str] = typer.Option(None, help="comma-separated layers (default all)"),
          mode: str = typer.Option("resid", help="resid (resid_pre.L at the gate) | attn_input (attention input from L on)"),
          dtype: Optional[str] = opt_dtype(), device: Optional[str] = opt_device()):
    """Patch the base image's gate activations into the target run; flip rates per layer."""
    n = take_old(n, n_old)
    from .data import load_data
    from .patching import make_pairs, patch_gate

    try:
        hm = load_model(model, dtype, device)
        if data == "toy" or data.startswith("toy:"):
            from .toy import make_pairs as toy_pairs

            pairs = toy_pairs(min(n or 400, 400), seed=seed)
        else:
            examples, _ = load_data(data, n=None, seed=seed, task="classify")
            pairs = make_pairs(examples, n if n is not None else len(examples), seed=seed)
        res = patch_gate(hm, pairs, layers=_ints(layers), mode=mode, batch_size=batch_size)
    except _errors() as e:
        _fail(str(e))
    res.summary.attrs["model"] = model  # the figure title names it
    res.save(out)
    _console().print(_table(res.summary, f"gate patching ({mode}) — {model}"))
    _console().print(f"wrote {out}")


def toy(n: int = typer.Option(400, help="test examples generated per table"), seed: int = opt_seed(),
        pairs: int = typer.Option(100, help="patching pairs"),
        geometry: bool = typer.Option(False, help="also the modality gap and label overlap (slower)"),
        out: Path = opt_out("gate toy", help="directory for the CSVs, PNGs and report.md")):
    """The planted-gate toy world: flow, both ablation tables side by side, EOI patching."""
    from .toy.demo import print_report, run_toy_world

    try:
        res = run_toy_world(n=n, seed=seed, n_pairs=pairs, out=out, geometry=geometry, progress=True)
    except _errors() as e:
        _fail(str(e))
    print_report(res, _console())
    folders = ", ".join(str(Path(out).resolve() / k) for k in ("gated", "free") if k in res)
    _console().print(f"wrote {len(res['written'])} files: {Path(out).resolve() / 'report.md'} and the per-model "
                     f"CSV/PNG files in {folders}")


def train_gate_models_cmd(out: Path = typer.Option(None, help="directory (default: the shipped toy_models/)"),
                          seed: int = opt_seed(), steps: Optional[int] = typer.Option(None, help="training steps per model")):
    """Train the gated and the free toy models (seeded, reproducible) and save them."""
    from .toy.train import train_gate_models
    from .toy.world import TOY_MODEL_DIR

    kw = {} if steps is None else {"steps": steps}
    try:
        stats = train_gate_models(out or TOY_MODEL_DIR, seed=seed, log=_console().print, progress=True, **kw)
    except _errors() as e:
        _fail(str(e))
    for kind, s in stats.items():
        _console().print(f"{kind}: final loss {s['history'][-1]['loss']}")
    _console().print(f"wrote {out or TOY_MODEL_DIR}")


def register(app: typer.Typer) -> None:
    """Add ``gate flow|ablate|steer|toy`` and ``toy train-gate-models`` to the ``interp`` app."""
    gate = get_or_add_typer(app, "gate", GATE_HELP)
    gate.command("flow")(flow)
    gate.command("ablate")(ablate)
    gate.command("steer")(steer)
    gate.command("toy")(toy)
    get_or_add_typer(app, "toy", TOY_HELP).command("train-gate-models")(train_gate_models_cmd)
