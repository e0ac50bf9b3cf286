#!/usr/bin/env python
"""Benchmark the hook registry (``hooks``) against raw torch hooks, HF ``output_hidden_states``,
TransformerLens and nnsight, on random-weight GPT-2 models built from configs (no downloads).

    PYTHONPATH=. python bench/bench_hooks.py                      # CPU, full run (a few minutes)
    PYTHONPATH=. python bench/bench_hooks.py --quick              # fewer repetitions
    PYTHONPATH=. python bench/bench_hooks.py --device cuda --out bench/RESULTS_hooks_cuda.md
    PYTHONPATH=. python bench/bench_hooks.py --only latency --profile   # where ours spends its time

Two regimes, every variant in the same process:

* **throughput** — GPT-2-small-sized model (12 layers, d=768, vocab 50257), batch 8×128. The
  matmuls dominate; this regime guards against regressions (target: ours ≤ 1.05× un-hooked).
* **latency** — a small GPT-2 (4 layers, d=256, vocab 1024), batch 1×32: single forwards, and
  32-token greedy generation with a steering vector added at every new token. Per-call
  overhead shows here (as it does for a GPU forward). Targets: ours ≤ 1.05× raw torch hooks
  on a forward; ours ≥ 1.5× faster than nnsight on the steered generation.

Method: warm-up calls first; then in each repetition every variant runs once, in a freshly
shuffled order (so a noisy neighbour hurts all variants alike); we report the median time and
the median over repetitions of the per-repetition ratio to the un-hooked forward timed in the
same repetition (with its inter-quartile range). All variants run under ``torch.no_grad()``.
The un-hooked baseline is a separate copy of the model with stock ``sdpa`` attention (wrapping
switches a model to ``interp_sdpa``; "wrapped, no hooks" shows what that alone costs). nnsight
gets its own copy too, because it instruments the modules it wraps.
"""
from __future__ import annotations

import argparse
import copy
import gc
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
import hooks  # noqa: E402
from hooks import Cache, Knockout, Patch, Steer  # noqa: E402

warnings.filterwarnings("ignore")

# ---------------------------------------------------------------------------------------------
# timing


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(variants: dict, *, reps: int, warmup: int, device, seed: int = 0, log=None) -> dict:
    """Interleaved timing, order reshuffled every repetition.

    Returns ``{"wall": {name: [s, ...]}, "cpu": {name: [s, ...]}}``: wall-clock time and this
    process's CPU time (``time.process_time``) of each call. On a shared CPU machine the CPU time
    is what the call cost us, unaffected by time spent descheduled; on CUDA only wall time means
    anything (the GPU runs asynchronously).
    """
    for _ in range(warmup):
        for fn in variants.values():
            fn()
    _sync(device)
    wall = {n: [] for n in variants}
    cpu = {n: [] for n in variants}
    rng = random.Random(seed)
    names = list(variants)
    for r in range(reps):
        gc.collect()
        rng.shuffle(names)
        for n in names:
            fn = variants[n]
            _sync(device)
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            _sync(device)
            t1, c1 = time.perf_counter(), time.process_time()
            wall[n].append(t1 - t0)
            cpu[n].append(c1 - c0)
        if log is not None:
            log(f"  rep {r + 1}/{reps}")
    return {"wall": wall, "cpu": cpu}


def ratio_ci(num: list, den: list, n_boot: int = 2000, seed: int = 0) -> tuple:
    """Median of per-repetition ratios num/den and a bootstrap 90% interval (resampling repetitions)."""
    r = [a / b for a, b in zip(num, den)]
    rng = random.Random(seed)
    meds = sorted(statistics.median(rng.choices(r, k=len(r))) for _ in range(n_boot))
    return statistics.median(r), meds[int(0.05 * n_boot)], meds[int(0.95 * n_boot) - 1]


def primary(tm: dict, device) -> dict:
    """The clock the ratios are computed on: CPU time on a CPU device, wall time on CUDA."""
    return tm["cpu"] if device.type == "cpu" else tm["wall"]


def _q(xs, q):
    xs = sorted(xs)
    if len(xs) == 1:
        return xs[0]
    pos = (len(xs) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summarize(tm: dict, baseline: str, device) -> list:
    """Rows (name, median, min, ratio median, ratio q25, ratio q75, median wall) on the primary clock;
    ratios are taken per repetition against the baseline timed in the same repetition."""
    times = primary(tm, device)
    base = times[baseline]
    rows = []
    for n, ts in times.items():
        ratios = [t / b for t, b in zip(ts, base)]
        rows.append((n, statistics.median(ts), min(ts), statistics.median(ratios), _q(ratios, 0.25), _q(ratios, 0.75),
                     statistics.median(tm["wall"][n])))
    return rows


def fmt_time(s: float) -> str:
    if s >= 1:
        return f"{s:.3f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.0f} µs"


def table(rows, title: str, ratio_to: str, device) -> str:
    clock = "CPU time" if device.type == "cpu" else "wall time"
    head = f"| variant | median {clock} | min {clock} | × {ratio_to} (median of per-rep ratios) | IQR of ratio |"
    sep = "|---|---:|---:|---:|---:|"
    if device.type == "cpu":
        head += " median wall |"
        sep += "---:|"
    out = [f"**{title}** (ratios on {clock})", "", head, sep]
    for n, med, mn, r, lo, hi, wmed in rows:
        line = f"| {n} | {fmt_time(med)} | {fmt_time(mn)} | {r:.3f} | {lo:.2f}–{hi:.2f} |"
        if device.type == "cpu":
            line += f" {fmt_time(wmed)} |"
        out.append(line)
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# models


def make_tokenizer(vocab_size: int):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<bos>": 1, **{f"w{i}": i + 2 for i in range(vocab_size - 2)}}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", bos_token="<bos>", unk_token="<pad>")


def build_gpt2(n_layer, d, n_head, vocab, n_pos, device, seed=0):
    import transformers as T

    torch.manual_seed(seed)
    cfg = T.GPT2Config(n_embd=d, n_layer=n_layer, n_head=n_head, vocab_size=vocab, n_positions=n_pos,
                       bos_token_id=1, eos_token_id=1, pad_token_id=0)
    cfg._attn_implementation = "sdpa"
    m = T.GPT2LMHeadModel(cfg).eval().to(device)
    m.generation_config.eos_token_id = None  # random weights: never stop early
    m.generation_config.pad_token_id = 0
    return m


def build_tl(hf, device):
    """A HookedTransformer with the same config and the HF model's weights (TL's own GPT-2 conversion)."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformer_lens.pretrained.weight_conversions.gpt2 import convert_gpt2_weights

    c = hf.config
    cfg = HookedTransformerConfig(
        n_layers=c.n_layer, d_model=c.n_embd, n_ctx=c.n_positions, d_head=c.n_embd // c.n_head, n_heads=c.n_head,
        d_mlp=4 * c.n_embd, d_vocab=c.vocab_size, act_fn="gelu_new", normalization_type="LN", eps=c.layer_norm_epsilon,
        positional_embedding_type="standard", original_architecture="GPT2LMHeadModel", default_prepend_bos=False,
        device=str(device),
    )
    tl = HookedTransformer(cfg)
    sd = {k: v.detach().clone() for k, v in convert_gpt2_weights(hf, cfg).items()}
    missing, unexpected = tl.load_state_dict(sd, strict=False)
    if unexpected:
        raise RuntimeError(f"TL conversion: unexpected keys {unexpected}")
    bad = [k for k in missing if not k.endswith(("IGNORE", "mask", "b_U"))]
    if bad:
        raise RuntimeError(f"TL conversion: missing keys {bad}")
    return tl.eval().to(device)


def raw_block_outputs(model, inputs):
    """Raw torch hooks: one forward hook per block appending output.detach().cpu()."""
    store = []

    def hook(mod, args, out):
        t = out[0] if isinstance(out, tuple) else out
        store.append(t.detach().cpu())

    hs = [blk.register_forward_hook(hook) for blk in model.transformer.h]
    try:
        out = model(**inputs, use_cache=False)
    finally:
        for h in hs:
            h.remove()
    return out, store


# ---------------------------------------------------------------------------------------------
# regimes


def maxdiff(a, b) -> float:
    return float((a.float().cpu() - b.float().cpu()).abs().max())


def check_line(name, ok, detail):
    return f"- {'OK ' if ok else 'FAIL'} {name}: {detail}"


def throughput(args, device, log):
    import nnsight

    B, P = 8, 128
    n_layer = 12
    hf = build_gpt2(n_layer, 768, 12, 50257, 1024, device)
    wrapped = copy.deepcopy(hf)
    hm = hooks.wrap(wrapped, None)
    nm = nnsight.NNsight(copy.deepcopy(hf))
    tl = None if args.skip_tl else build_tl(hf, device)

    g = torch.Generator().manual_seed(1)
    ids = torch.randint(2, 50257, (B, P), generator=g).to(device)
    src_ids = torch.randint(2, 50257, (B, P), generator=g).to(device)
    am = torch.ones_like(ids)
    inputs = {"input_ids": ids, "attention_mask": am}
    src_cache = hm.run({"input_ids": src_ids, "attention_mask": am}, [Cache("resid_pre.6", positions="last")]).cache
    tl_resid = [f"blocks.{L}.hook_resid_post" for L in range(n_layer)]

    def nn_trace():
        with nm.trace(input_ids=ids, attention_mask=am, use_cache=False):
            outs = nnsight.save([])
            for L in range(n_layer):
                outs.append(nm.transformer.h[L].output)
            logits = nm.output.logits.save()
        return logits, outs

    V = {
        "HF forward, un-hooked (baseline)": lambda: hf(**inputs, use_cache=False),
        "HF forward, wrapped model (interp_sdpa), no hooks": lambda: wrapped(**inputs, use_cache=False),
        "HF output_hidden_states=True": lambda: hf(**inputs, use_cache=False, output_hidden_states=True),
        "raw torch hooks: 12 block outputs → CPU": lambda: raw_block_outputs(hf, inputs),
        "ours: run + Cache('resid_post.*', device='cpu')": lambda: hm.run(inputs, [Cache("resid_post.*", device="cpu")]),
        "ours: run + Knockout(layers=[5], last→0, zero)": lambda: hm.run(
            inputs, [Knockout(layers=[5], queries="last", keys=0, mode="zero")]),
        "ours: run + Patch('resid_pre.6', last, from cache)": lambda: hm.run(
            inputs, [Patch("resid_pre.6", positions="last", source=src_cache)]),
        "nnsight trace: save 12 block outputs": nn_trace,
    }
    if device.type != "cpu":
        V["ours: run + Cache('resid_post.*', on device)"] = lambda: hm.run(inputs, [Cache("resid_post.*", device=None)])
        V["HF output_hidden_states=True, then .cpu()"] = lambda: [
            h.cpu() for h in hf(**inputs, use_cache=False, output_hidden_states=True).hidden_states]
    if tl is not None:
        V["TL forward, un-hooked"] = lambda: tl(ids)
        V["TL run_with_cache (12 resid_post)"] = lambda: tl.run_with_cache(ids, names_filter=tl_resid)
        V["TL run_with_cache (unfiltered)"] = lambda: tl.run_with_cache(ids)

    # -- equality checks (also warm the caches) --
    checks = []
    base = hf(**inputs, use_cache=False).logits
    hs = hf(**inputs, use_cache=False, output_hidden_states=True).hidden_states
    res = hm.run(inputs, [Cache("resid_post.*", device="cpu")])
    _, raw = raw_block_outputs(hf, inputs)
    d_hs = max(maxdiff(res.cache[f"resid_post.{L}"], hs[L + 1]) for L in range(n_layer - 1))
    d_raw = max(maxdiff(res.cache[f"resid_post.{L}"], raw[L]) for L in range(n_layer))
    checks.append(check_line("ours resid_post.0..10 == HF hidden_states[1..11]", d_hs == 0, f"max |Δ| = {d_hs:.2e}"))
    checks.append(check_line("ours resid_post.* == raw-hook block outputs", d_raw == 0, f"max |Δ| = {d_raw:.2e}"))
    checks.append(check_line("ours logits == un-hooked logits", maxdiff(res.logits, base) == 0,
                             f"max |Δ| = {maxdiff(res.logits, base):.2e}"))
    nl, nouts = nn_trace()
    d_nn = max(maxdiff(nouts[L], raw[L]) for L in range(n_layer))
    checks.append(check_line("nnsight block outputs == raw-hook outputs", d_nn == 0, f"max |Δ| = {d_nn:.2e}"))
    ko = hm.run(inputs, [Knockout(layers=[5], queries="last", keys=0, mode="zero")]).logits
    pa = hm.run(inputs, [Patch("resid_pre.6", positions="last", source=src_cache)]).logits
    # Knockout runs that layer's attention explicitly (matmul/softmax instead of the sdpa kernel), so earlier
    # positions match to float32 rounding only; Patch leaves every other op untouched (exact).
    for nm_, lg, tol in (("Knockout", ko, 1e-4), ("Patch", pa, 0.0)):
        same = maxdiff(lg[:, :-1], base[:, :-1])
        last = maxdiff(lg[:, -1], base[:, -1])
        checks.append(check_line(f"{nm_} changes only the last position's logits", same <= tol and last > 100 * max(same, 1e-7),
                                 f"max |Δ| earlier positions {same:.2e} (tolerance {tol:g}), last position {last:.2e}"))
    if tl is not None:
        tl_logits, tl_cache = tl.run_with_cache(ids, names_filter=tl_resid)
        d_tl = max(maxdiff(tl_cache[n], raw[L]) for L, n in enumerate(tl_resid))
        d_tll = maxdiff(tl_logits, base)
        checks.append(check_line("TL (converted weights) resid_post ≈ HF block outputs", d_tl < 1e-3,
                                 f"max |Δ| = {d_tl:.2e} (float32 reordering); logits max |Δ| = {d_tll:.2e}"))
    del base, hs, res, raw, nl, nouts, ko, pa
    for c in checks:
        log(c)

    t0 = time.perf_counter()
    V["HF forward, un-hooked (baseline)"]()
    est = (time.perf_counter() - t0) * len(V) * (args.reps_throughput + 1) * 1.3
    log(f"throughput: {len(V)} variants × {args.reps_throughput} reps (about {est / 60:.0f} min at the current load)")
    times = measure(V, reps=args.reps_throughput, warmup=1, device=device, seed=1, log=log)
    rows = summarize(times, "HF forward, un-hooked (baseline)", device)
    pt = primary(times, device)
    ci = ratio_ci(pt["ours: run + Cache('resid_post.*', device='cpu')"], pt["HF forward, un-hooked (baseline)"])
    checks.insert(0, f"- ours Cache('resid_post.*') / un-hooked: {ci[0]:.3f} (bootstrap 90% CI {ci[1]:.3f}–{ci[2]:.3f}) "
                     f"— target ≤ 1.05: {'met' if ci[0] <= 1.05 else 'MISSED'}")
    gc.collect()
    return rows, checks


GEN_BASE = "HF generate, un-hooked (baseline)"
GEN_RAW = "raw torch hooks + HF generate"
GEN_OURS = "ours: generate + Steer('resid_post.2', last, apply_to='all')"
GEN_NN = "nnsight generate (for step in tr.iter[:32]: output[:, -1] += v)"
GEN_TL = "TL generate + hook (kv cache)"
GEN_OURS_NEW = "ours: generate + Steer(..., apply_to='new')"
GEN_RAW_NEW = "raw torch hooks + HF generate, decode steps only"


def latency(args, device, log):
    import nnsight

    P, n_layer, d, vocab, n_new, L_steer, scale = 32, 4, 256, 1024, 32, 2, 4.0
    hf = build_gpt2(n_layer, d, 4, vocab, 128, device)
    tok = make_tokenizer(vocab)
    wrapped = copy.deepcopy(hf)
    hm = hooks.wrap(wrapped, tok)
    nm = nnsight.NNsight(copy.deepcopy(hf))
    lm = nnsight.TransformersModel(copy.deepcopy(hf), tokenizer=tok)
    tl = None if args.skip_tl else build_tl(hf, device)

    g = torch.Generator().manual_seed(2)
    ids = torch.randint(2, vocab, (1, P), generator=g).to(device)
    am = torch.ones_like(ids)
    inputs = {"input_ids": ids, "attention_mask": am}
    v = (torch.randn(d, generator=g) * 1.0).to(device)
    tl_resid = [f"blocks.{L}.hook_resid_post" for L in range(n_layer)]

    # ---- forwards ----
    def raw_steer_fwd():
        def hook(mod, a, out):
            t = out[0] if isinstance(out, tuple) else out
            t = t.clone()
            t[:, -1] += scale * v
            return (t, *out[1:]) if isinstance(out, tuple) else t

        h = hf.transformer.h[L_steer].register_forward_hook(hook)
        try:
            return hf(**inputs, use_cache=False)
        finally:
            h.remove()

    def ours_trace_cache():
        with hm.trace() as tr:
            c = tr.cache("resid_post.*", device="cpu")
            out = tr.run(inputs)
        return out, c

    def nn_trace():
        with nm.trace(input_ids=ids, attention_mask=am, use_cache=False):
            outs = nnsight.save([])
            for L in range(n_layer):
                outs.append(nm.transformer.h[L].output)
            logits = nm.output.logits.save()
        return logits, outs

    F = {
        "HF forward, un-hooked (baseline)": lambda: hf(**inputs, use_cache=False),
        "HF forward, wrapped model (interp_sdpa), no hooks": lambda: wrapped(**inputs, use_cache=False),
        "raw torch hooks: 4 block outputs → CPU": lambda: raw_block_outputs(hf, inputs),
        "ours: run, no interventions": lambda: hm.run(inputs, []),
        "ours: run + Cache('resid_post.*', device='cpu')": lambda: hm.run(inputs, [Cache("resid_post.*", device="cpu")]),
        "ours: trace() + tr.cache + tr.run": ours_trace_cache,
        "raw torch hooks: steer resid_post.2 at last": raw_steer_fwd,
        "ours: run + Steer('resid_post.2', last)": lambda: hm.run(
            inputs, [Steer(f"resid_post.{L_steer}", vector=v, scale=scale, positions="last")]),
        "nnsight trace: save 4 block outputs": nn_trace,
    }
    if tl is not None:
        F["TL forward, un-hooked"] = lambda: tl(ids)
        F["TL run_with_cache (4 resid_post)"] = lambda: tl.run_with_cache(ids, names_filter=tl_resid)

    # ---- generation: steer resid_post.2 at the last position of every forward ----
    # Every library does the same work: add scale*v at the newest token of each of the n_new forwards
    # (prompt forward: the prompt's last token). Ours: Steer(positions="last", apply_to="all").
    # The brief's Steer(..., apply_to="new") (skip the prompt forward) is timed and checked separately.
    def hf_gen():
        return hf.generate(**inputs, max_new_tokens=n_new, do_sample=False, pad_token_id=0)

    def raw_gen(new_only=False):
        def hook(mod, a, out):
            t = out[0] if isinstance(out, tuple) else out
            if new_only and t.shape[1] != 1:  # prompt forward: its last token is not a new token
                return None
            t = t.clone()
            t[:, -1] += scale * v
            return (t, *out[1:]) if isinstance(out, tuple) else t

        h = hf.transformer.h[L_steer].register_forward_hook(hook)
        try:
            return hf.generate(**inputs, max_new_tokens=n_new, do_sample=False, pad_token_id=0)
        finally:
            h.remove()

    def ours_gen(apply_to="all"):
        return hm.generate(inputs, [Steer(f"resid_post.{L_steer}", vector=v, scale=scale, positions="last",
                                          apply_to=apply_to)], max_new_tokens=n_new).sequences

    def nn_gen():
        with lm.generate(ids, max_new_tokens=n_new, do_sample=False, pad_token_id=0) as tr:
            for _ in tr.iter[:n_new]:  # one step per forward: the prompt forward, then n_new-1 decode steps
                lm.transformer.h[L_steer].output[:, -1] += scale * v
            out = tr.result.save()
        return out

    def tl_gen():
        def hook(act, hook):
            act = act.clone()
            act[:, -1] += scale * v
            return act

        with tl.hooks(fwd_hooks=[(f"blocks.{L_steer}.hook_resid_post", hook)]):
            return tl.generate(ids, max_new_tokens=n_new, do_sample=False, stop_at_eos=False, verbose=False,
                               use_past_kv_cache=True)

    G = {
        GEN_BASE: hf_gen,
        GEN_RAW: raw_gen,
        GEN_OURS: ours_gen,
        GEN_NN: nn_gen,
        GEN_OURS_NEW: lambda: ours_gen("new"),
        GEN_RAW_NEW: lambda: raw_gen(True),
    }
    if tl is not None:
        G[GEN_TL] = tl_gen

    # ---- checks ----
    checks = []
    base = hf(**inputs, use_cache=False).logits
    res = hm.run(inputs, [Cache("resid_post.*", device="cpu")])
    _, raw = raw_block_outputs(hf, inputs)
    d_raw = max(maxdiff(res.cache[f"resid_post.{L}"], raw[L]) for L in range(n_layer))
    checks.append(check_line("ours resid_post.* == raw-hook block outputs", d_raw == 0, f"max |Δ| = {d_raw:.2e}"))
    _, nouts = nn_trace()
    d_nn = max(maxdiff(nouts[L], raw[L]) for L in range(n_layer))
    checks.append(check_line("nnsight block outputs == raw-hook outputs", d_nn == 0, f"max |Δ| = {d_nn:.2e}"))
    d_st = maxdiff(F["ours: run + Steer('resid_post.2', last)"]().logits, raw_steer_fwd().logits)
    checks.append(check_line("ours Steer forward == raw-hook steer forward", d_st == 0, f"max |Δ| logits = {d_st:.2e}"))
    plain = hf_gen()[:, P:].cpu()
    seqs = {"raw hooks": raw_gen()[:, P:].cpu(), "ours": ours_gen()[:, P:].cpu(), "nnsight": nn_gen()[:, P:].cpu()}
    if tl is not None:
        seqs["TL"] = tl_gen()[:, P:].cpu()
        d_tl = maxdiff(tl(ids), base)
        checks.append(check_line("TL (converted weights) logits ≈ HF logits", d_tl < 1e-3, f"max |Δ| = {d_tl:.2e}"))

    def same_tokens(label, s, ref):
        eq = s.shape == ref.shape and bool((s == ref).all())
        n_eq = int((s == ref).sum()) if s.shape == ref.shape else -1
        checks.append(check_line(label, eq, f"{n_eq}/{ref.numel()} tokens equal"))

    ref = seqs["raw hooks"]
    for k, s in seqs.items():
        if k != "raw hooks":
            extra = " (informational: TL's own kv-cache generate)" if k == "TL" else ""
            same_tokens(f"steered generation (every forward's last token): {k} tokens == raw-hook tokens{extra}", s, ref)
    n_changed = int((plain != ref).sum())
    checks.append(check_line("steering changes the generation (not a no-op)", n_changed > 0,
                             f"{n_changed}/{ref.numel()} tokens differ from the un-steered greedy output"))
    ref_new = raw_gen(True)[:, P:].cpu()
    same_tokens("Steer(apply_to='new'): ours tokens == raw hooks steering decode steps only",
                ours_gen("new")[:, P:].cpu(), ref_new)
    n_changed = int((plain != ref_new).sum())
    checks.append(check_line("raw 'new'-only steering changes the generation", n_changed > 0,
                             f"{n_changed}/{ref_new.numel()} tokens differ from un-steered"))
    for c in checks:
        log(c)

    log(f"latency forward: {len(F)} variants × {args.reps_fwd} reps")
    tf = measure(F, reps=args.reps_fwd, warmup=3, device=device, seed=2)
    log(f"latency generation: {len(G)} variants × {args.reps_gen} reps")
    tg = measure(G, reps=args.reps_gen, warmup=1, device=device, seed=3)
    rows_f = summarize(tf, "HF forward, un-hooked (baseline)", device)
    rows_g = summarize(tg, GEN_BASE, device)
    tf, tg = primary(tf, device), primary(tg, device)
    med = {n: statistics.median(ts) for n, ts in {**tf, **tg}.items()}
    ours_c, raw_c = "ours: run + Cache('resid_post.*', device='cpu')", "raw torch hooks: 4 block outputs → CPU"
    ours_s, raw_s = "ours: run + Steer('resid_post.2', last)", "raw torch hooks: steer resid_post.2 at last"
    series = lambda a: tf[a] if a in tf else tg[a]
    paired = lambda a, b: statistics.median([x / y for x, y in zip(series(a), series(b))])
    pdiff = lambda a, b: statistics.median([x - y for x, y in zip(series(a), series(b))]) * 1e6
    summary = {
        "fwd_base": med["HF forward, un-hooked (baseline)"],
        "ours_cache_minus_base_us": (med[ours_c] - med["HF forward, un-hooked (baseline)"]) * 1e6,
        "ours_cache_minus_raw_us": (med[ours_c] - med[raw_c]) * 1e6,
        "ours_cache_over_raw": paired(ours_c, raw_c),
        "ours_cache_over_raw_ci": ratio_ci(series(ours_c), series(raw_c)),
        "nn_over_ours_gen_ci": ratio_ci(series(GEN_NN), series(GEN_OURS)),
        "nn_gen_over_base_ci": ratio_ci(series(GEN_NN), series(GEN_BASE)),
        "ours_cache_minus_base_paired_us": pdiff(ours_c, "HF forward, un-hooked (baseline)"),
        "ours_cache_minus_raw_paired_us": pdiff(ours_c, raw_c),
        "ours_noiv_minus_base_paired_us": pdiff("ours: run, no interventions", "HF forward, un-hooked (baseline)"),
        "ours_noiv_minus_base_us": (med["ours: run, no interventions"] - med["HF forward, un-hooked (baseline)"]) * 1e6,
        "ours_steer_minus_raw_us": (med[ours_s] - med[raw_s]) * 1e6,
        "ours_steer_over_raw": paired(ours_s, raw_s),
        "wrapped_minus_base_us": (med["HF forward, wrapped model (interp_sdpa), no hooks"]
                                  - med["HF forward, un-hooked (baseline)"]) * 1e6,
        "nn_over_ours_gen": paired(GEN_NN, GEN_OURS),
        "ours_gen_over_raw": paired(GEN_OURS, GEN_RAW),
        "ours_gen_minus_raw_per_token_us": (med[GEN_OURS] - med[GEN_RAW]) / n_new * 1e6,
        "ours_gen_minus_base_per_token_us": (med[GEN_OURS] - med[GEN_BASE]) / n_new * 1e6,
        "nn_gen_minus_base_per_token_us": (med[GEN_NN] - med[GEN_BASE]) / n_new * 1e6,
        "nn_over_ours_trace": paired("nnsight trace: save 4 block outputs", ours_c),
    }
    count_variants = {
        "HF forward, un-hooked": (F["HF forward, un-hooked (baseline)"], 1),
        "raw torch hooks: 4 block outputs → CPU": (F["raw torch hooks: 4 block outputs → CPU"], 1),
        "HF forward, wrapped model (interp_sdpa), no hooks": (F["HF forward, wrapped model (interp_sdpa), no hooks"], 1),
        "ours: run, no interventions": (F["ours: run, no interventions"], 1),
        "ours: run + Cache('resid_post.*')": (F[ours_c], 1),
        "ours: run + Steer('resid_post.2', last)": (F[ours_s], 1),
        "HF generate, un-hooked (per forward step)": (hf_gen, n_new),
        "raw hooks + HF generate (per forward step)": (raw_gen, n_new),
        "ours: generate + Steer, apply_to='all' (per forward step)": (ours_gen, n_new),
    }
    state = dict(hm=hm, inputs=inputs, v=v, hf=hf, scale=scale, L=L_steer, ids=ids, n_new=n_new,
                 count_variants=count_variants)
    return rows_f, rows_g, summary, checks, state


# ---------------------------------------------------------------------------------------------
# profiling


def profile_ours(state, n: int, log) -> str:
    """cProfile many small forwards / generations of ours; per-call µs by function (hooks/ only + totals)."""
    import cProfile
    import pstats

    hm, inputs, v = state["hm"], state["inputs"], state["v"]
    repo = str(Path(hooks.__file__).resolve().parent)
    jobs = {
        "run + Cache('resid_post.*')": (lambda: hm.run(inputs, [Cache("resid_post.*", device="cpu")]), n),
        "run, no interventions": (lambda: hm.run(inputs, []), n),
        "generate + Steer (32 new tokens)": (lambda: hm.generate(inputs, [Steer(f"resid_post.{state['L']}", vector=v,
                                                                                 scale=state["scale"], positions="last",
                                                                                 apply_to="all")],
                                                                  max_new_tokens=state["n_new"]), max(n // 20, 5)),
    }
    out = []
    for title, (fn, calls) in jobs.items():
        for _ in range(3):
            fn()
        pr = cProfile.Profile()
        pr.enable()
        for _ in range(calls):
            fn()
        pr.disable()
        st = pstats.Stats(pr)
        rows = []
        for (file, line, func), (cc, nc, tt, ct, callers) in st.stats.items():
            if file.startswith(repo):
                rel = "hooks/" + os.path.relpath(file, repo)
                rows.append((ct / calls * 1e6, tt / calls * 1e6, nc / calls, f"{rel}:{line}:{func}"))
        rows.sort(reverse=True)
        total = st.total_tt / calls * 1e6
        out.append(f"**cProfile: ours {title}** — {calls} calls, {total:.0f} µs/call under the profiler "
                   "(profiling inflates Python-heavy code; compare rows with each other)\n")
        out.append("| function (hooks/) | cumulative µs/call | own µs/call | calls/call |")
        out.append("|---|---:|---:|---:|")
        for ct, tt, nc, name in rows[:22]:
            out.append(f"| {name} | {ct:.1f} | {tt:.1f} | {nc:.1f} |")
        out.append("")
    text = "\n".join(out)
    log(text)
    return text


def op_counts(state, variants: dict, log) -> str:
    """Torch calls per call (counted with a TorchFunctionMode: machine-independent, unaffected by load),
    and for ours the hooks/ call sites issuing them."""
    from collections import Counter

    from torch.overrides import TorchFunctionMode

    repo = str(Path(hooks.__file__).resolve().parent)
    torch_dir = str(Path(torch.__file__).resolve().parent)

    class Count(TorchFunctionMode):
        def __init__(self):
            super().__init__()
            self.n = 0
            self.sites = Counter()

        def __torch_function__(self, func, types, args=(), kwargs=None):
            self.n += 1
            f = sys._getframe(1)
            while f is not None and f.f_code.co_filename.startswith(torch_dir):
                f = f.f_back
            if f is not None and f.f_code.co_filename.startswith(repo):
                rel = "hooks/" + os.path.relpath(f.f_code.co_filename, repo)
                self.sites[f"{rel}:{f.f_code.co_name}"] += 1
            return func(*args, **(kwargs or {}))

    rows, site_rows = [], {}
    for name, (fn, per) in variants.items():
        fn()
        c = Count()
        with c:
            fn()
        rows.append((name, c.n / per, sum(c.sites.values()) / per))
        if c.sites:
            site_rows[name] = [(k, v / per) for k, v in c.sites.most_common(12)]
    out = ["**Torch calls per call** (TorchFunctionMode count of top-level torch functions, tensor methods and "
           "tensor attribute reads such as `.shape`; independent of machine load)", "", "| variant | torch calls | of which issued from hooks/ |", "|---|---:|---:|"]
    for name, n, nh in rows:
        out.append(f"| {name} | {n:.1f} | {nh:.1f} |")
    for name, sites in site_rows.items():
        out += ["", f"hooks/ call sites issuing torch calls — {name}:", ""]
        out.append("| call site | torch calls |")
        out.append("|---|---:|")
        out += [f"| {k} | {v:.1f} |" for k, v in sites]
    text = "\n".join(out)
    log(text)
    return text


def micro_components(state, reps: int, log) -> str:
    """Direct timings (no profiler) of the pieces of one ours call, interleaved, medians in µs."""
    hm, inputs = state["hm"], state["inputs"]
    from hooks import positions as Pm

    am_bool = inputs["attention_mask"].bool().cpu()  # the registry resolves positions on the CPU

    def enter_exit():
        with hm.trace():
            pass

    def install_cache():
        with hm.trace() as tr:
            tr.cache("resid_post.*", device="cpu")

    def resolve_last():
        c = Pm.BatchContext(attention_mask=am_bool)
        return Pm.window(Pm.resolve("last", c), c, "all")

    def resolve_all():
        c = Pm.BatchContext(attention_mask=am_bool)
        return Pm.window(Pm.resolve("all", c), c, "all")

    V = {
        "hm.prepare(inputs)": lambda: hm.prepare(inputs),
        "with hm.trace(): pass  (context pre-hook add/remove)": enter_exit,
        "trace + tr.cache('resid_post.*') install/remove, no forward": install_cache,
        "hm.resolve_sites('resid_post.*')": lambda: hm.resolve_sites("resid_post.*"),
        "Cache(...) dataclass construction": lambda: Cache("resid_post.*", device="cpu"),
        "positions: resolve+window 'all' (new ctx)": resolve_all,
        "positions: resolve+window 'last' (new ctx)": resolve_last,
        "BatchContext(...) construction": lambda: Pm.BatchContext(attention_mask=am_bool),
        "hm._set_context(model, (), inputs)": lambda: hm._set_context(hm.model, (), inputs),
        "register_forward_hook + remove (×1)": lambda: hm.model.transformer.h[0].register_forward_hook(
            lambda *a: None).remove(),
    }
    # attention dispatch: interp_sdpa wrapper vs the stock sdpa function, on this model's shapes
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from hooks import attention as A

    attn = hm.model.transformer.h[0].attn
    nh = hm.model.config.n_head
    dh = hm.model.config.n_embd // nh
    q = torch.randn(1, nh, inputs["input_ids"].shape[1], dh, device=hm.device)
    wrapped_fn = A._make("sdpa")
    V["stock sdpa_attention_forward (×1 layer)"] = lambda: sdpa_attention_forward(attn, q, q, q, None, is_causal=True)
    V["interp_sdpa wrapper → sdpa (×1 layer)"] = lambda: wrapped_fn(attn, q, q, q, None, is_causal=True)
    V["hooks.attention._base_fn('sdpa') lookup"] = lambda: A._base_fn("sdpa", attn)
    dev = hm.device
    tm = measure(V, reps=reps, warmup=5, device=dev, seed=4)
    out = [f"**Component timings of one ours call** (direct, no profiler; {'CPU' if dev.type == 'cpu' else 'wall'} "
           "time in µs over "
           f"{reps} interleaved reps; min ≈ cost on an idle core)", "", "| component | median µs | min µs |",
           "|---|---:|---:|"]
    for n, ts in primary(tm, dev).items():
        out.append(f"| {n} | {statistics.median(ts) * 1e6:.1f} | {min(ts) * 1e6:.1f} |")
    text = "\n".join(out)
    log(text)
    return text


# ---------------------------------------------------------------------------------------------


def machine_info(device) -> list:
    import transformers

    try:
        import transformer_lens

        tlv = getattr(transformer_lens, "__version__", None)
        if not tlv:
            from importlib.metadata import version

            tlv = version("transformer-lens")
    except Exception:  # noqa: BLE001
        tlv = "n/a"
    try:
        import nnsight

        nnv = nnsight.__version__
    except Exception:  # noqa: BLE001
        nnv = "n/a"
    if device.type == "cuda":
        dev = torch.cuda.get_device_name(device)
    else:
        dev = platform.processor() or platform.machine()
        try:
            for line in open("/proc/cpuinfo"):
                if line.startswith("model name"):
                    dev = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
    try:
        load = "%.1f %.1f %.1f" % os.getloadavg()
    except OSError:
        load = "n/a"
    import subprocess

    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "-C", str(root), "log", "-1", "--format=%h %cd", "--date=iso"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        hk = subprocess.run(["git", "-C", str(root), "log", "-1", "--format=%h %cd", "--date=iso", "--", "hooks"],
                            capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "hooks"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        rev = f"HEAD {head}; hooks/ last changed in {hk}{' (plus uncommitted changes in hooks/)' if dirty else ''}"
    except Exception:  # noqa: BLE001
        rev = "n/a"
    return [
        f"- code: {rev}",
        f"- device: {device} ({dev}); os.cpu_count() = {os.cpu_count()}; torch threads = {torch.get_num_threads()}",
        f"- torch {torch.__version__}, transformers {transformers.__version__}, transformer-lens {tlv}, "
        f"nnsight {nnv}, python {platform.python_version()}",
        f"- load average at start: {load}",
    ]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (2 / 15 / 3)")
    ap.add_argument("--only", choices=("all", "throughput", "latency"), default="all")
    ap.add_argument("--reps-throughput", type=int, default=5)
    ap.add_argument("--reps-fwd", type=int, default=60)
    ap.add_argument("--reps-gen", type=int, default=12)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's default)")
    ap.add_argument("--latency-threads", type=int, default=1,
                    help="torch threads for the latency regime on CPU (default 1: on a shared 2-core machine, "
                         "2 OpenMP threads turn every small op into a wait for a preempted core; 0 = as --threads)")
    ap.add_argument("--skip-tl", action="store_true")
    ap.add_argument("--profile", action="store_true", help="cProfile ours in the latency regime + component timings")
    ap.add_argument("--profile-calls", type=int, default=300)
    ap.add_argument("--out", default=None, help="also write the markdown report here")
    args = ap.parse_args(argv)
    if args.quick:
        args.reps_throughput, args.reps_fwd, args.reps_gen = 2, 15, 3
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    t_start = time.time()
    report = ["## Hook registry benchmark (`bench/bench_hooks.py`)", ""]
    report += machine_info(device)
    report.append(f"- command: `{' '.join(['python', 'bench/bench_hooks.py'] + (argv if argv is not None else sys.argv[1:]))}`")
    report.append("")
    for line in report:
        log(line)
    torch.set_grad_enabled(False)

    if args.only in ("all", "throughput"):
        log("== throughput regime ==")
        rows, checks = throughput(args, device, log)
        report += ["### Throughput: GPT-2-small size (12 layers, d=768, vocab 50257, random weights), batch 8×128", "",
                   f"{args.reps_throughput} interleaved repetitions. Target: ours ≤ 1.05× un-hooked.", ""]
        report.append(table(rows, "forward", "un-hooked", device))
        report += ["", "Summary and checks:", *checks, ""]

    summary = None
    if args.only in ("all", "latency"):
        log("== latency regime ==")
        n_thr = torch.get_num_threads()
        if device.type == "cpu" and args.latency_threads:
            torch.set_num_threads(args.latency_threads)
        lat_threads = torch.get_num_threads()
        rows_f, rows_g, summary, checks, state = latency(args, device, log)
        report += ["### Latency: small GPT-2 (4 layers, d=256, 4 heads, vocab 1024, random weights), batch 1×32", "",
                   f"torch threads in this regime: {lat_threads}. Forwards: {args.reps_fwd} interleaved repetitions. "
                   f"Generation: 32 new tokens, greedy, a steering vector ×{state['scale']} added to "
                   f"resid_post.{state['L']} at the last position of every forward (the prompt's last token, then "
                   f"each new token), the same in every library; {args.reps_gen} repetitions. The apply_to='new' "
                   "rows skip the prompt forward.", ""]
        report.append(table(rows_f, "single forward", "un-hooked forward", device))
        report.append("")
        report.append(table(rows_g, "32-token greedy generation", "un-hooked HF generate", device))
        s = summary
        ok1 = s["ours_cache_over_raw"] <= 1.05
        ok2 = s["nn_over_ours_gen"] >= 1.5
        report += [
            "",
            f"Per-call overhead on {'CPU' if device.type == 'cpu' else 'wall'} time (median − median; in brackets the median of per-repetition differences):",
            f"- ours Cache('resid_post.*') − un-hooked forward: **{s['ours_cache_minus_base_us']:.0f} µs** "
            f"[{s['ours_cache_minus_base_paired_us']:.0f} µs] (un-hooked forward {fmt_time(s['fwd_base'])})",
            f"- ours Cache('resid_post.*') − raw torch hooks: **{s['ours_cache_minus_raw_us']:.0f} µs** "
            f"[{s['ours_cache_minus_raw_paired_us']:.0f} µs]; "
            f"ratio ours/raw (median of per-rep ratios) **{s['ours_cache_over_raw']:.3f}** "
            f"(bootstrap 90% CI {s['ours_cache_over_raw_ci'][1]:.3f}–{s['ours_cache_over_raw_ci'][2]:.3f}) — "
            f"target ≤ 1.05: {'met' if ok1 else 'MISSED'}",
            f"- ours run with no interventions − un-hooked forward: {s['ours_noiv_minus_base_us']:.0f} µs "
            f"[{s['ours_noiv_minus_base_paired_us']:.0f} µs]; "
            f"wrapped model (interp_sdpa) without any hook − un-hooked: {s['wrapped_minus_base_us']:.0f} µs",
            f"- ours Steer − raw-hook steer (forward): {s['ours_steer_minus_raw_us']:.0f} µs "
            f"(ratio {s['ours_steer_over_raw']:.3f})",
            f"- steered generation: nnsight / ours = **{s['nn_over_ours_gen']:.2f}×** (90% CI "
            f"{s['nn_over_ours_gen_ci'][1]:.2f}–{s['nn_over_ours_gen_ci'][2]:.2f}) — target ≥ 1.5: "
            f"{'met' if ok2 else 'MISSED'}; nnsight / un-hooked HF generate = {s['nn_gen_over_base_ci'][0]:.2f}× "
            f"(90% CI {s['nn_gen_over_base_ci'][1]:.2f}–{s['nn_gen_over_base_ci'][2]:.2f}), the most any library could "
            f"gain over nnsight here; ours / raw hooks = {s['ours_gen_over_raw']:.3f} "
            f"({s['ours_gen_minus_raw_per_token_us']:.0f} µs per generated token over raw hooks; over un-hooked "
            f"generate: ours {s['ours_gen_minus_base_per_token_us']:.0f} µs/token, nnsight "
            f"{s['nn_gen_minus_base_per_token_us']:.0f} µs/token)",
            f"- cached forward: nnsight trace / ours = {s['nn_over_ours_trace']:.2f}×",
            "",
            "Checks:", *checks, "",
        ]
        if args.profile:
            report += ["### Where ours spends its per-call time (latency model, 1×32)", ""]
            report.append(op_counts(state, state["count_variants"], log))
            report.append("")
            report.append(micro_components(state, max(args.reps_fwd, 50), log))
            report.append("")
            report.append(profile_ours(state, args.profile_calls, log))
        torch.set_num_threads(n_thr)
    try:
        load = "%.1f %.1f %.1f" % os.getloadavg()
    except OSError:
        load = "n/a"
    report.append(f"_load average at end: {load}; wall time {time.time() - t_start:.0f} s_")
    text = "\n".join(report) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)
        log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
