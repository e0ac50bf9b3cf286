"""Small helpers shared by the command-line modules of ``steering`` and ``interp`` (importing
this module stays light: no torch).

    from steering.cli_common import console, fail, subcommand_group
    toy = subcommand_group(app, "toy", "Train the small toy models.")   # reused if already registered
    fail("what went wrong and how to fix it")                            # red message, exit code 2
"""
from __future__ import annotations


def console():
    from rich.console import Console

    return Console()


def fail(msg: str):
    """Print one clear error and exit with status 2."""
    import typer

    console().print(f"[bold red]error:[/] {msg}")
    raise typer.Exit(2)


def subcommand_group(app, name: str, help: str = ""):
    """The sub-typer registered on ``app`` as ``name``; created and added when missing, so two
    packages can add commands to one group (e.g. ``interp toy ...``)."""
    import typer

    for g in getattr(app, "registered_groups", []):
        sub = g.typer_instance
        gname = g.name or getattr(getattr(sub, "info", None), "name", None)
        if sub is not None and gname == name:
            return sub
    sub = typer.Typer(add_completion=False, no_args_is_help=True, help=help)
    app.add_typer(sub, name=name, help=help)
    return sub


# ---------------------------------------------------------------------------------------------
# One grammar for every command. The shared options below are declared once, here, with one set
# of defaults, and every command takes them from these factories (tests/test_cli_grammar.py walks
# every sub-command's --help and checks it). Old spellings stay as extra names (e.g. ``--n``).
#
#   --model       HF id, local dir, fair-esm .pt or tl:NAME (required where a model is loaded)
#   --data        input file (text/jsonl/csv/parquet/fasta)
#   --out         output directory; default runs/<command>
#   --device      where the model runs; default: auto (cuda when available, else cpu)
#   --dtype       model weights' dtype; default: the checkpoint's own
#   --seed        default 0
#   --limit       use only the first N examples; default: all
#   --batch-size  examples per forward pass; default 8
# ---------------------------------------------------------------------------------------------
SHARED_DEFAULTS = {"seed": 0, "limit": None, "batch_size": 8, "device": None, "dtype": None}
MODEL_HELP = "HF id, local dir, fair-esm .pt or tl:NAME"


def out_default(command: str):
    """The default ``--out`` of ``command`` (e.g. ``"gate flow"``): ``runs/gate-flow``."""
    from pathlib import Path

    return Path("runs") / command.replace(" ", "-")


def opt_model(default=..., help: str = MODEL_HELP):
    import typer

    return typer.Option(default, "--model", help=help)


def existing_data_file(value):
    """``--data`` callback: refuse, before any model is loaded, a path that does not exist (a value
    with a directory separator or a file suffix); a bare word passes (it may be a data set name or
    a one-example prompt)."""
    from pathlib import Path

    import typer

    if value is None or Path(value).exists() or not (Path(value).suffix or "/" in value or "\\" in value):
        return value
    raise typer.BadParameter(f"data file {value!r} does not exist (nothing was loaded); check the path.")


def opt_data(default=..., help: str = "input file: text/jsonl/csv/parquet/fasta", check: bool = False):
    """``--data``; ``check=True``: a local file, checked when the command line is parsed."""
    import typer

    return typer.Option(default, "--data", help=help, callback=existing_data_file if check else None)


def opt_out(command: str, help: str = "output directory"):
    import typer

    return typer.Option(out_default(command), "--out", help=help)


def opt_device(help: str = "device the model runs on: cpu, cuda, cuda:1, mps (default: cuda when available, else cpu)"):
    import typer

    return typer.Option(SHARED_DEFAULTS["device"], "--device", help=help)


def opt_dtype(help: str = "model dtype: float32, bfloat16, float16 (default: the checkpoint's own)"):
    import typer

    return typer.Option(SHARED_DEFAULTS["dtype"], "--dtype", help=help)


def opt_seed(help: str = "random seed (sampling, shuffles, initialisation)"):
    import typer

    return typer.Option(SHARED_DEFAULTS["seed"], "--seed", help=help)


def opt_limit(*old_names: str, help: str = "use only the first N examples (default: all)"):
    import typer

    return typer.Option(SHARED_DEFAULTS["limit"], "--limit", *old_names, help=help, min=1)


def opt_old_name(name: str, new: str):
    """A hidden option that keeps an old spelling (``--n``) working; merge it with :func:`take_old`."""
    import typer

    return typer.Option(None, name, hidden=True, help=f"old name of {new}")


def take_old(new, old, new_name: str = "--limit", old_name: str = "--n"):
    """The value given under the old spelling when there is one (refusing two different values)."""
    if old is None:
        return new
    if new is not None and new != old:
        fail(f"{old_name} is the old name of {new_name}; give one of them, not both ({old} vs {new}).")
    return old


def opt_batch_size(help: str = "examples per forward pass"):
    import typer

    return typer.Option(SHARED_DEFAULTS["batch_size"], "--batch-size", help=help, min=1)


def opt_text_key(help: str = "jsonl/csv/parquet column holding the text (default: picked from text, prompt, sequence, ...)"):
    import typer

    return typer.Option(None, "--text-key", help=help)


def resolve_device(device):
    """``--device`` as given, or cuda when available, else cpu (the shared default)."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
