"""Steering by patching the gate (Serra et al. 2025, Sec. 5).

Pairs of prompts with the same text and images of a *base* and a *target* class. The target
run gets the base run's activations at the gate token (``[EOI]`` — Emu3: its pair — or the last
image token in models without one). Base and target may have different lengths (Emu3 images
of different aspect ratios give different numbers of image tokens): gate positions are
matched by order within each row, not by absolute position:

``mode="resid"``       the residual entering layer ``L`` (``resid_pre.L``) at the gate, one layer;
``mode="attn_input"``  the input of every attention block from layer ``L`` on at the gate
                       (what later tokens read from it), the residual stream left alone.

Reported per layer: the fraction of pairs whose sign of ``logit(target) − logit(base)`` (first
answer token, last prompt position) flips, and the overlap ``Σ_v min(p_patched(v), p_base(v))``
of the patched next-token distribution with the base run's (1 = identical)::

    res = patch_gate(hm, pairs, layers=[8, 16, 24])       # pairs: [(base_example, target_example)]
    res.summary                                          # DataFrame: layer × {flip_rate, overlap, ...}
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import NarrowGateError, TaskError

MODES = ("resid", "attn_input")


@dataclass
class PatchResult:
    summary: object  # DataFrame indexed by layer
    pairs: object  # DataFrame, one row per (layer, pair)
    mode: str

    def save(self, out) -> list:
        from . import report

        out = Path(out)
        return [report.write_frame(self.summary, out / f"patch_{self.mode}.csv"),
                report.write_frame(self.pairs, out / f"patch_{self.mode}_pairs.csv", index=False),
                report.plot_patch(self, out / f"patch_{self.mode}.png")]


def _answer(e: dict) -> str:
    a = e.get("answer", e.get("label_name"))
    if a is None:
        raise TaskError("Patching pairs need 'label_name' (or 'answer') on both examples.")
    return a


def attention_input_sites(hm, layers) -> list:
    """Raw ``<attention module>:input`` sites of ``layers`` (the hidden state the block attends from)."""
    out = []
    for L in layers:
        b = hm.resolve_sites([f"attn_pattern.{L}"])[0]
        path = next((n for n, m in hm.model.named_modules() if m is b.module), None)
        if path is None:
            raise NarrowGateError(f"Cannot find the attention module of layer {L}.")
        out.append(f"{path}:input")
    return out


@torch.no_grad()
def patch_gate(hm, pairs: list, *, layers=None, mode: str = "resid", batch_size: int = 8, task: str = "classify",
               template=None):
    """Patch the base run's gate activations into the target run (see the module docstring)."""
    import hooks
    import pandas as pd

    from .ablations import layer_window
    from .layout import image_layout
    from .tasks import build_prompt, candidate_ids, encode

    if mode not in MODES:
        raise NarrowGateError(f"Unknown patch mode {mode!r}; use one of {MODES}.")
    if not pairs:
        raise NarrowGateError("No pairs to patch; build (base, target) example pairs with different classes.")
    layers = layer_window(hm.n_layers, layers=layers)
    rows = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        base = encode(hm, [p[0] for p in chunk], task, template)
        tgt = encode(hm, [p[1] for p in chunk], task, template)
        lb, lt = image_layout(hm, base), image_layout(hm, tgt)
        # base and target may differ in length (Emu3 images of different aspect ratios): the k-th
        # gate position of each target row receives the k-th gate position of its base row
        if not torch.equal(lb.gate.sum(1).cpu(), lt.gate.sum(1).cpu()):
            raise NarrowGateError("Base and target prompts have gates of different sizes; pair models' prompts "
                                  "of the same family.")
        prompt = build_prompt(hm, chunk[0][1], task, template)
        ids_b = [candidate_ids(hm, prompt, [_answer(p[0])])[0][0] for p in chunk]
        ids_t = [candidate_ids(hm, prompt, [_answer(p[1])])[0][0] for p in chunk]
        ar = torch.arange(len(chunk))
        p_base = hm.run(base).logits[:, -1].float().softmax(-1)
        clean = hm.run(tgt).logits[:, -1].float()
        d_clean = clean[ar, ids_t] - clean[ar, ids_b]
        p_clean = clean.softmax(-1)
        for L in layers:
            if mode == "resid":
                sites = [f"resid_pre.{L}"]
            else:
                sites = attention_input_sites(hm, range(L, hm.n_layers))
            iv = hooks.Patch(sites, positions=lt.gate, source=base, source_positions=lb.gate)
            lg = hm.run(tgt, [iv]).logits[:, -1].float()
            d = lg[ar, ids_t] - lg[ar, ids_b]
            p = lg.softmax(-1)
            ov = torch.minimum(p, p_base).sum(-1)
            ov0 = torch.minimum(p_clean, p_base).sum(-1)
            for b in range(len(chunk)):
                rows.append({"layer": L, "pair": start + b, "base": _answer(chunk[b][0]), "target": _answer(chunk[b][1]),
                             "diff_clean": float(d_clean[b]), "diff_patched": float(d[b]),
                             "flipped": bool((d_clean[b] > 0) != (d[b] > 0)), "clean_correct": bool(d_clean[b] > 0),
                             "overlap": float(ov[b]), "overlap_clean": float(ov0[b])})
    df = pd.DataFrame(rows)
    g = df.groupby("layer")
    summary = pd.DataFrame({
        "flip_rate": g["flipped"].mean(),
        "flip_rate_clean_correct": df[df.clean_correct].groupby("layer")["flipped"].mean(),
        "overlap": g["overlap"].mean(),
        "overlap_clean": g["overlap_clean"].mean(),
        "n_pairs": g.size(),
    })
    return PatchResult(summary, df, mode)


def make_pairs(examples: list, n: int, seed: int = 0) -> list:
    """``n`` (base, target) pairs of examples with different labels (for real datasets)."""
    import random

    by = {}
    for e in examples:
        by.setdefault(_answer(e), []).append(e)
    if len(by) < 2:
        raise NarrowGateError("Patching needs examples of at least two classes ('label_name').")
    rng = random.Random(seed)
    labels = sorted(by)
    out = []
    for _ in range(n):
        a, b = rng.sample(labels, 2)
        out.append((rng.choice(by[a]), rng.choice(by[b])))
    return out
