"""``interp id-profile``: representations through the hook registry → geometry profile → layers.

Extracts one site per layer (default ``resid_post.*`` at the last token) over a dataset,
profiles intrinsic dimension, clusters and overlaps layer by layer, and suggests the layers
at the relative ID minimum after the first peak (Valeriani et al. 2023, "The geometry of
hidden representations of large transformer models")::

    interp id-profile --model gpt2 --data prompts.txt --site 'resid_post.*' --positions last --out runs/idp

    from interp.id_profile import extract_layer_reps
    reps = extract_layer_reps(model, texts, "resid_post.*", positions="last")  # {"resid_post.0": (N, D), ...}
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional


def extract_layer_reps(model, data, site: str = "resid_post.*", positions="last", *, batch_size: int = 8,
                       text_key=None, progress: bool = True) -> dict:
    """``{site_name: (N, D) float32 CPU tensor}`` for every site matched by ``site``.

    Single-position selectors (``"last"``, an int, ``"eoi"``…) give one row per example;
    others give one row per selected token (all examples concatenated).
    """
    import torch

    res = model.cache_dataset(data, site, positions, batch_size=batch_size, progress=progress,
                              dtype=torch.float32, text_key=text_key)
    out = {}
    for name in [b.name for b in model.resolve_sites(site)]:
        t = res[name]
        out[name] = t.reshape(t.shape[0], -1)
    return out


def register(app) -> None:
    import typer

    @app.command("id-profile")
    def id_profile(
        model: str = typer.Option(..., help="HF id, local dir, fair-esm .pt or tl:NAME"),
        data: str = typer.Option(..., help="text/jsonl/csv/parquet/fasta file"),
        site: str = typer.Option("resid_post.*", help="site pattern, one per layer"),
        positions: str = typer.Option("last", help="position selector: last, all, residues, 0, -2, '1:'..."),
        labels: Optional[Path] = typer.Option(None, help="labels per example (.npy/.txt/.csv/.safetensors)"),
        out: Optional[Path] = typer.Option(None, help="directory for profile.csv, PNGs and reps.safetensors"),
        batch_size: int = 8,
        limit: Optional[int] = typer.Option(None, help="use only the first N examples"),
        text_key: Optional[str] = None,
        device: str = typer.Option("auto", help="geometry device: auto, cpu, cuda"),
    ):
        """Intrinsic-dimension profile over layers and the suggested layers (Valeriani et al. 2023)."""
        import hooks
        from hooks.data import load_examples
        from hooks.positions import normalize

        from .geometry.cli import load_labels, run_profile
        from .geometry.errors import GeometryInputError

        try:
            hm = hooks.load(model)
            examples = load_examples(data, text_key)[:limit]
            sel = normalize(int(positions) if positions.lstrip("-").isdigit() else positions)
            reps = extract_layer_reps(hm, examples, site, sel, batch_size=batch_size)
            lab = load_labels(labels) if labels is not None else None
            if out is not None:
                from safetensors.torch import save_file

                out.mkdir(parents=True, exist_ok=True)
                tmp = out / ".reps.safetensors.tmp"
                save_file({k: v.contiguous() for k, v in reps.items()}, str(tmp))
                tmp.replace(out / "reps.safetensors")
            run_profile(reps, lab, out, device=device)
        except (hooks.HookError, GeometryInputError, ValueError) as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2)
