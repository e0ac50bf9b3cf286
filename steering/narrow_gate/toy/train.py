"""Seeded training of the two toy models (``interp toy train-gate-models``).

Both are tiny Chameleon models (:func:`.world.toy_config`) trained with AdamW on fresh toy
examples (:mod:`.world`), the loss on the answer and ``</s>`` only. The training runs
through the hook registry, with the same spans and interventions the analyses use:

* ``gated``: for the first half of training the text→image-side edges other than ``[EOI]``
  are blocked (``Knockout(mode="mask")``), so the model learns to pool the image into
  ``[EOI]`` and to read it there; then it trains with plain causal attention plus a penalty
  ``λ · attention mass`` that text queries put on those keys (read at ``attn_pattern.L`` with
  gradients), so it learns to keep away from the image tokens by itself. At inference
  nothing is masked, as in a native model.
* ``free``: plain causal attention; in half of the rows of every batch the text→``[EOI]``
  edges are knocked out (``Knockout(mode="mask")``), so the text learns to read the image
  tokens directly instead of relying on one token.
* ``register``: as ``gated``, but the prompts carry ``<reg>`` before ``<eoss>`` and the gate is
  ``<reg>``: the blocked keys are every position from ``<racm3:break>`` to ``<eoss>`` except
  ``<reg>``, read from the token ids (not from the layout the analyses use), so the analyses
  have to discover the gate.

    models = train_gate_models("steering/narrow_gate/toy_models", seed=0)   # ~2-3 min per model on 2 CPU cores

Reproducible: the same seed, steps and torch version give the same weights (deterministic
CPU kernels, one thread while training).
"""
from __future__ import annotations

import json
import random
import time
from pathlib import Path

import torch

from . import world as W

DEFAULTS = dict(steps=600, batch_size=64, lr=3e-3, penalty=4.0, mask_fraction=0.5, eoi_dropout=0.5, hidden_size=48,
                layers=4, heads=4)


def _batch(rng: random.Random, n: int, register: bool = False):
    """Token ids of ``n`` fresh examples followed by their answer and ``</s>`` (all the same length)."""
    v = W.VOCAB
    rows = []
    for _ in range(n):
        q = rng.choice(("class", "color"))
        e = W.example(rng, q, rng.randrange(len(W.CLASSES)), rng.randrange(len(W.COLORS)))
        rows.append(W.prompt_ids(e["codes"], q, register) + [v[e["answer"]], v["</s>"]])
    ids = torch.tensor(rows)
    labels = torch.full_like(ids, -100)
    labels[:, -2:] = ids[:, -2:]
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, labels


def register_keys(ids: torch.Tensor) -> torch.Tensor:
    """``(B, P)`` keys the register variant blocks: ``<racm3:break>`` … ``<eoss>`` except ``<reg>`` (from ids only)."""
    v = W.VOCAB
    opened = (ids == v[W.BOI]).long().cumsum(1) - (ids == v[W.EOI]).long().cumsum(1)
    block = (opened > 0) | (ids == v[W.EOI])
    return block & (ids != v[W.REG])


def train_gate_model(kind: str, *, seed: int = 0, log=print, progress=False, **overrides):
    """Train one toy model; returns ``(HookedModel, stats)``. ``kind``: ``"gated"``, ``"free"``, ``"register"``,
    or the LLaVA-layout ``"llava_gated"`` (:mod:`.llava_world`; the gated recipe on a LLaVA). ``progress``:
    show the steps, their rate, the time left and the loss (:mod:`hooks.progress`), or a rich Console to draw on."""
    import hooks
    from hooks.progress import progress as progress_display
    from transformers import ChameleonForConditionalGeneration, LlavaForConditionalGeneration

    from ..errors import NarrowGateError
    from ..layout import image_layout
    from . import llava_world as LW

    if kind not in W.MODEL_KINDS + W.VARIANT_KINDS:
        raise NarrowGateError(f"Unknown toy model kind {kind!r}; use one of {W.MODEL_KINDS}.")
    unknown = set(overrides) - set(DEFAULTS)
    if unknown:
        raise NarrowGateError(f"Unknown training option(s) {sorted(unknown)}; valid: {sorted(DEFAULTS)}.")
    cfg = {**DEFAULTS, **overrides}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    try:
        tok = W.make_tokenizer()
        llava = kind.startswith("llava_")
        size = dict(hidden_size=cfg["hidden_size"], layers=cfg["layers"], heads=cfg["heads"])
        if llava:
            model = LlavaForConditionalGeneration(LW.llava_config(**size))
        else:
            model = ChameleonForConditionalGeneration(W.toy_config(**size))
        hm = hooks.wrap(model, tok)
        model.train()
        params = [p for n, p in model.named_parameters() if "vqmodel" not in n]
        opt = torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=0.01, betas=(0.9, 0.98))
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg["lr"], total_steps=cfg["steps"], pct_start=0.1)
        rng = random.Random(seed)
        mrng = torch.Generator().manual_seed(seed)
        t0, hist = time.time(), []
        bar = progress_display(f"training toy {kind}", cfg["steps"], unit="steps", enabled=bool(progress),
                               console=None if isinstance(progress, bool) else progress)
        with bar:
            for step in range(cfg["steps"]):
                if llava:
                    inputs, labels = LW.batch(rng, cfg["batch_size"])
                else:
                    inputs, labels = _batch(rng, cfg["batch_size"], register=kind == "register")
                ivs, pen = [], None
                if kind in ("gated", "register", "llava_gated"):
                    if kind == "register":
                        keys = register_keys(inputs["input_ids"])
                    else:
                        lay = image_layout(hm, inputs)
                        keys = lay.side & ~lay.gate
                    ivs.append(hooks.Cache("attn_pattern.*", positions="text", layout="flat", device=None))
                    if step < cfg["mask_fraction"] * cfg["steps"]:  # phase 1: the only way to the image is [EOI]
                        ivs.append(hooks.Knockout("all", queries="text", keys=keys, mode="mask"))
                else:
                    lay = image_layout(hm, inputs)
                    drop = torch.rand(labels.shape[0], generator=mrng) < cfg["eoi_dropout"]
                    ivs.append(hooks.Knockout("all", queries="text", keys=lay.gate & drop[:, None], mode="mask"))
                with hm.trace(inputs, grad=True) as tr:
                    caches = [tr.add(iv) for iv in ivs]
                logits = tr.logits[:, :-1].float()
                loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1))
                total = loss
                if kind in ("gated", "register", "llava_gated"):
                    c = caches[0]
                    m = c.masks["attn_pattern.0"]  # (B, P) text queries, same for every layer
                    rows = torch.arange(m.shape[0]).repeat_interleave(m.sum(1))
                    km = keys[rows][:, None, :].float()  # (N, 1, K)
                    mass = torch.stack([(c[k] * km).sum(-1).mean() for k in c])  # per layer
                    pen = mass.sum()
                    total = loss + cfg["penalty"] * pen
                opt.zero_grad()
                total.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                sched.step()
                bar.advance(1, loss=round(loss.item(), 4))
                if step % 100 == 0 or step == cfg["steps"] - 1:
                    row = {"step": step, "loss": round(loss.item(), 4), "seconds": round(time.time() - t0, 1)}
                    if pen is not None:
                        row["side_mass"] = round(pen.item(), 5)
                    hist.append(row)
                    log(f"{kind}: " + "  ".join(f"{k} {v}" for k, v in row.items()))
        model.eval()
    finally:
        torch.set_num_threads(threads)
    stats = {"kind": kind, "seed": seed, **cfg, "history": hist, "torch": torch.__version__}
    return hm, stats


def save_toy_model(hm, stats: dict, path) -> Path:
    """Save weights (float16 safetensors), config, tokenizer and ``train_stats.json`` atomically."""
    from hooks.loading import save_pretrained_atomic

    path = Path(path)
    model = hm.model
    model.to(torch.float16)
    try:
        save_pretrained_atomic(model, hm.tokenizer, path)
    finally:
        model.to(torch.float32)
    from hooks.io import write_text_atomic

    write_text_atomic(path / "train_stats.json", json.dumps(stats, indent=1) + "\n")
    return path


def train_gate_models(out=W.TOY_MODEL_DIR, *, seed: int = 0, kinds=W.MODEL_KINDS, log=print, progress=False,
                      **overrides) -> dict:
    """Train and save both toy models under ``out/gated`` and ``out/free``; returns their stats."""
    out = Path(out)
    res = {}
    for i, kind in enumerate(kinds):
        hm, stats = train_gate_model(kind, seed=seed + i, log=log, progress=progress, **overrides)
        save_toy_model(hm, stats, out / kind)
        log(f"{kind}: saved to {(out / kind).resolve()}")
        res[kind] = stats
    return res
