"""``interp proteins read|fetch`` and ``interp toy train-protein-model``; wired in by ``register(app)``.

    interp proteins read /work/shared/data/tmbed/alpha.fasta --out alpha.parquet
    interp proteins fetch --query "reviewed:true AND ft_zn_fing:C2H2" --out znf.parquet --limit 1000
    interp toy train-protein-model --device cuda --minutes 5 --batch-size 256 --n-train 50000 \\
        --warmup 500 --results-md bench/RESULTS_protein_model.md

Heavy imports (datasets, transformers, torch) happen inside the commands.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from steering.cli_common import console as _console, fail as _fail, subcommand_group as _group
from steering.cli_common import opt_device, opt_limit, opt_old_name, opt_seed, resolve_device, take_old

# The shipped weights: ~5 min of training on one GPU (the step count is calibrated and logged);
# with world generation, evaluation and probes the command takes about 7-8 minutes.
GPU_COMMAND = ("interp toy train-protein-model --device cuda --minutes 5 --batch-size 256 --n-train 50000 "
               "--warmup 500 --out steering/protein/toy_model --results-md bench/RESULTS_protein_model.md")


def _summary(ds, title: str):
    import numpy as np
    from rich.table import Table

    from .schema import track_names

    t = Table(title=title)
    for c in ("track", "proteins", "residues", "features"):
        t.add_column(c, justify="right" if c != "track" else "left")
    feats = [f["type"] for fs in ds["features"] for f in fs]
    for tr in track_names(ds):
        ms = ds[f"mask_{tr}"]
        n_res = int(sum(np.count_nonzero(m) for m in ms))
        if n_res:
            t.add_row(tr, str(sum(any(m) for m in ms)), str(n_res), str(feats.count(tr)))
    _console().print(t)
    _console().print(f"{len(ds)} proteins, {sum(ds['length'])} residues")


def read(path: Path = typer.Argument(..., help="FASTA, TMbed, UniProt .txt/.xml/.json/.tsv, or parquet"),
         out: Path = typer.Option(..., help="output parquet file"),
         format: str = typer.Option("auto", help="auto|fasta|tmbed|uniprot-swiss|uniprot-xml|uniprot-json|uniprot-tsv"),
         track: Optional[list[str]] = typer.Option(None, help="extra feature types to make masks for, e.g. TOPO_DOM")):
    """Read a protein file into the parquet dataset (sequence, per-residue masks, feature spans)."""
    from .data import read_proteins
    from .errors import ProteinDataError
    from .schema import TRACKS, save_dataset

    try:
        ds = read_proteins(path, format, tuple(TRACKS) + tuple(track or ()))
    except (ProteinDataError, ImportError) as e:
        _fail(str(e))
    save_dataset(ds, out)
    _summary(ds, f"{path.name} -> {out}")


def fetch(query: str = typer.Option(..., help="UniProtKB query, e.g. 'reviewed:true AND ft_transmem:*'"),
          out: Path = typer.Option(..., help="output parquet file"),
          max_results: Optional[int] = opt_limit(help="stop after N entries (default: all)"),
          max_old: Optional[int] = opt_old_name("--max", "--limit"),
          size: int = typer.Option(500, help="entries per page"),
          fields: Optional[str] = typer.Option(None, help="REST 'fields' (default: full entries)")):
    """Download entries from the UniProt REST API (paginated) into the parquet dataset."""
    from .errors import ProteinDataError
    from .fetch import fetch_uniprot

    try:
        limit = take_old(max_results, max_old, "--limit", "--max")
        ds = fetch_uniprot(query, out, size=size, max_results=limit, fields=fields, log=_console().print)
    except ProteinDataError as e:
        _fail(str(e))
    _summary(ds, f"UniProt {query!r} -> {out}")


def train_protein_model(
    out: Path = typer.Option(None, help="output dir (default: the shipped steering/protein/toy_model)"),
    device: Optional[str] = opt_device(help="cpu, cuda, cuda:N (default: cuda when available, else cpu)"),
    steps: Optional[int] = typer.Option(None, help="optimisation steps (reproducible); default 4000 unless --minutes"),
    minutes: Optional[float] = typer.Option(None, help="wall-clock budget (alone: derives --steps from a timing)"),
    batch_size: int = typer.Option(128, help="training sequences per step"),
    lr: float = typer.Option(2e-3, help="peak AdamW learning rate"),
    seed: int = opt_seed(),
    layers: int = typer.Option(4, help="transformer blocks"),
    d_model: int = typer.Option(128, help="residual width"),
    heads: int = typer.Option(4, help="attention heads"),
    ffn: int = typer.Option(512, help="MLP hidden width"),
    mask_rate: float = typer.Option(0.2, help="fraction of residues masked (MLM objective)"),
    n_train: int = typer.Option(30000, help="synthetic training proteins"),
    n_eval: int = typer.Option(1000, help="held-out proteins for the eval loss"),
    eval_every: int = typer.Option(500, help="steps between evaluations"),
    warmup: int = typer.Option(200, help="learning-rate warm-up steps"),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads (1 is fastest on a busy machine)"),
    results_md: Optional[Path] = typer.Option(None, help="also write a markdown summary here"),
    probe: bool = typer.Option(True, help="fit linear probes per layer after training"),
):
    """Train the toy ESM-2-architecture masked LM on the synthetic protein world (seeded)."""
    from .toy_model import DEFAULT_DIR, TrainConfig
    from .train_loop import train_toy_model

    device = resolve_device(device)
    if steps is None and minutes is None:
        steps = 4000
    tc = TrainConfig(seed=seed, layers=layers, d_model=d_model, heads=heads, ffn=ffn, steps=steps, minutes=minutes,
                     batch_size=batch_size, lr=lr, warmup=warmup, mask_rate=mask_rate, n_train=n_train,
                     n_eval=n_eval, eval_every=eval_every, device=device, threads=threads)
    out = out or DEFAULT_DIR
    try:
        result = train_toy_model(out, tc, log=_console().print, probe=probe, progress=True)
    except ValueError as e:
        _fail(str(e))
    if results_md is not None:
        from .report import write_results_md

        write_results_md(results_md, result, out)
        _console().print(f"wrote {results_md}")
    if not device.startswith("cuda"):
        _console().print(f"For the shipped weights, on a GPU run:\n  {GPU_COMMAND}")


def register(app: typer.Typer) -> None:
    proteins = _group(app, "proteins", "Protein data: read files, fetch from UniProt.")
    proteins.command("read")(read)
    proteins.command("fetch")(fetch)
    toy = _group(app, "toy", "Train the small toy models shipped with the package.")
    toy.command("train-protein-model")(train_protein_model)
