#!/usr/bin/env python
"""Benchmark a full head × position activation-patching sweep on a 4-layer model: ours
(``fast=True``: only the rows a patch changes, only the columns from the first one it changes,
on the base run's KV cache; ``prefix=False``: blocks below the patched layer replayed from the
base run instead; ``fast=False``: every variant's full batch stacked through the whole model)
vs TransformerLens's ``patching`` module (one forward per patch) vs nnsight (one trace per
patch), on the same random-weight TransformerLens model (no downloads).

    PYTHONPATH=. OMP_NUM_THREADS=1 python bench/bench_patching.py --out /tmp/r.md
    PYTHONPATH=. OMP_NUM_THREADS=1 python bench/bench_patching.py --d-model 32 --vocab 100 --append --out /tmp/r.md

The tables go to stdout (and ``--out``); bench/RESULTS_patching.md holds them with the
hand-written method and verdict around them.

Sweep: denoising (clean ``hook_z`` into the corrupt run), every (layer, position, head),
metric = mean logit difference at the last token. Every variant computes the same table;
the script checks they agree before timing. Method: one warm-up call each, then ``reps``
repetitions, each running every variant once in a freshly shuffled order; we report the
median time, the median per-repetition ratio to ours, and the per-patch cost
(time / number of patched cells). All under ``torch.no_grad()``, 1 torch thread by default.
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings("ignore")


def build(device, d_model=128, vocab=1000):
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=4, d_model=d_model, n_ctx=64, d_head=d_model // 4, n_heads=4, d_mlp=4 * d_model,
                                  d_vocab=vocab, act_fn="gelu", normalization_type="LN", seed=0, device=str(device))
    return HookedTransformer(cfg).eval()


def make_data(B, P, vocab, seed=0):
    g = torch.Generator().manual_seed(seed)
    clean = torch.randint(0, vocab, (B, P), generator=g)
    corrupt = clean.clone()
    corrupt[:, P // 3] = torch.randint(0, vocab, (B,), generator=g)  # one swapped token per row
    ans = torch.randint(0, vocab, (B,), generator=g)
    dis = torch.randint(0, vocab, (B,), generator=g)
    return clean, corrupt, ans, dis


def _nn_z(nm, x, L):
    import nnsight

    with nm.trace(x):
        z = nnsight.save(nm.blocks[L].attn.hook_z.output)
    return z


def _nn_patch(nm, x, L, p, h, value):
    import nnsight

    with nm.trace(x):
        if L is not None:
            nm.blocks[L].attn.hook_z.output[:, p, h] = value
        out = nnsight.save(nm.output)
    return out


def variants(tl, clean, corrupt, ans, dis):
    import nnsight
    from transformer_lens import patching

    import hooks
    from interp.patching import activation_patching

    B = clean.shape[0]
    ar = torch.arange(B)
    hm = hooks.wrap(tl)
    nm = nnsight.NNsight(tl)
    n_layers, n_heads = tl.cfg.n_layers, tl.cfg.n_heads

    def metric(logits):
        last = logits[:, -1]
        return (last[ar, ans] - last[ar, dis]).mean()

    def ours(**kw):
        df = activation_patching(hm, clean.tolist(), corrupt.tolist(), sites="head_out", by="layer,head,position",
                                 answers=ans.tolist(), distractors=dis.tolist(), **kw)
        return torch.tensor(df.sort_values(["layer", "position", "head"])["effect"].to_numpy(), dtype=torch.float32)

    def tl_patching():
        _, cache = tl.run_with_cache(clean, names_filter=lambda n: n.endswith("hook_z"))
        base = metric(tl(corrupt))
        out = patching.get_act_patch_attn_head_out_by_pos(tl, corrupt, cache, metric)  # (layer, pos, head)
        return (out - base).flatten().float()

    def nn_loop():
        zs = [_nn_z(nm, clean, L) for L in range(n_layers)]
        base = metric(_nn_patch(nm, corrupt, None, None, None, None))
        vals = []
        for L in range(n_layers):
            for p in range(clean.shape[1]):
                for h in range(n_heads):
                    vals.append(metric(_nn_patch(nm, corrupt, L, p, h, zs[L][:, p, h])) - base)
        return torch.stack(vals).float()

    return {
        "ours: fast (changed rows only; suffix from the first changed column on, on the base run's KV cache; "
        "1 GiB budget)": lambda: ours(),
        "ours: fast, prefix=False (round 1: changed rows only, blocks below the patch replayed)":
            lambda: ours(prefix=False),
        "ours: before (fast=False: every variant's full batch through the whole model, stacked)":
            lambda: ours(fast=False),
        "TransformerLens patching.get_act_patch_attn_head_out_by_pos": tl_patching,
        "nnsight: one trace per patch": nn_loop,
    }


def _load(avg) -> str:
    return " / ".join(f"{x:.1f}" for x in avg)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--positions", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--vocab", type=int, default=1000)
    ap.add_argument("--append", action="store_true", help="add this configuration's table to --out")
    ap.add_argument("--out", default=None, help="also write the tables to this file (atomically)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    device = torch.device(args.device)
    tl = build(device, args.d_model, args.vocab)
    clean, corrupt, ans, dis = make_data(args.batch, args.positions, tl.cfg.d_vocab)
    V = variants(tl, clean.to(device), corrupt.to(device), ans.to(device), dis.to(device))
    n_cells = tl.cfg.n_layers * args.positions * tl.cfg.n_heads
    with torch.no_grad():
        results = {k: f().cpu() for k, f in V.items()}  # warm-up + equality check
    ref = results["TransformerLens patching.get_act_patch_attn_head_out_by_pos"]
    diffs = {k: float((v - ref).abs().max()) for k, v in results.items()}
    times = {k: [] for k in V}
    ratios = {k: [] for k in V}
    ours_key = next(iter(V))
    rng = random.Random(0)
    for _ in range(args.reps):
        order = list(V)
        rng.shuffle(order)
        rep = {}
        for k in order:
            t0 = time.perf_counter()
            with torch.no_grad():
                V[k]()
            rep[k] = time.perf_counter() - t0
        for k in V:
            times[k].append(rep[k])
            ratios[k].append(rep[k] / rep[ours_key])
    import importlib.metadata

    import nnsight
    import transformers

    lines = [
        f"## d_model {args.d_model}, vocab {args.vocab}",
        "",
        f"Full head × position activation-patching sweep (denoising, metric = mean logit diff at the last token) on a "
        f"random-weight 4-layer TransformerLens model (d_model {args.d_model}, 4 heads, d_mlp {4 * args.d_model}, "
        f"vocab {args.vocab}), batch "
        f"{args.batch} × {args.positions} tokens: {n_cells} patched cells. `bench/bench_patching.py`, "
        f"{args.reps} interleaved repetitions (order reshuffled each time), medians; ratio = median over repetitions "
        f"of time / ours-fast in the same repetition (min–max in brackets).",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {args.device}, torch threads {args.threads}; "
        f"torch {torch.__version__}, transformers {transformers.__version__}, transformer_lens "
        f"{importlib.metadata.version('transformer-lens')}, nnsight {nnsight.__version__}, "
        f"python {platform.python_version()}. Shared 2-core machine, other engineers' jobs running: load average "
        f"(1/5/15 min) {_load(load_before)} before and {_load(os.getloadavg())} after; absolute times are noisy, "
        "the ratios from the same interleaved run are what count.",
        "",
        "| variant | median time (s) | per patch (ms) | time / ours fast | max abs diff vs TransformerLens |",
        "|---|---|---|---|---|",
    ]
    for k in V:
        med = statistics.median(times[k])
        r = ratios[k]
        lines.append(f"| {k} | {med:.3f} | {1000 * med / n_cells:.2f} | {statistics.median(r):.2f}× "
                     f"[{min(r):.2f}–{max(r):.2f}] | {diffs[k]:.1e} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out is None:
        return
    out = Path(args.out)
    if args.append and out.exists():
        text = out.read_text() + "\n" + text
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text)
    tmp.replace(out)


if __name__ == "__main__":
    main()
