#!/usr/bin/env python
"""Benchmark SAE training: our store + sae-lens's SAETrainer vs SAELens's own training runner.

    PYTHONPATH=. python bench/bench_saes.py                        # CPU, a few minutes
    PYTHONPATH=. python bench/bench_saes.py --quick                # smaller budget
    PYTHONPATH=. python bench/bench_saes.py --device cuda --tokens 4000000 --out bench/RESULTS_saes_cuda.md

Same TransformerLens model (random weights from a config, no downloads: 4 layers, d_model 128,
vocab 1000, context 128), same pre-tokenized data (rows of ``BOS + 127`` Zipf-distributed
tokens), same site (``blocks.1.hook_resid_post`` = ``resid_post.1``), same positions (BOS
left out: SAELens ``exclude_special_tokens=[BOS]``, ours ``positions="1:"``), same TopK SAE
(k 32; 2048 latents and batch 2048 on CPU, 4096/4096 on CUDA; identical initial weights), same
optimiser settings, buffer size and token budget.

* **ours** — ``saes.train_sae``: ``ActivationStore`` streaming activations through the hook
  registry (forward stopped after the site), fed to sae-lens's ``SAETrainer``;
* **ours, prefetch thread** — the same, with the next buffer built in a background thread
  while the SAE trains (``prefetch=True``; the default on CUDA);
* **ours, disk cache** — the same, with the activations first written to safetensors shards
  (``cache_dir``); the caching pass is included in the wall time;
* **SAELens** — ``LanguageModelSAETrainingRunner(cfg, override_model=tl_model,
  override_dataset=Dataset(tokens), override_sae=...)``: TL ``run_with_cache`` with
  ``stop_at_layer`` and SAELens's mixing buffer.

Reported: training tokens/s (wall time of the training call, model already built), the
share of wall time spent inside ``SAETrainer.step`` (timed the same way for every variant by
wrapping it, synchronising CUDA), and FVU / L0 / dead latents of each final SAE measured by
``saes.evaluate_sae`` on the same held-out rows (plus the SAELens runner's own last-batch
explained variance for reference is not available without wandb, so we do not report it).
"""
from __future__ import annotations

import argparse
import copy
import os
import platform
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings("ignore")
os.environ.setdefault("TQDM_DISABLE", "1")

BOS, VOCAB, CTX = 1, 1000, 128
HOOK, SITE = "blocks.1.hook_resid_post", "resid_post.1"


def build_model(device: str, seed: int = 0):
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    torch.manual_seed(seed)
    cfg = HookedTransformerConfig(n_layers=4, d_model=128, n_ctx=CTX, d_head=32, n_heads=4, d_mlp=512,
                                  d_vocab=VOCAB, act_fn="gelu", normalization_type="LN", device=device)
    model = HookedTransformer(cfg).eval()
    with torch.no_grad():  # TL initialises norms to 1/0 and biases to 0: perturb so every term matters
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def make_rows(n: int, seed: int) -> list:
    """``BOS`` + 127 tokens from a Zipf(1.1) law over ids 2..VOCAB-1 (never BOS)."""
    g = torch.Generator().manual_seed(seed)
    ranks = torch.arange(1, VOCAB - 1, dtype=torch.float64)
    probs = ranks.pow(-1.1)
    toks = torch.multinomial(probs / probs.sum(), n * (CTX - 1), replacement=True, generator=g) + 2
    body = toks.view(n, CTX - 1)
    return torch.cat([torch.full((n, 1), BOS), body], 1).tolist()


class StepTimer:
    """Wraps ``SAETrainer.step`` (class-level) to time every variant identically."""

    def __init__(self, device: str):
        from sae_lens.training.sae_trainer import SAETrainer

        self.cls, self.orig, self.seconds, self.device = SAETrainer, SAETrainer.step, 0.0, device

    def __enter__(self):
        orig = self.orig

        def timed(trainer, batch):
            t0 = time.perf_counter()
            out = orig(trainer, batch)
            if self.device.startswith("cuda"):
                torch.cuda.synchronize()
            self.seconds += time.perf_counter() - t0
            return out

        self.cls.step = timed
        return self

    def __exit__(self, *exc):
        self.cls.step = self.orig


def run_ours(hm, rows, args, use_cache=False, prefetch=False):
    import saes

    tmp = Path(tempfile.mkdtemp(prefix="bench_ours_"))
    cache_dir = tmp / "cache" if use_cache else None
    try:
        with StepTimer(args.device) as timer:
            t0 = time.perf_counter()
            res = saes.fit_sae(
                saes.ActivationStore.from_model(hm, rows, SITE, "1:", batch_size=args.batch_size,
                                                buffer_size=args.buffer_rows, model_batch_size=args.model_batch,
                                                seed=args.seed, device=args.device, cache_dir=cache_dir,
                                                max_rows=args.tokens if cache_dir else None, prefetch=prefetch),
                saes.TrainConfig(**_train_kw(args)), out=tmp / "sae")
            wall = time.perf_counter() - t0
        return res.sae, wall, timer.seconds
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_saelens(model, rows, args):
    from datasets import Dataset
    from sae_lens import LanguageModelSAERunnerConfig, LanguageModelSAETrainingRunner, LoggingConfig
    from sae_lens import TopKTrainingSAEConfig

    import saes

    tmp = Path(tempfile.mkdtemp(prefix="bench_saelens_"))
    try:
        cfg = LanguageModelSAERunnerConfig(
            sae=TopKTrainingSAEConfig(d_in=128, d_sae=args.latents, k=args.k, device=args.device),
            model_name="bench-tl", hook_name=HOOK, dataset_path="bench", is_dataset_tokenized=True, streaming=False,
            context_size=CTX, training_tokens=args.tokens, train_batch_size_tokens=args.batch_size,
            store_batch_size_prompts=args.model_batch, n_batches_in_buffer=max(1, args.buffer_rows // CTX),
            exclude_special_tokens=[BOS], prepend_bos=False, device=args.device, seed=args.seed, lr=args.lr,
            dead_feature_window=args.dead_window, logger=LoggingConfig(log_to_wandb=False), checkpoint_path=None,
            output_path=str(tmp / "sae"), verbose=False)
        sae = saes.make_training_sae(saes.TrainConfig(**_train_kw(args)), 128)  # same seed: same initial weights
        runner = LanguageModelSAETrainingRunner(cfg, override_dataset=Dataset.from_dict({"tokens": rows}),
                                                override_model=model, override_sae=sae)
        with StepTimer(args.device) as timer:
            t0 = time.perf_counter()
            runner.run()
            wall = time.perf_counter() - t0
        return saes.load_sae(tmp / "sae", device=args.device), wall, timer.seconds
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def pipeline_only(hm, model, rows, args, reps: int = 3) -> dict:
    """Activations per second of each store alone (no SAE), interleaved repetitions, median."""
    import random
    import statistics

    from datasets import Dataset
    from sae_lens import LanguageModelSAERunnerConfig, LoggingConfig, TopKTrainingSAEConfig
    from sae_lens.training.activations_store import ActivationsStore

    import saes

    n_batches = max(2, 2 * args.buffer_rows // args.batch_size)
    cfg = LanguageModelSAERunnerConfig(
        sae=TopKTrainingSAEConfig(d_in=128, d_sae=args.latents, k=args.k, device=args.device),
        model_name="bench-tl", hook_name=HOOK, dataset_path="bench", is_dataset_tokenized=True, streaming=False,
        context_size=CTX, training_tokens=args.tokens, train_batch_size_tokens=args.batch_size,
        store_batch_size_prompts=args.model_batch, n_batches_in_buffer=max(1, args.buffer_rows // CTX),
        exclude_special_tokens=[BOS], prepend_bos=False, device=args.device, seed=args.seed,
        logger=LoggingConfig(log_to_wandb=False), checkpoint_path=None, output_path=None, verbose=False)
    ds = Dataset.from_dict({"tokens": rows})

    def ours():
        return saes.ActivationStore.from_model(hm, rows, SITE, "1:", batch_size=args.batch_size,
                                               buffer_size=args.buffer_rows, model_batch_size=args.model_batch,
                                               device=args.device)

    def theirs():
        return ActivationsStore.from_config(model, cfg, override_dataset=ds)

    times: dict = {"ours": [], "SAELens": []}
    for _ in range(reps):
        order = list(times)
        random.shuffle(order)
        for name in order:
            store = ours() if name == "ours" else theirs()
            t0 = time.perf_counter()
            for _ in range(n_batches):
                x = next(store)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t0)
            assert x.shape == (args.batch_size, 128)
    return {k: n_batches * args.batch_size / statistics.median(v) for k, v in times.items()}


def _train_kw(args) -> dict:
    return dict(arch="topk", latents=args.latents, k=args.k, tokens=args.tokens, batch_size=args.batch_size,
                buffer_size=args.buffer_rows, model_batch_size=args.model_batch, lr=args.lr, seed=args.seed,
                device=args.device, dead_feature_window=args.dead_window, log_every=10**9)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tokens", type=int, default=None, help="training tokens (default: 50 batches on CPU, 1000 on CUDA)")
    ap.add_argument("--batch-size", type=int, default=None, help="default 2048 on CPU, 4096 on CUDA")
    ap.add_argument("--latents", type=int, default=None, help="default 2048 on CPU, 4096 on CUDA")
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--buffer-rows", type=int, default=None, help="default 8 batches")
    ap.add_argument("--model-batch", type=int, default=32, help="sequences per model forward")
    ap.add_argument("--dead-window", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch intra-op threads (default 1 on CPU: the prefetch thread gets the other core)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-cache-variant", action="store_true")
    ap.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
    args = ap.parse_args(argv)
    if args.threads or args.device == "cpu":
        torch.set_num_threads(args.threads or 1)
    cpu = args.device == "cpu"
    args.batch_size = args.batch_size or (2048 if cpu else 4096)
    args.latents = args.latents or (2048 if cpu else 4096)
    args.buffer_rows = args.buffer_rows or 8 * args.batch_size
    if args.tokens is None:
        batches = (15 if args.quick else 50) if args.device == "cpu" else 1000
        args.tokens = batches * args.batch_size
    import saes
    import sae_lens  # noqa: F401 - import cost kept out of the timings

    import hooks

    rows_needed = args.tokens // (CTX - 1) + args.buffer_rows // (CTX - 1) + 64
    rows, heldout = make_rows(rows_needed, seed=1), make_rows(64, seed=2)
    model = build_model(args.device)
    hm = hooks.wrap(model)
    variants = [("ours", lambda: run_ours(hm, rows, args)),
                ("ours, prefetch thread", lambda: run_ours(hm, rows, args, prefetch=True))]
    if not args.no_cache_variant:
        variants.append(("ours, disk cache", lambda: run_ours(hm, rows, args, use_cache=True)))
    variants.append(("SAELens runner", lambda: run_saelens(copy.deepcopy(model), rows, args)))
    pipe = pipeline_only(hm, model, rows, args, reps=2 if args.quick else 3)
    print("activation pipeline alone: " + ", ".join(f"{k} {v:,.0f} tok/s" for k, v in pipe.items()), flush=True)
    results = []
    for name, fn in variants:
        sae, wall, step_s = fn()
        m = saes.evaluate_sae(sae, hm, heldout, site=SITE, positions="1:", batch_size=16)
        results.append((name, args.tokens / wall, step_s / wall, m))
        print(f"{name}: {args.tokens / wall:,.0f} tok/s, {100 * step_s / wall:.1f}% in SAE steps, "
              f"FVU {m['fvu']:.3f}, L0 {m['l0']:.1f}, loss recovered {m['loss_recovered']:.3f}", flush=True)
    lines = [
        f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, device "
        f"{args.device}{' (' + torch.cuda.get_device_name() + ')' if args.device.startswith('cuda') else ''}; "
        f"torch {torch.__version__}, sae-lens {sae_lens.__version__}.",
        f"Budget: {args.tokens:,} tokens, batch {args.batch_size}, TopK k={args.k}, {args.latents} latents, "
        f"buffer {args.buffer_rows} rows, {args.model_batch} sequences per model forward.",
        "",
        "| pipeline | tokens/s | time in SAE steps | FVU | L0 | dead latents | loss recovered |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, tps, frac, m in results:
        lines.append(f"| {name} | {tps:,.0f} | {100 * frac:.1f}% | {m['fvu']:.3f} | {m['l0']:.1f} | "
                     f"{100 * m['dead_fraction']:.1f}% | {m['loss_recovered']:.3f} |")
    lines += ["", "Activation pipeline alone (store `next()` only, no SAE; median of interleaved repetitions):", "",
              "| store | activations/s |", "|---|---:|"]
    lines += [f"| {k} | {v:,.0f} |" for k, v in pipe.items()]
    table = "\n".join(lines)
    print("\n" + table)
    if args.out is not None:
        from hooks.io import write_text_atomic

        write_text_atomic(args.out, table + "\n")


if __name__ == "__main__":
    main()
