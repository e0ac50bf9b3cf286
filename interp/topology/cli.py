"""``interp zigzag`` and ``interp prune`` (registered by :mod:`interp.cli`; heavy imports inside).

    interp zigzag --reps reps.safetensors --out DIR [--k 5 --max-dim 4 --subsets 16 --subset-size 500]
    interp zigzag --model M --data prompts.txt --out DIR [--site authors|'resid_post.*']
    interp prune --model M --data heldout.txt --blocks 20,21,22 [--random 5] [--out DIR]
    interp prune --model M --data heldout.txt --plan DIR/pruning.json      # every cut of the plan
    interp prune ... --metric mypkg.evals:accuracy     # any metric fn(model, examples) -> float too
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

__all__ = ["register", "parse_blocks"]


def parse_blocks(text: str) -> list:
    """``"3,4,7-9"`` -> ``[3, 4, 7, 8, 9]``."""
    out = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        try:
            if "-" in part:
                a, b = part.split("-", 1)
                out += list(range(int(a), int(b) + 1))
            else:
                out.append(int(part))
        except ValueError:
            raise ValueError(f"--blocks {text!r}: use block indices like '3,4' or ranges like '7-9'.") from None
    if not out:
        raise ValueError("--blocks is empty: give block indices like '3,4'.")
    return sorted(set(out))


def register(app) -> None:
    import typer

    from steering.cli_common import (opt_batch_size, opt_data, opt_device, opt_dtype, opt_limit, opt_out, opt_seed,
                                     opt_text_key, resolve_device)

    @app.command("zigzag")
    def zigzag(
        out: Path = opt_out("zigzag", help="output directory (bars, Betti curves, similarity, pruning.json, PNGs)"),
        reps: Optional[Path] = typer.Option(None, "--reps", help="safetensors: one (N, D) tensor per layer"),
        model: Optional[str] = typer.Option(None, "--model", help="HF id, local dir or tl:NAME (with --data)"),
        data: Optional[str] = opt_data(None, check=True, help="prompts: text/jsonl/csv/parquet file"),
        k: int = typer.Option(5, "--k", help="neighbours of the kNN graph (paper: 5; 4 in its figures)"),
        max_dim: int = typer.Option(4, "--max-dim", help="clique complex dimension m (H0..H(m-1) valid)"),
        subsets: int = typer.Option(1, "--subsets", help="disjoint random subsets (paper: 16)"),
        subset_size: Optional[int] = typer.Option(None, "--subset-size", help="points per subset (paper: 500)"),
        site: str = typer.Option("authors", "--site", help="'authors' (post-attention norm + final) or a pattern"),
        positions: str = typer.Option("last", "--positions", help="token selector (one row per prompt)"),
        seed: int = opt_seed(help="seed of the random subsets"),
        workers: Optional[int] = typer.Option(None, "--workers", help="processes for the subsets (default: cores)"),
        final_norm: Optional[bool] = typer.Option(None, "--final-norm/--no-final-norm",
                                                  help="the last layer is the final norm, not a block "
                                                       "(default: yes for --site authors and --reps)"),
        max_tokens: int = typer.Option(2048, "--max-tokens", help="keep the first N tokens of a prompt (authors: 2048)"),
        special_tokens: bool = typer.Option(False, "--special-tokens/--no-special-tokens",
                                            help="let the tokenizer add BOS etc. (authors: no)"),
        batch_size: int = opt_batch_size(),
        limit: Optional[int] = opt_limit(help="use only the first N prompts (default: all)"),
        text_key: Optional[str] = opt_text_key(),
        device: Optional[str] = opt_device(),
        dtype: Optional[str] = opt_dtype(),
    ):
        """Zigzag persistence across layers: bars, Betti, persistence similarity, pruning (Gardinazzi et al. 2025)."""
        from steering.cli_common import console, fail

        from geometry.errors import GeometryInputError

        from .pipeline import run_zigzag
        from .pruning import pruning_plan
        from .report import write_results

        if (reps is None) == (model is None):
            fail("give either --reps FILE or --model M --data D.")
        if model is not None and data is None:
            fail("--model needs --data (the prompts whose last tokens make the point clouds).")
        try:
            import hooks

            hidden, note, extra = None, "", {}
            if reps is not None:
                from interp.geometry.cli import load_reps

                clouds = load_reps(reps)
                fn = True if final_norm is None else final_norm
                hidden, note = list(clouds.values()), "the given clouds (no residual stream without --model)"
                extra["source"] = str(reps)
            else:
                from hooks.data import load_examples
                from hooks.positions import normalize

                from .extraction import AUTHORS_SITE, authors_sites, extract_clouds, residual_sites

                hm = hooks.load(model, device=resolve_device(device), dtype=dtype)
                examples = load_examples(data, text_key)[:limit]
                sel = normalize(int(positions) if positions.lstrip("-").isdigit() else positions)
                cloud_sites = authors_sites(hm) if site == AUTHORS_SITE else [b.name for b in hm.resolve_sites(site)]
                res_sites = residual_sites(hm)
                info = {}
                allv = extract_clouds(hm, examples, list(dict.fromkeys(cloud_sites + res_sites)), sel,
                                      batch_size=batch_size, max_tokens=max_tokens, add_special_tokens=special_tokens,
                                      info=info)
                if info.get("n_truncated"):
                    console().print(f"[yellow]{info['n_truncated']} prompt(s) truncated to {max_tokens} tokens[/yellow]")
                clouds = {s: allv[s] for s in cloud_sites}
                fn = (site == AUTHORS_SITE) if final_norm is None else final_norm
                hidden = [allv[s] for s in res_sites]
                note = f"residual stream resid_pre.0, resid_post.* at positions={positions}"
                if not fn and len(clouds) != hm.n_layers:
                    hidden, note = None, "baselines skipped: the clouds are not one per block"
                extra.update(model=model, data=str(data), site=site, positions=positions, n_prompts=len(examples),
                             max_tokens=max_tokens, special_tokens=special_tokens, n_truncated=info.get("n_truncated", 0))
            res = run_zigzag(clouds, k=k, max_dim=max_dim, n_subsets=subsets, subset_size=subset_size, seed=seed,
                             workers=workers)
            plan = None
            if max_dim >= 2:
                n_blocks = res.n_layers - (1 if fn else 0)
                if hidden is not None and len(hidden) != n_blocks + 1:
                    hidden, note = None, f"baselines skipped: {len(hidden)} states for {n_blocks} blocks"
                plan = pruning_plan(res.ps[:, 1], res.betti[:, 1], hidden, final_norm=fn, seed=seed, hidden_note=note)
                plan["layer_names"] = res.layer_names
            paths = write_results(res, out, plan, extra)
        except (hooks.HookError, GeometryInputError, ValueError) as e:
            fail(str(e))
        c = console()
        import numpy as np

        b = res.betti
        c.print(f"{res.n_layers} layers, {len(res.bars)} subset(s) of {res.params['subset_size']} points, "
                f"k={k}, m={max_dim}: median beta_1 per layer " + " ".join(str(int(v)) for v in np.median(b[:, 1], 0))
                if b.shape[1] > 1 else "")
        if plan is not None:
            for p, cut in plan["cuts"].items():
                c.print(f"p={p}: zigzag cuts blocks {cut['zigzag']}"
                        + (f"; angular {cut['angular_distance']}, block influence {cut['block_influence']}"
                           if "angular_distance" in cut else ""))
        c.print(f"wrote {len(paths)} files to {out}")

    @app.command("prune")
    def prune(
        model: str = typer.Option(..., "--model", help="HF id, local dir or tl:NAME"),
        data: str = opt_data(check=True, help="held-out text/jsonl/csv/parquet file"),
        blocks: Optional[str] = typer.Option(None, "--blocks", help="blocks to remove, e.g. '3,4' or '20-23'"),
        plan: Optional[Path] = typer.Option(None, "--plan", help="pruning.json of `interp zigzag`: every cut in it"),
        random: int = typer.Option(0, "--random", help="random control draws with as many blocks as --blocks"),
        metric: Optional[str] = typer.Option(None, "--metric", help="also score 'pkg.module:fn', fn(model, examples) -> "
                                                                     "float, on every variant (e.g. an lm-eval task)"),
        seed: int = opt_seed(help="seed of the --random control draws"),
        out: Path = opt_out("prune", help="directory for prune.json"),
        batch_size: int = opt_batch_size(),
        limit: Optional[int] = opt_limit(help="use only the first N held-out examples (default: all)"),
        text_key: Optional[str] = opt_text_key(),
        device: Optional[str] = opt_device(),
        dtype: Optional[str] = opt_dtype(),
    ):
        """Held-out loss of the model with blocks removed (each block returns its input)."""
        import json

        from steering.cli_common import console, fail

        from hooks.io import write_json_atomic

        from .pruning import pruned_loss, pruned_metric, random_cuts

        if (blocks is None) == (plan is None):
            fail("give either --blocks '3,4' or --plan pruning.json.")
        try:
            import hooks
            from hooks.data import load_examples

            hm = hooks.load(model, device=resolve_device(device), dtype=dtype)
            sets = {}
            if blocks is not None:
                chosen = parse_blocks(blocks)
                sets["blocks"] = chosen
                for j, r in enumerate(random_cuts(hm.n_layers, len(chosen), random, seed)):
                    sets[f"random.{j}"] = r
            else:
                if not plan.exists():
                    raise ValueError(f"--plan {plan} does not exist; run `interp zigzag ... --out DIR` first.")
                pl = json.loads(plan.read_text())
                if pl.get("n_blocks") != hm.n_layers:
                    raise ValueError(f"--plan was made for {pl.get('n_blocks')} blocks; {model} has {hm.n_layers}.")
                for p, cuts in pl["cuts"].items():
                    for method, cut in cuts.items():
                        if method == "random":
                            for j, r in enumerate(cut):
                                sets[f"p={p}:random.{j}"] = r
                        elif cut:
                            sets[f"p={p}:{method}"] = cut
            examples = load_examples(data, text_key)[:limit]
            res = pruned_loss(hm, examples, sets, batch_size=batch_size, text_key=text_key, progress=True)
            if metric is not None:
                from hooks.interventions import import_callable

                fn = import_callable(metric)
                scores = pruned_metric(hm, lambda m: fn(m, examples), sets)
                for name, v in scores.items():
                    res[name]["metric"] = v
                res["metric_name"] = metric
        except (hooks.HookError, ValueError, FileNotFoundError, ImportError, AttributeError) as e:
            fail(str(e))
        from rich.table import Table

        t = Table(title=f"{model}: held-out loss with blocks removed ({res['tokens']} tokens)")
        cols = ["variant", "blocks", "loss", "Δ loss"] + (["metric"] if metric else [])
        for col in cols:
            t.add_column(col, justify="right")
        mcol = (lambda v: [f"{v['metric']:.4f}"] if metric else [])
        t.add_row("full", "-", f"{res['full']['loss']:.4f}", "", *mcol(res["full"]))
        for name, v in res.items():
            if name in ("full", "tokens", "metric_name"):
                continue
            t.add_row(name, ",".join(map(str, v["blocks"])), f"{v['loss']:.4f}", f"{v['delta_loss']:+.4f}", *mcol(v))
        console().print(t)
        if out is not None:
            write_json_atomic(Path(out) / "prune.json", {"model": model, "data": data, **res})
            console().print(f"wrote {Path(out) / 'prune.json'}")
