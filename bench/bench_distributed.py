"""Harvest + SAE training throughput at 1 vs 2 processes (torchrun, gloo on CPU / nccl on GPUs).

    PYTHONPATH=. python bench/bench_distributed.py --out bench/RESULTS_distributed.md      # CPU, ~5 min here
    PYTHONPATH=. python bench/bench_distributed.py --worlds 1 8 --device cuda --d-model 2048 --layers 16 \
        --examples 65536 --seq-len 512 --batch 8192 --latents 65536 --model-batch 64   # a GPU machine

Each variant is one ``torchrun --standalone --nproc_per_node W`` run of this file in worker mode: the ranks
(1) harvest ``resid_post.2`` of a GPT-2-shaped model built from its config (seeded: every rank has the same
weights) over token rows into a fresh shard cache (``saes.distributed.harvest``), then (2) train a TopK SAE
data-parallel from that cache at a fixed global batch (``saes.train.fit_sae``). Variants are interleaved and
repeated; we report medians with the range, tokens/s and the scaling efficiency (tokens/s at W) / (W x at 1).
Wall time is measured between barriers on rank 0; one torch thread per rank.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def worker(args) -> None:
    import torch

    torch.set_num_threads(1)
    import sae_lens  # noqa: F401 - imported before the clock starts
    import transformers as T

    import hooks
    from saes import distributed as D
    from saes.store import ActivationStore
    from saes.train import fit_sae

    with D.process_group():
        dev = D.device() if args.device == "cuda" else torch.device("cpu")
        torch.manual_seed(0)
        cfg = T.GPT2Config(n_embd=args.d_model, n_layer=args.layers, n_head=8, vocab_size=512, n_positions=256, bos_token_id=1, eos_token_id=2, pad_token_id=0)
        model = hooks.wrap(T.GPT2LMHeadModel(cfg).to(dev))
        g = torch.Generator().manual_seed(1)
        rows = [[1] + torch.randint(3, 512, (args.seq_len - 1,), generator=g).tolist() for _ in range(args.examples)]
        cache = Path(args.tmp) / f"cache_w{D.world()}_{args.rep}"
        D.barrier()
        t0 = time.perf_counter()
        man = D.harvest(model, rows, "resid_post.2", cache, model_batch_size=args.model_batch, progress=False) \
            if D.world() > 1 else __import__("saes.cache", fromlist=["x"]).cache_activations(
                model, rows, "resid_post.2", cache, model_batch_size=args.model_batch, progress=False)
        D.barrier()
        t1 = time.perf_counter()
        store = ActivationStore.from_cache(cache, batch_size=args.batch, buffer_size=4 * args.batch, seed=0,
                                           device=str(dev))
        steps = man["rows"] // args.batch
        res = fit_sae(store, arch="topk", latents=args.latents, k=32, batch_size=args.batch, buffer_size=4 * args.batch,
                      tokens=steps * args.batch, checkpoint_every=0, log_every=10**9, device=str(dev), seed=0)
        D.barrier()
        t2 = time.perf_counter()
        if D.is_main():
            Path(args.result).write_text(json.dumps({
                "world": D.world(), "backend": D.backend(), "harvest_rows": man["rows"], "harvest_s": t1 - t0,
                "train_rows": steps * args.batch, "train_s": t2 - t1, "steps": steps,
                "sae_step_s": res.summary["sae_step_s"]}))


def run_variant(world: int, rep: int, args, tmp: Path) -> dict:
    result = tmp / f"r_w{world}_{rep}.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(world), __file__,
           "--worker", "--rep", str(rep), "--tmp", str(tmp), "--result", str(result), "--device", args.device,
           "--examples", str(args.examples), "--seq-len", str(args.seq_len), "--batch", str(args.batch),
           "--latents", str(args.latents), "--model-batch", str(args.model_batch), "--d-model", str(args.d_model),
           "--layers", str(args.layers)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    subprocess.run(cmd, check=True, env=env, cwd=ROOT, timeout=1800, stdout=subprocess.DEVNULL)
    return json.loads(result.read_text())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--worlds", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--examples", type=int, default=256)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--latents", type=int, default=2048)
    ap.add_argument("--model-batch", type=int, default=16)
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--rep", type=int, default=0)
    ap.add_argument("--tmp", default=None)
    ap.add_argument("--result", default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    import torch

    runs: dict = {w: [] for w in args.worlds}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):  # interleaved: w1, w2, w1, w2, ...
            for w in args.worlds:
                r = run_variant(w, rep, args, Path(tmp))
                runs[w].append(r)
                print(f"rep {rep} world {w}: harvest {r['harvest_rows'] / r['harvest_s']:.0f} tok/s, "
                      f"train {r['train_rows'] / r['train_s']:.0f} tok/s", flush=True)

    def med(vals):
        return statistics.median(vals), min(vals), max(vals)

    base = {}
    lines = ["| processes | harvest tok/s (median, range) | harvest eff. | SAE train tok/s (median, range) | train eff. "
             "| in SAE steps only: tok/s | eff. |", "|---|---|---|---|---|---|---|"]
    for w in args.worlds:
        h = med([r["harvest_rows"] / r["harvest_s"] for r in runs[w]])
        t = med([r["train_rows"] / r["train_s"] for r in runs[w]])
        s = med([r["train_rows"] / r["sae_step_s"] for r in runs[w]])
        if w == args.worlds[0]:
            base = {"h": h[0] / w, "t": t[0] / w, "s": s[0] / w}
        lines.append(f"| {w} | {h[0]:,.0f} ({h[1]:,.0f}–{h[2]:,.0f}) | {h[0] / (w * base['h']):.2f} | "
                     f"{t[0]:,.0f} ({t[1]:,.0f}–{t[2]:,.0f}) | {t[0] / (w * base['t']):.2f} | "
                     f"{s[0]:,.0f} | {s[0] / (w * base['s']):.2f} |")
    r0 = runs[args.worlds[0]][0]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    text = "\n".join(lines) + (
        f"\n\nworkload: {args.examples} rows x {args.seq_len} tokens, GPT-2-shaped model from its config (4 layers), "
        f"site resid_post.2, model batch {args.model_batch}; TopK SAE {args.latents} latents k=32, global batch "
        f"{args.batch}, {r0['steps']} steps; {args.repeats} interleaved repeats; backend {r0['backend']}\n"
        f"machine: {platform.machine()}, {os.cpu_count()} cores, load average {load:.1f}; Python "
        f"{platform.python_version()}, torch {torch.__version__}\n")
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
