"""``interp sweep``: activation (or attribution) patching from the shell.

    interp sweep --model M --data pairs.jsonl --sites attn_out --by layer,head --metric logit_diff --out DIR

Rows of ``pairs.jsonl``/``.csv``: ``clean``, ``corrupt`` and, for answer metrics,
``answer``, ``distractor``. Writes ``DIR/sweep.csv`` (columns site, layer, head, position,
effect; the same table Python gets), ``DIR/sweep.json`` (baselines, counts) and heatmaps.
``--method``: ``activation`` (real patching, default), ``attribution``/``atp`` (Nanda 2023),
``qk``/``graddrop``/``atp*`` (AtP with AtP*'s QK fix, its GradDrop (unsigned scores), or both;
Kramár et al. 2024) or ``path``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from steering.cli_common import opt_data, opt_device, opt_dtype, opt_limit, opt_model, opt_out, opt_seed


def register(app):
    @app.command()
    def sweep(
        model: str = opt_model(),
        data: str = opt_data(check=True, help="jsonl/csv/parquet rows with clean, corrupt[, answer, distractor]"),
        out: Path = opt_out("sweep", help="directory for sweep.csv, sweep.json and heatmaps"),
        sites: str = typer.Option("attn_out", help="site family (attn_out, head_out, resid_pre, mlp_out, ...) or names"),
        by: str = typer.Option("layer,position", help="layer[,head][,position]"),
        metric: str = typer.Option("logit_diff", help="logit_diff, answer_logprob, kl, loss, top1_agreement or module:function"),
        direction: str = typer.Option("denoising", help="denoising (clean into corrupt) or noising (corrupt into clean)"),
        method: str = typer.Option("activation", help="activation (real patching), attribution (gradient × difference, "
                                                   "Nanda 2023; alias atp), qk (attribution with AtP*'s QK fix on "
                                                   "attn_scores sites), graddrop (with AtP*'s GradDrop; unsigned), "
                                                   "atp* (both; Kramár et al. 2024) or path (needs --receivers; "
                                                   "sweeps sender heads)"),
        receivers: Optional[str] = typer.Option(None, help="path patching receivers, e.g. 'head_out.1:0,head_out.1:2' "
                                                "or 'resid_pre.1'"),
        normalize: bool = typer.Option(False, help="rescale so that corrupt = 0 and clean = 1"),
        memory_budget_mb: float = typer.Option(1024, help="activation memory for the stacked variants of one forward"),
        fast: bool = typer.Option(True, "--fast/--no-fast", help="compute only what a patch can change (changed rows, "
                                  "the columns from the first changed one on the base run's KV cache, replayed "
                                  "blocks; exact, checked on the base run); --no-fast runs every variant whole"),
        limit: Optional[int] = opt_limit(help="use only the first N pairs (default: all)"),
        device: Optional[str] = opt_device(),
        dtype: Optional[str] = opt_dtype(),
        seed: int = opt_seed(help="random seed (recorded; the sweep itself is deterministic)"),
    ):
        """Patching sweep over layers × heads/positions; writes sweep.csv and labelled heatmaps."""
        import hooks
        from steering.cli_common import console, fail, resolve_device

        from ..io import write_json_atomic, write_text_atomic
        from ..rows import read_rows, split_pairs
        from . import activation_patching, attribution_patching, path_patching, str_tokens
        from .plots import heatmaps

        try:
            from .attribution import METHODS

            if method not in ("activation", "path", *METHODS):
                raise ValueError(f"method must be 'activation', 'attribution' (atp), 'qk', 'graddrop', 'atp*' or "
                                 f"'path', got {method!r}.")
            if (method == "path") != (receivers is not None):
                raise ValueError("--receivers goes with --method path (and path patching needs --receivers).")
            clean, corrupt, ans, dis = split_pairs(read_rows(data)[:limit])
            hm = hooks.load(model, device=resolve_device(device), dtype=dtype)
            common = dict(metric=metric, answers=ans, distractors=dis, direction=direction, normalize=normalize)
            if method == "path":
                df = path_patching(hm, clean, corrupt, receivers=receivers.split(","), fast=fast, **common)
            else:
                fn = activation_patching if method == "activation" else attribution_patching
                kw = {"memory_budget": memory_budget_mb * 2**20, "fast": fast} if method == "activation" else \
                    {"method": method}
                df = fn(hm, clean, corrupt, sites=sites.split(",") if "," in sites else sites, by=by, **common, **kw)
        except (hooks.HookError, ValueError, FileNotFoundError) as e:
            fail(str(e))
        write_text_atomic(out / "sweep.csv", df.to_csv(index=False))
        from .._meta import run_meta

        write_json_atomic(out / "sweep.json", {"model": model, "data": data, "sites": sites, "method": method,
                                               **df.attrs, "meta": run_meta(seeds=[seed])})
        ids = hm.prepare([clean[0]])["input_ids"][0]
        pngs = heatmaps(df, out, tokens=str_tokens(hm, ids), model=model)
        top = df.reindex(df["effect"].abs().sort_values(ascending=False).index).head(5)
        console().print(top.to_string(index=False))
        console().print(f"{len(df)} cells in {df.attrs.get('forwards', '?')} forward(s); wrote {out / 'sweep.csv'} and "
                        f"{len(pngs)} heatmap(s)")
