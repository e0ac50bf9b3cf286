"""``interp dashboard sae`` / ``interp dashboard attention``: static HTML sites (no server, no network).

    interp dashboard sae --sae runs/esm_sae --model esm2_t6_8M_UR50D.pt --data proteins.parquet --out runs/dash
    interp dashboard attention --model gpt2 --prompt "The cat sat on the mat" --layers 0,1 --out runs/attn
    interp dashboard folder runs/flow        # any results folder: CSV tables, JSON, figures

``--data`` may be any file ``interp sae eval`` reads; a protein dataset (parquet with
``mask_<TRACK>`` columns, see :mod:`steering.protein.schema`) also gives the annotation
tracks (``--tracks`` picks them; default every track with a positive residue). Open
``OUT/index.html`` in a browser.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from steering.cli_common import console as _console, fail as _fail, subcommand_group


def _ints(s: Optional[str]) -> Optional[list]:
    if s is None or s.strip().lower() in ("", "all"):
        return None
    out = []
    for part in s.split(","):
        part = part.strip()
        if "-" in part:
            a, b = part.split("-", 1)
            out.extend(range(int(a), int(b) + 1))
        elif part:
            out.append(int(part))
    return out


def protein_data(path: str, tracks: Optional[str]):
    """(sequences, annotations or None) of a protein parquet dataset; (path, None) for anything else."""
    if not str(path).endswith(".parquet"):
        return path, None
    import pyarrow.parquet as pq

    cols = pq.read_schema(path).names
    if "sequence" not in cols or not any(c.startswith("mask_") for c in cols):
        return path, None
    from steering.protein.schema import load_dataset_file, masks_of, track_names

    ds = load_dataset_file(path)
    names = track_names(ds) if tracks is None else [t.strip() for t in tracks.split(",") if t.strip()]
    ann = {t: masks_of(ds, t) for t in names}
    if tracks is None:
        ann = {t: m for t, m in ann.items() if any(x.any() for x in m)}
    return list(ds["sequence"]), ann or None


def register(app: typer.Typer) -> None:
    from steering.cli_common import (opt_batch_size, opt_data, opt_device, opt_dtype, opt_model, opt_out, opt_seed,
                                     opt_text_key)

    dash = subcommand_group(app, "dashboard", "Static HTML dashboards: SAE latents, attention patterns.")

    @dash.command("sae")
    def sae_cmd(
        sae: Path = typer.Option(..., help="SAE directory (ours or SAELens)"),
        model: str = opt_model(),
        data: str = opt_data(check=True, help="txt/jsonl/fasta/csv/parquet; a protein parquet adds annotation tracks"),
        out: Path = opt_out("dashboard sae", help="output directory (index.html, latents/, data/, assets/)"),
        site: Optional[str] = typer.Option(None, help="default: the SAE's own site"),
        positions: Optional[str] = typer.Option(None, help="default: the SAE's training positions"),
        tracks: Optional[str] = typer.Option(None, help="comma-separated annotation tracks (protein parquet)"),
        latents: Optional[str] = typer.Option(None, help="latents that get a page, e.g. 0-99,512 (default: all live)"),
        top_k: int = typer.Option(20, help="top contexts per latent"),
        n_bands: int = typer.Option(5, help="equal activation intervals (quantile bands)"),
        band_size: int = typer.Option(4, help="random contexts shown per interval"),
        max_tokens: Optional[int] = typer.Option(None, help="stop after this many tokens (recorded on the index)"),
        batch_size: int = opt_batch_size(),
        device: Optional[str] = opt_device(help="device of the model and the SAE (default: cuda when available, "
                                           "else cpu)"),
        dtype: Optional[str] = opt_dtype(),
        text_key: Optional[str] = opt_text_key(),
        seed: int = opt_seed(help="seed of the random contexts shown per activation interval"),
    ):
        """Latent dashboard of an SAE: sortable index + one page per latent."""
        import hooks
        import saes
        from saes.cli import _device, _positions

        dev = _device(device)
        try:
            data_in, ann = protein_data(data, tracks)
            s = saes.load_sae(sae, device=dev)
            hm = hooks.load(model, device=dev, dtype=dtype)
            d = saes.dashboard(s, hm, data_in, out, site=site, positions=_positions(positions), annotations=ann,
                               latents=_ints(latents), top_k=top_k, n_bands=n_bands, band_size=band_size,
                               model_batch_size=batch_size, text_key=text_key, max_tokens=max_tokens, seed=seed,
                               info={"model": model, "sae": str(sae), "data": data})
        except (ValueError, FileNotFoundError) as e:
            _fail(str(e))
        _console().print(f"wrote {d.index_path} ({d.site.acts.n_latents} latents, {len(d.site.pages)} pages, "
                         f"{d.site.acts.n_rows:,} tokens)")

    @dash.command("folder")
    def folder_cmd(
        folder: Path = typer.Argument(..., help="a results folder (interp run / gate flow / demo / sweep outputs)"),
        out: Optional[Path] = typer.Option(None, help="page to write (default FOLDER/index.html)"),
        title: Optional[str] = typer.Option(None, help="page title (default: the folder name)"),
        latent_pages: Optional[Path] = typer.Option(None, help="an `interp dashboard sae` site: link `latent` columns"),
    ):
        """One page for a folder of results: sortable CSV tables, JSON, figures, each linking its file."""
        from .results_page import write_results_page

        try:
            path = write_results_page(folder, out=out, title=title, latent_pages=latent_pages)
        except (ValueError, FileNotFoundError) as e:
            _fail(str(e))
        _console().print(f"wrote {path}")

    @dash.command("attention")
    def attention_cmd(
        model: str = opt_model(),
        out: Path = opt_out("dashboard attention", help="output directory (index.html, data/attention.json)"),
        prompt: Optional[List[str]] = typer.Option(None, help="a prompt (repeat for several)"),
        prompts: Optional[Path] = typer.Option(None, help="file with one prompt per line"),
        layers: str = typer.Option("0", help="layers, e.g. 0,2-3"),
        heads: str = typer.Option("all", help="heads, e.g. 0,3 (default all)"),
        max_tokens: int = typer.Option(128, help="refuse longer prompts"),
        device: Optional[str] = opt_device(),
        dtype: Optional[str] = opt_dtype(),
    ):
        """Attention patterns (heat maps and token views) of chosen layers/heads for a few prompts."""
        import hooks
        from saes.dashboard import attention_view
        from saes.cli import _device

        texts = list(prompt or [])
        try:
            if prompts is not None:
                texts += [ln.rstrip("\n") for ln in prompts.read_text().splitlines() if ln.strip()]
            if not texts:
                raise ValueError("No prompts: pass --prompt TEXT (repeatable) or --prompts FILE.")
            hm = hooks.load(model, device=_device(device), dtype=dtype)
            v = attention_view(hm, texts, _ints(layers) or list(range(hm.n_layers)), _ints(heads), out=out,
                               max_tokens=max_tokens, info={"model": model})
        except (ValueError, FileNotFoundError) as e:
            _fail(str(e))
        _console().print(f"wrote {v.path / 'index.html'}")
