"""``interp sae train`` / ``interp sae eval``. Wire in with ``saes.cli.register(app)``.

    interp sae train --model esm2_t6_8M_UR50D.pt --site resid_post.4 --data train.fasta \\
        --arch topk --k 32 --latents 4096 --tokens 2000000 --out runs/esm_sae
    interp sae eval --sae runs/esm_sae --model esm2_t6_8M_UR50D.pt --data heldout.fasta

``train`` shows progress bars, appends metrics to ``OUT/metrics.jsonl`` (wandb only with
``--wandb``), checkpoints every ``--checkpoint-every`` steps and resumes from the newest
checkpoint when re-run with the same arguments. ``eval`` prints the metrics table (and
writes it as JSON with ``--json``). Heavy imports happen inside the commands.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer


def _console():
    from rich.console import Console

    return Console()


def _fail(msg: str):
    _console().print(f"[bold red]error:[/] {msg}")
    raise typer.Exit(2)


def _positions(s: Optional[str]):
    if s is None:
        return None
    s = s.strip()
    if s.lstrip("-").isdigit():
        return int(s)
    if s.startswith("["):
        return json.loads(s)
    return s


def _device(device: Optional[str]) -> str:
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _table(title: str, rows: list):
    from rich.table import Table

    t = Table(title=title)
    t.add_column("metric")
    t.add_column("value", justify="right")
    for k, v in rows:
        t.add_row(k, f"{v:.4g}" if isinstance(v, float) else str(v))
    _console().print(t)


def _existing_data(value):
    """``--data`` callback: a missing file is refused when the command line is parsed, before the
    model loads (same rule as ``steering.cli_common.existing_data_file``; saes cannot import it)."""
    if value is None or Path(value).exists() or not (Path(value).suffix or "/" in value or "\\" in value):
        return value
    raise typer.BadParameter(f"data file {value!r} does not exist (nothing was loaded); check the path.")


def _opt_dtype(help: str = "model dtype: float32, bfloat16, float16 (default: the checkpoint's own)"):
    """``--dtype`` as in the shared grammar (``steering.cli_common.opt_dtype``; saes cannot import it)."""
    return typer.Option(None, "--dtype", help=help)


def register(app: typer.Typer) -> None:
    """Add the ``sae`` sub-command group (``train``, ``eval``) to ``app``."""
    sae_app = typer.Typer(no_args_is_help=True, help="Train and evaluate sparse autoencoders on any hooked model.")

    @sae_app.command("train")
    def train(
        model: str = typer.Option(..., help="HF id, local dir, fair-esm .pt or tl:NAME"),
        site: str = typer.Option(..., help="site to read, e.g. resid_post.3 (see `interp sites MODEL`)"),
        data: str = typer.Option(..., help="txt/jsonl/fasta/csv/parquet file", callback=_existing_data),
        out: Path = typer.Option(Path("runs/sae-train"), help="output directory (SAELens format, checkpoints, "
                                 "metrics.jsonl)"),
        arch: str = typer.Option("topk", help="topk | batchtopk | jumprelu | standard"),
        k: float = typer.Option(32, help="active latents (topk, batchtopk)"),
        latents: int = typer.Option(4096, help="dictionary size d_sae"),
        tokens: int = typer.Option(1_000_000, help="training activations"),
        positions: str = typer.Option("auto", help="auto (ESM residues / LLM tokens without BOS, padding) or a selector"),
        batch_size: int = typer.Option(4096, help="activations per SAE step"),
        buffer_size: Optional[int] = typer.Option(None, help="shuffle-buffer rows (default 16 batches)"),
        model_batch_size: int = typer.Option(8, help="examples per model forward"),
        lr: float = typer.Option(3e-4, help="Adam learning rate"),
        l1_coefficient: float = typer.Option(5.0, help="L1 sparsity coefficient (--arch standard)"),
        l0_coefficient: float = typer.Option(1.0, help="L0 sparsity coefficient (--arch jumprelu)"),
        device: Optional[str] = typer.Option(None, help="device the model runs on: cpu, cuda, cuda:1, mps (default: "
                                             "cuda when available, else cpu)"),
        dtype: Optional[str] = _opt_dtype("model dtype: float32, bfloat16, float16 (default: the checkpoint's own; "
                                          "the SAE itself trains in float32)"),
        seed: int = typer.Option(0, help="random seed (sampling, shuffles, initialisation)"),
        checkpoint_every: int = typer.Option(1000, help="steps between checkpoints (0: none)"),
        log_every: int = typer.Option(10, help="steps between metrics.jsonl lines"),
        cache_dir: Optional[Path] = typer.Option(None, help="cache activations here first (safetensors shards)"),
        resume: bool = typer.Option(True, help="resume from the newest checkpoint in OUT"),
        wandb: bool = typer.Option(False, help="also log to Weights & Biases"),
        text_key: Optional[str] = typer.Option(None, help="jsonl/csv/parquet column holding the text (default: "
                                               "picked from text, prompt, sequence, ...)"),
    ):
        """Train an SAE on one site of MODEL over DATA.

        Under ``torchrun --nproc_per_node N`` (detected from its environment) the ranks harvest their share of
        DATA into --cache-dir and train data-parallel at the same global batch (saes.ddp); backend nccl on
        GPUs (rank r on cuda:LOCAL_RANK), gloo on CPU.
        """
        import hooks

        from . import distributed as D
        from .train import train_sae

        with D.process_group():
            dev = str(D.device()) if D.world() > 1 and device is None else _device(device)
            try:
                hm = hooks.load(model, device=dev, dtype=dtype)
                res = train_sae(hm, data, site, positions=_positions(positions), out=out, text_key=text_key,
                                cache_dir=cache_dir, model_name=model, resume=resume, arch=arch, k=k, latents=latents,
                                tokens=tokens, batch_size=batch_size, buffer_size=buffer_size,
                                model_batch_size=model_batch_size, lr=lr, l1_coefficient=l1_coefficient,
                                l0_coefficient=l0_coefficient, device=dev, seed=seed, checkpoint_every=checkpoint_every,
                                log_every=log_every, wandb=wandb)
            except (ValueError, FileNotFoundError) as e:
                _fail(str(e))
            if not D.is_main():
                return
            s = res.summary
            final = s.get("final") or {}
            rows = [("steps", s.get("steps")), ("tokens", s.get("tokens")),
                    ("tokens/s (this session)", float(s.get("tokens_per_s", 0.0))),
                    ("time in SAE steps", f"{100 * s.get('sae_step_fraction', 0.0):.1f}%")]
            for key, label in (("metrics/l0", "L0 (last batch)"), ("metrics/explained_variance", "explained variance (last batch)"),
                               ("sparsity/dead_features", "dead latents")):
                if key in final:
                    rows.append((label, final[key]))
            if res.resumed_from:
                rows.append(("resumed from step", res.resumed_from))
            _table(f"SAE {arch} · {site} → {out}", rows)

    @sae_app.command("eval")
    def eval_(
        sae: Path = typer.Option(..., help="SAE directory (ours or SAELens)"),
        model: str = typer.Option(..., help="HF id, local dir, fair-esm .pt or tl:NAME"),
        data: str = typer.Option(..., help="txt/jsonl/fasta/csv/parquet file"),
        site: Optional[str] = typer.Option(None, help="default: the SAE's own site"),
        positions: Optional[str] = typer.Option(None, help="default: the SAE's training positions"),
        batch_size: int = typer.Option(8, min=1, help="examples per forward pass"),
        limit: Optional[int] = typer.Option(None, min=1, help="use only the first N examples (default: all)"),
        downstream: bool = typer.Option(True, help="also splice the SAE in and measure the LM loss"),
        device: Optional[str] = typer.Option(None, help="device the model runs on: cpu, cuda, cuda:1, mps (default: "
                                             "cuda when available, else cpu)"),
        dtype: Optional[str] = _opt_dtype("model dtype: float32, bfloat16, float16 (default: the checkpoint's own; "
                                          "the SAE keeps its saved dtype)"),
        seed: int = typer.Option(0, help="random seed (sampling, shuffles, initialisation)"),
        text_key: Optional[str] = typer.Option(None, help="jsonl/csv/parquet column holding the text (default: "
                                               "picked from text, prompt, sequence, ...)"),
        json_out: Optional[Path] = typer.Option(None, "--json", help="also write the metrics here"),
    ):
        """Print L0, FVU, MSE, dead latents and loss recovered of an SAE on MODEL over DATA."""
        import hooks
        from hooks.io import write_json_atomic

        from .evaluate import evaluate_sae
        from .files import load_sae

        dev = _device(device)
        try:
            s = load_sae(sae, device=dev)
            hm = hooks.load(model, device=dev, dtype=dtype)
            m = evaluate_sae(s, hm, data, site=site, positions=_positions(positions), batch_size=batch_size,
                             max_examples=limit, seed=seed, text_key=text_key, downstream=downstream, progress=True)
        except (ValueError, FileNotFoundError) as e:
            _fail(str(e))
        _table(f"{sae} on {model} · {m['site']}", list(m.items()))
        if json_out is not None:
            write_json_atomic(json_out, {"sae": str(sae), "model": model, "data": data, **m})

    app.add_typer(sae_app, name="sae")
