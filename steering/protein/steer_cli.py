"""``interp steer protein``: SAE-steered protein generation vs unsteered, scored; wired in by ``register(app)``.

    interp steer protein --model toy --sae runs/protein/sae --latent 83 --value 27 \\
        --n 100 --length 60 --seed 0 --out runs/steer_zf
    interp steer protein --model facebook/esm2_t6_8M_UR50D --sae runs/esm_sae --latent 1234 --value 8 \\
        --window 20:21 --order confidence --temperature 0.5 --out runs/steer_esm

Writes ``steered.fasta``, ``unsteered.fasta`` and ``summary.json`` (PROSITE motif rates with
Fisher's exact test, TM-like segment rates, composition, pseudo-perplexity) into ``--out``.
``--model toy`` is the shipped toy ESM-2. An SAE trained on another model or site is refused
with one message (``--allow-other-model`` if it is the same weights under another name).
Heavy imports happen inside the command.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from hooks.formatting import format_q
from steering.cli_common import console as _console, fail as _fail, subcommand_group as _group
from steering.cli_common import opt_device, opt_dtype, opt_model, opt_out, opt_seed, resolve_device


def parse_window(text: Optional[str]):
    """``"20:40"`` → (20, 40); ``None``/``"all"`` → None (every residue)."""
    if text is None or text == "all":
        return None
    try:
        a, b = (int(x) for x in text.split(":"))
    except ValueError:
        raise typer.BadParameter(f"--window must look like START:END (0-based residues, END excluded), got {text!r}.")
    return (a, b)


def protein(
    model: str = opt_model(help="'toy' (shipped toy ESM-2), an HF id or a local model dir"),
    sae: Path = typer.Option(..., help="SAE directory (saes / SAELens format)"),
    latent: list[int] = typer.Option(..., help="latent to steer (repeat for several)"),
    value: list[float] = typer.Option(..., help="clamp value (or scale factor with --mode scale); one per --latent"),
    n: int = typer.Option(100, help="proteins per arm (steered and unsteered)"),
    length: int = typer.Option(60, help="residues per protein (from scratch)"),
    template: Optional[str] = typer.Option(None, help="template with '_' for residues to generate, e.g. MKT____AAA"),
    seed: int = opt_seed(help="seed of the generation (both arms start from it)"),
    out: Path = opt_out("steer protein", help="output directory (proteins, scores, summary.json)"),
    mode: str = typer.Option("clamp", help="clamp | scale"),
    window: Optional[str] = typer.Option(None, help="steer residues START:END only (default: every residue)"),
    order: str = typer.Option("random", help="unmasking order: random | confidence | left-to-right"),
    temperature: float = typer.Option(1.0, help="sampling temperature"),
    top_k: Optional[int] = typer.Option(None, help="sample among the k most probable residues"),
    per_step: int = typer.Option(1, help="positions unmasked per step"),
    batch_size: int = typer.Option(100, help="proteins generated per forward pass (100: a whole arm at once)"),
    pattern: Optional[str] = typer.Option(None, help="PROSITE pattern to score (default PS00028, C2H2 zinc finger)"),
    pppl_n: Optional[int] = typer.Option(None, help="proteins per arm scored by pseudo-perplexity (all; 0: none)"),
    device: Optional[str] = opt_device(),
    dtype: Optional[str] = opt_dtype(help="model dtype for an HF model (default: the checkpoint's own)"),
    allow_other_model: bool = typer.Option(False, help="skip the check that the SAE was trained on this model"),
):
    """Generate N steered and N unsteered proteins from the same seed; score and compare them."""
    device = resolve_device(device)
    import saes

    from .generate import GenerationConfig
    from .scoring import PS00028
    from .steer import steer_proteins

    if len(latent) != len(value):
        _fail(f"{len(latent)} --latent but {len(value)} --value; give one value per latent.")
    win = parse_window(window)
    try:
        if model == "toy":
            from .toy_model import load_toy_model

            hm = load_toy_model(device=device)
        elif (Path(model) / "vocab.txt").exists():
            from .toy_model import load_toy_model

            hm = load_toy_model(model, device=device)
        else:
            import hooks

            hm = hooks.load(model, device=resolve_device(device), dtype=dtype)
        s = saes.load_sae(sae, device=str(hm.device))
        cfg = GenerationConfig(temperature=temperature, top_k=top_k, per_step=per_step, order=order,
                               batch_size=batch_size, seed=seed)
        res = steer_proteins(hm, s, dict(zip(latent, value)), mode=mode, n=n, length=length, template=template,
                             window=win, seed=seed, config=cfg, pattern=pattern or PS00028, pppl_n=pppl_n, out=out,
                             allow_other_model=allow_other_model, log=_console().print)
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))
    _print(res, out)


def _print(res: dict, out: Path):
    from rich.table import Table

    t = Table(title=f"steering {res['latents']} ({res['mode']}, window {res['window'] or 'all'}) at {res['site']}")
    for c in ("", "unsteered", "steered"):
        t.add_column(c, justify="right" if c else "left")
    st, un = res["steered"], res["unsteered"]
    t.add_row("motif rate", f"{un['motif_rate']:.3f}", f"{st['motif_rate']:.3f}")
    t.add_row("TM-like rate", f"{un['tm_rate']:.3f}", f"{st['tm_rate']:.3f}")
    if "pppl_mean" in st:
        t.add_row("pseudo-perplexity", f"{un['pppl_mean']:.2f}", f"{st['pppl_mean']:.2f}")
    _console().print(t)
    _console().print(f"Fisher's exact (one-sided, steered > unsteered): p = {format_q(res['test']['p_value'])}; "
                     f"n = {res['n']} per arm. Wrote {out}/steered.fasta, unsteered.fasta, summary.json")


def register(app: typer.Typer) -> None:
    steer = _group(app, "steer", "Steer generation with SAE latents.")
    steer.command("protein")(protein)
