"""Attribution patching: every cell of a sweep from one forward and one backward.

    from interp.patching import attribution_patching, activation_patching, agreement
    atp = attribution_patching(model, clean, corrupt, sites="head_out", by="layer,head",
                               answers=ans, distractors=dis)
    agreement(activation_patching(...same...), atp)   # {"pearson", "spearman", "top_k_overlap", ...}

The effect of patching cell ``c`` is approximated to first order around the base run:
``(a_source - a_base)[c] · dM/da[c]`` (Nanda 2023, "Attribution Patching: Activation
Patching At Industrial Scale", neelnanda.io/attribution-patching; code in the
TransformerLens demo ``demos/Attribution_Patching_Demo.ipynb``: ``attr = (clean_act -
corrupted_act) * corrupted_grad`` summed over ``d_head``/``d_model``). ``M`` is the metric
summed over examples, so each example keeps its own gradient; effects are then averaged
over examples like :func:`~interp.patching.activation_patching`. The gradient is the total
derivative (through every later layer), so on a model whose metric is linear in the patched
activation the estimate equals real patching exactly.

Not implemented: AtP* (Kramár et al. 2024, arXiv:2403.00745) corrects two failure modes,
attention saturation of *query/key* nodes (QK fix) and cancellation through later layers
(GradDrop). Our sweep sites are head outputs and residual/attention/MLP outputs, where the
QK fix does not apply; GradDrop is not implemented.
"""
from __future__ import annotations

import math

import torch

from hooks import Edit

from .common import Pairs, flat_cache, parse_by, prepare_pairs
from .sweep import effect_of, effects_frame, variants


def attribution_patching(model, clean, corrupt, *, sites="attn_out", by="layer,position", metric="logit_diff",
                         answers=None, distractors=None, direction: str = "denoising", normalize: bool = False):
    """The same table as :func:`~interp.patching.activation_patching`, by attribution."""
    pairs = prepare_pairs(model, clean, corrupt, sites=sites, metric=metric, answers=answers,
                          distractors=distractors, direction=direction)
    return attribute(pairs, by, normalize=normalize)


def _capture(store, site):
    def fn(acts):
        a = acts * 1  # a node of the graph that every later computation reads
        store[site] = a
        return a

    return fn


def attribute(pairs: Pairs, by="layer,position", *, normalize: bool = False):
    keys = parse_by(by)
    model, B = pairs.model, pairs.n
    src = flat_cache(model, pairs.source, pairs.sites)
    acts: dict = {}
    edits = [Edit(s, "all", fn=_capture(acts, s)) for s in pairs.sites]
    res = model.run(pairs.base, edits, grad=True)
    total = pairs.metric(res.logits, pairs.batch).nansum()
    grads = torch.autograd.grad(total, [acts[s] for s in pairs.sites])
    am = pairs.base["attention_mask"].bool().cpu()
    row_of = am.nonzero()[:, 0]  # example of each flat token
    rank = pairs.rank[am]
    shapes = {s: tuple(v.shape[1:]) for s, v in src.items()}
    contrib = {}
    for s, g in zip(pairs.sites, grads):
        c = (src[s].to(g.dtype) - acts[s].detach()) * g
        c = c.flatten(2).sum(-1) if len(shapes[s]) == 2 else c.flatten(1).sum(-1)[:, None]  # (N, H|1)
        contrib[s] = c.detach().float().cpu()
    cells = variants(pairs, keys, shapes)
    effects = []
    for s, _, h, p in cells:
        c = contrib[s] if h is None else contrib[s][:, h : h + 1]
        c = c.sum(1)
        sel = torch.ones_like(rank, dtype=torch.bool) if p is None else rank == p
        per_ex = torch.zeros(B).index_add_(0, row_of[sel], c[sel])
        present = torch.zeros(B, dtype=torch.bool)
        present[row_of[sel]] = True
        effects.append(effect_of(pairs.rows["base"] + per_ex, pairs.rows, present, normalize))
    return effects_frame(cells, effects, pairs, keys, normalize, forwards=1, backwards=1, method="attribution")


def agreement(real, approx, k: int = 3) -> dict:
    """How well ``approx`` (attribution) reproduces ``real`` (activation patching) on the same cells:
    Pearson and Spearman correlation of the effects, and the overlap of the top-``k`` cells by |effect|."""
    import numpy as np

    cols = ["site", "layer", "head", "position"]
    m = real.merge(approx, on=cols, suffixes=("_real", "_approx"))
    if len(m) != len(real):
        raise ValueError(f"The tables cover different cells ({len(real)} vs {len(approx)}; {len(m)} shared).")
    a, b = m["effect_real"].to_numpy(float), m["effect_approx"].to_numpy(float)
    top = lambda v: set(np.argsort(-np.abs(v))[:k].tolist())  # noqa: E731
    rank = lambda v: np.argsort(np.argsort(v)).astype(float)  # noqa: E731
    corr = lambda x, y: float(np.corrcoef(x, y)[0, 1]) if len(x) > 1 and x.std() > 0 and y.std() > 0 else math.nan  # noqa: E731
    return {"cells": len(m), "pearson": corr(a, b), "spearman": corr(rank(a), rank(b)),
            "top_k": k, "top_k_overlap": len(top(a) & top(b)) / min(k, len(m)),
            "max_abs_diff": float(np.max(np.abs(a - b)))}
