"""The ``interp`` command line. Heavy imports happen inside commands so ``interp --help`` is fast.

    interp sites MODEL
    interp run --model MODEL --data DATA --spec SPEC.yaml --out DIR
    interp sweep --model MODEL --data PAIRS.jsonl --sites attn_out --by layer,head --metric logit_diff --out DIR
    interp demo
    interp geometry --reps reps.safetensors --labels labels.txt --out DIR
    interp zigzag --reps reps.safetensors --out DIR        (interp prune --model M --blocks 3,4 --data D)
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from steering.cli_common import console as _console, fail as _fail

from .cli_tables import print_demo as _print_demo, print_summary as _print_summary  # noqa: F401 (demo.py)
from steering.cli_common import (opt_batch_size, opt_data, opt_device, opt_dtype, opt_limit, opt_model, opt_out,
                                 opt_seed, opt_text_key, resolve_device as _resolve_device)

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Mechanistic interpretability toolkit.")


def _hide_flag_types():
    """``--help`` lists flags without a ``<bool>`` type (typer shows one for every option; a flag
    takes no value, so the type only misleads). Affects help rendering only."""
    from typer.core import TyperOption

    show = getattr(TyperOption, "display_type_rich", None)  # typer's help renderer (recent releases only)
    if show is None or getattr(show, "_interp_flags_hidden", False):
        return

    def display_type_rich(self, ctx):
        return None if getattr(self, "is_flag", False) else show(self, ctx)

    display_type_rich._interp_flags_hidden = True
    TyperOption.display_type_rich = display_type_rich


_hide_flag_types()


def _version(value: bool):
    if value:
        from ._meta import package_version

        typer.echo(f"interp {package_version()}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="print the package version and exit")):
    """Mechanistic interpretability toolkit."""


@app.command()
def sites(model: str = typer.Argument(..., help="HF id, local dir, fair-esm .pt or tl:NAME"),
          json_: bool = typer.Option(False, "--json", help="print {site: shape} as JSON instead of a table"),
          device: Optional[str] = opt_device(), dtype: Optional[str] = opt_dtype()):
    """List a model's hook sites and their shapes."""
    import hooks
    from rich.table import Table

    try:
        hm = hooks.load(model, device=_resolve_device(device), dtype=dtype)
    except hooks.HookError as e:
        _fail(str(e))
    if json_:
        import json

        typer.echo(json.dumps({"model": model, "adapter": hm.adapter.name, "n_layers": hm.n_layers,
                               "sites": {k: str(v) for k, v in hm.sites.items()}}, indent=1, ensure_ascii=False))
        return
    t = Table(title=f"{model} — adapter {hm.adapter.name}, {hm.n_layers} layers")
    t.add_column("site")
    t.add_column("shape")
    for name, shape in hm.sites.items():
        t.add_row(name, shape)
    _console().print(t)


@app.command()
def run(
    model: str = opt_model(),
    data: str = opt_data(check=True, help="text/jsonl/csv/parquet/fasta file; jsonl/csv rows may carry answer, distractor"),
    spec: str = typer.Option(..., help="YAML/JSON intervention spec"),
    out: Path = opt_out("run", help="directory for results.json, examples.csv, batches.csv"),
    metric: Optional[List[str]] = typer.Option(None, help="logit_diff, answer_logprob, loss, kl, top1_agreement or "
                                               "module:function (repeatable; default: all the data allows)"),
    batch_size: int = opt_batch_size(),
    limit: Optional[int] = opt_limit(),
    text_key: Optional[str] = opt_text_key(),
    seed: int = opt_seed(),
    device: Optional[str] = opt_device(),
    dtype: Optional[str] = opt_dtype(),
):
    """Run the clean and the intervened model over DATA and compare them, one row per example."""
    import hooks

    from .evaluate import compare
    from .rows import read_rows

    try:
        ivs = hooks.load_spec(spec)
        hm = hooks.load(model, device=_resolve_device(device), dtype=dtype)
        rows = read_rows(data, text_key)[:limit]
        res = compare(hm, rows, ivs, batch_size=batch_size, seed=seed, text_key=text_key, metrics=metric or None)
    except (hooks.HookError, ValueError, FileNotFoundError) as e:
        _fail(str(e))
    _print_summary(res["summary"], f"{model} · {Path(spec).name}")
    from ._meta import run_meta
    from hooks.io import write_csv_atomic, write_json_atomic

    write_json_atomic(out / "results.json", {"model": model, "data": data, "spec": [i.to_dict() for i in ivs],
                                             "summary": res["summary"], "batches": res["batches"],
                                             "meta": run_meta(seeds=[seed])})
    write_csv_atomic(out / "examples.csv", res["examples"])
    write_csv_atomic(out / "batches.csv", res["batches"])
    _console().print(f"wrote {out / 'results.json'}, {out / 'examples.csv'} and {out / 'batches.csv'}")


@app.command()
def demo(
    out: Path = opt_out("demo", help="output directory (report.md, summary.json, figures/)"),
    model: Optional[str] = opt_model(None, help="ESM model: HF id, local dir or fair-esm .pt (default: shipped toy)"),
    proteins: Optional[str] = typer.Option(None, help="annotated proteins: parquet/FASTA/TMbed/UniProt (default: toy world)"),
    layer: Optional[int] = typer.Option(None, help="SAE layer (default: middle)"),
    n_steer: int = typer.Option(100, help="generated proteins per arm and seed (steered / unsteered)"),
    n_seeds: int = typer.Option(5, help="steering seeds (the headline is the median over them)"),
    seed: int = opt_seed(help="first seed (steering seeds are seed, seed+1, ...; also the split and SAE seed)"),
    device: Optional[str] = opt_device(help="device for a --model you name (the shipped toy runs on cpu)"),
    dtype: Optional[str] = opt_dtype(),
):
    """The main job, offline: SAE on ESM-2 residuals → latents vs annotations → steered generation."""
    import hooks
    from steering.protein.pipeline import run_protein_pipeline

    # reusing or resuming OUT/sae is said once, by saes.train_sae (what is reused, from where, how to retrain)
    try:
        if model and model != "toy" and not (Path(model) / "vocab.txt").exists():  # the toy loads itself
            model = hooks.load(model, device=_resolve_device(device), dtype=dtype)
        elif device not in (None, "cpu") or dtype is not None:
            raise ValueError("--device/--dtype apply to a --model you name (an HF id, local dir or fair-esm .pt); "
                             "the shipped toy model runs on cpu in float32. Drop them or pass --model.")
        summary = run_protein_pipeline(model or "toy", proteins, out, layer=layer, n_steer=n_steer, seed=seed,
                                       n_seeds=n_seeds, log=_console().print, progress=True)
    except (ValueError, FileNotFoundError, hooks.HookError) as e:
        _fail(str(e))
    _print_demo(summary, out)


@app.command("demo-lm")
def demo_lm(out: Path = opt_out("demo-lm"), seed: int = opt_seed()):
    """Offline shell-ablation job: train a tiny induction LM (~10 s CPU), write specs and clean/corrupt
    pairs.jsonl (for `interp run`/`interp sweep`), then ablate from the specs and report."""
    from .demo import run_demo

    run_demo(out, seed=seed, console=_console())


# Sub-packages add their commands through a `register(app)` function in their own cli module,
# imported here (each keeps its heavy imports inside the commands).
COMMAND_MODULES = (  # one per line: each package adds its own
    "interp.patching.cli",
    "interp.geometry.cli",
    "interp.id_profile",
    "saes.cli",
    "steering.narrow_gate.cli",
    "steering.protein.cli",
    "steering.protein.steer_cli",
    "interp.landscape.cli",
    "interp.topology.cli",
    "interp.dashboard_cli",
)


def _register_optional():
    import importlib

    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name and name.startswith(e.name):  # that sub-package is not there (yet)
                continue
            raise
        mod.register(app)


_register_optional()


# What a re-run of an interrupted command does (printed on Ctrl-C).
RESUME_HINTS = {
    "train": "training resumes from the newest checkpoint in {out} (written every --checkpoint-every steps); "
             "--no-resume starts over",
    "demo": "the SAE in {out}/sae resumes from its newest checkpoint (or is reused when finished); the later "
            "stages run again",
    "landscape_cmd": "representations and tables already cached in {out} are reused (--reuse)",
}


def _stamped(fn):
    """``fn`` that, once it returns, writes ``OUT/run.json`` (:func:`interp._meta.stamp_out_dir`:
    version, git commit, UTC time, the command line, the seeds and the files) for its ``--out``,
    and that on Ctrl-C says what a re-run of the same command resumes (exit status 130)."""
    import functools
    import inspect

    params = inspect.signature(fn).parameters

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        bound = inspect.signature(fn).bind_partial(*args, **kwargs).arguments
        out = bound.get("out", params["out"].default if "out" in params else None)
        if out is inspect.Parameter.empty:
            out = None
        import time

        started = time.time()
        try:
            result = fn(*args, **kwargs)
        except KeyboardInterrupt:
            import shlex
            import sys

            hint = RESUME_HINTS.get(fn.__name__, "nothing is resumed: the command starts again"
                                    + (f" (files already in {out} may be partial)" if out else ""))
            _console().print(f"\n[yellow]interrupted.[/yellow] To continue, run the same command again:\n  "
                             f"{shlex.join(['interp'] + sys.argv[1:])}\n{hint.format(out=out)}.")
            raise typer.Exit(130)
        if out is not None and not isinstance(out, tuple):
            from ._meta import stamp_out_dir

            seeds = [bound[k] for k in ("seed",) if bound.get(k) is not None]
            try:
                stamp_out_dir(out, seeds=seeds or None, since=started)
            except OSError:
                pass
        return result

    return wrapper


def _stamp_all(typer_app):
    for c in typer_app.registered_commands:
        c.callback = _stamped(c.callback)
    for g in typer_app.registered_groups:
        if g.typer_instance is not None:
            _stamp_all(g.typer_instance)


_stamp_all(app)


def main():
    app()


if __name__ == "__main__":
    main()
