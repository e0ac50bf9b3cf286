"""``interp landscape``: the ICL-vs-SFT representation landscape as one command.

    interp landscape --model MODEL --data DATA --shots 0,1,2,5 [--sft lora.yaml] --out DIR

MODEL: HF id (offline from the cache), local directory. DATA: ``cais/mmlu`` (HF id, read
from the local cache offline), a directory with test/dev/validation .jsonl/.json/.parquet/.csv,
or one file with a ``split`` column. Writes DIR/landscape.csv (tidy), DIR/summary.json,
DIR/figures/*.png, DIR/reps/*.safetensors and, with --sft, DIR/sft/adapter.

Only typer is imported at registration; torch/transformers/peft load inside the command.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add the ``landscape`` command to the ``interp`` app."""
    from steering.cli_common import (opt_batch_size, opt_data, opt_device, opt_dtype, opt_model, opt_out, opt_seed,
                                     resolve_device)


    @app.command("landscape")
    def landscape_cmd(
        model: str = opt_model(help="HF id or local model directory (causal LM with its tokenizer)"),
        data: str = opt_data(help="cais/mmlu, a directory of test/dev/validation files, or one file"),
        out: Path = opt_out("landscape", help="output directory (tables, figures, cached representations)"),
        shots: str = typer.Option("0,1,2,5", help="comma-separated k of the k-shot (ICL) conditions; '' for none"),
        sft: Optional[Path] = typer.Option(None, help="LoRA SFT config (YAML); adds the 'sft' condition"),
        per_subject: int = typer.Option(200, help="max test questions per subject (0 = all)"),
        seed: int = opt_seed(help="seed of the per-subject sampling and of the shot shuffle"),
        batch_size: int = opt_batch_size(help="prompts per forward pass"),
        device: Optional[str] = opt_device(),
        dtype: Optional[str] = opt_dtype(),
        geometry_device: Optional[str] = typer.Option(None, help="device of the landscape (default: CUDA if available)"),
        k: int = typer.Option(16, help="kNN density order; Gride ID at n1=k, n2=2k"),
        z: float = typer.Option(1.6, help="ADP merging threshold Z"),
        maxk: int = typer.Option(1000, help="neighbours stored per layer"),
        class_fraction: float = typer.Option(0.3, help="label-overlap neighbourhood, fraction of class size"),
        reuse: bool = typer.Option(True, help="reuse cached representations/tables with matching fingerprints"),
        progress: bool = typer.Option(False, help="progress bars and per-layer lines"),
        site: str = typer.Option("input_norm", help="representation: input_norm (the paper's: block input norms + "
                                 "final norm + logits, labels 1..L+1) or a layer family, e.g. resid_post"),
        shuffle_shots: bool = typer.Option(True, help="shuffle each question's shots (seeded), as the paper"),
    ):
        """ICL vs SFT representation landscape (Doimo et al., NeurIPS 2024)."""
        from rich.console import Console

        import hooks

        from .analysis import LandscapeConfig
        from .errors import LandscapeInputError
        from .pipeline import run_landscape

        console = Console()
        device = resolve_device(device)
        try:
            cfg = LandscapeConfig(k=k, Z=z, maxk=maxk, class_fraction=class_fraction,
                                  device=geometry_device or device)
            res = run_landscape(model, data, shots=shots, sft=sft, out=out, per_subject=per_subject or None,
                                seed=seed, batch_size=batch_size, device=device, dtype=dtype, analysis=cfg,
                                reuse=reuse, progress=progress, site=site, shuffle_shots=shuffle_shots,
                                log=lambda m: console.print(f"[dim]{m}[/]"))
        except (LandscapeInputError, hooks.HookError, ValueError, FileNotFoundError) as e:
            console.print(f"[bold red]error:[/] {e}")
            raise typer.Exit(2)
        _print_summary(console, res)


def _print_summary(console, res) -> None:
    from rich.table import Table

    from .analysis import wide
    from .plots import condition_label

    w = wide(res.table)
    t = Table(title=f"landscape — {res.summary.get('n_questions')} questions, {len(res.summary.get('subjects', []))} "
                    f"subjects")
    for col in ("condition", "accuracy (micro)", "accuracy (macro)", "max ARI subjects (layer)", "max ARI letters (layer)", "ID range",
                "clusters range"):
        t.add_column(col, justify="right")
    for cond, acc in res.accuracy.items():
        d = w[w["condition"] == cond]
        i_s, i_l = d["ari_subjects"].idxmax(), d["ari_letters"].idxmax()
        t.add_row(condition_label(cond), f"{acc:.3f}", f"{res.summary.get('accuracy_macro', {}).get(cond, float('nan')):.3f}",
                  f"{d.loc[i_s, 'ari_subjects']:.2f} ({d.loc[i_s, 'layer']})",
                  f"{d.loc[i_l, 'ari_letters']:.2f} ({d.loc[i_l, 'layer']})",
                  f"{d['id'].min():.1f}–{d['id'].max():.1f}",
                  f"{int(d['n_clusters'].min())}–{int(d['n_clusters'].max())}")
    console.print(t)
    console.print(f"wrote {res.out / 'landscape.csv'}, {res.out / 'summary.json'} and {res.out / 'figures'}/")
