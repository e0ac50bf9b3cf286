"""Attribution patching: every cell of a sweep from one forward and one backward.

    from interp.patching import attribution_patching, activation_patching, agreement
    atp = attribution_patching(model, clean, corrupt, sites="head_out", by="layer,head",
                               answers=ans, distractors=dis)                 # method="atp"
    gd = attribution_patching(..., method="graddrop")                         # AtP + GradDrop
    agreement(activation_patching(...same...), atp)   # {"pearson", "spearman", "top_k_overlap", ...}

**AtP** (default). The effect of patching cell ``c`` is approximated to first order around the
base run: ``(a_source - a_base)[c] · dM/da[c]`` (Nanda 2023, "Attribution Patching: Activation
Patching At Industrial Scale", neelnanda.io/attribution-patching; code in the TransformerLens
demo ``demos/Attribution_Patching_Demo.ipynb``: ``attr = (clean_act - corrupted_act) *
corrupted_grad`` summed over ``d_head``/``d_model``). ``M`` is the metric summed over
examples, so each example keeps its own gradient; effects are then averaged over examples
like :func:`~interp.patching.activation_patching`. The gradient is the total derivative
(through every later layer), so on a model whose metric is linear in the patched activation
the estimate equals real patching exactly.

**GradDrop** (``method="graddrop"``, alias ``"atp*"``): the AtP* fix for *cancellation*
(Kramár, Lieberum, Shah & Nanda 2024, "AtP*: An efficient and scalable method for localizing
LLM behaviour to components", arXiv:2403.00745, §3.1.2 "Cancellation" / GradDrop). When a
node's direct effect and its indirect effect through later layers cancel in the gradient,
AtP reports ~0 although real patching does not cancel (the later layers are not linear).
GradDrop runs ``L`` backward passes; in pass ``ℓ`` the gradient through layer ``ℓ``'s
contribution to the residual stream (here its ``attn_out.ℓ`` and ``mlp_out.ℓ`` sites) is set
to zero while the forward pass is unchanged, giving ``AtP+GD_ℓ(n)``; the estimate is

    GradDrop(n) = 1/(L-1) · Σ_ℓ |AtP+GD_ℓ(n)|

per clean/corrupt pair, then averaged over pairs (the ``L-1``: the pass that drops ``n``'s own
layer gives 0 for nodes inside that layer's contribution). It is an *unsigned* magnitude for
ranking nodes (``df.attrs["signed"] = False``; :func:`agreement` then compares it with
``|effect|``), so ``normalize=True`` is refused. Cost: one forward and ``L + 1`` backward
passes through the retained graph. The authors released no code; the definition follows the
paper's text.

Not implemented: the AtP* **QK fix** (recompute the attention softmax exactly when a query or
key node is patched, instead of linearising it). Our sweep nodes are head outputs, residual,
attention- and MLP-output sites and attention patterns, never query/key vectors, so it does
not apply; for ``attn_pattern`` sites the pattern difference is already taken from the two
real runs.
"""
from __future__ import annotations

import math
import re

import torch

from hooks import Edit
from hooks.errors import SpecError

from .common import Pairs, flat_cache, parse_by, prepare_pairs
from .sweep import effect_of, effects_frame, variants

METHODS = {"atp": "atp", "attribution": "atp", "graddrop": "graddrop", "atp*": "graddrop", "atp+graddrop": "graddrop"}


def attribution_patching(model, clean, corrupt, *, sites="attn_out", by="layer,position", metric="logit_diff",
                         answers=None, distractors=None, direction: str = "denoising", normalize: bool = False,
                         method: str = "atp"):
    """The same table as :func:`~interp.patching.activation_patching`, by attribution
    (``method="atp"``, signed) or AtP with GradDrop (``method="graddrop"``, unsigned)."""
    method = _method(method, normalize)
    pairs = prepare_pairs(model, clean, corrupt, sites=sites, metric=metric, answers=answers,
                          distractors=distractors, direction=direction)
    return attribute(pairs, by, normalize=normalize, method=method)


def _method(method: str, normalize: bool) -> str:
    m = METHODS.get(str(method).lower())
    if m is None:
        raise SpecError(f"Attribution method must be 'atp' (Nanda 2023) or 'graddrop' (AtP* GradDrop, "
                        f"Kramár et al. 2024; alias 'atp*'), got {method!r}.")
    if m == "graddrop" and normalize:
        raise SpecError("GradDrop scores are unsigned magnitudes: normalize=True is not defined for them "
                        "(use method='atp' or drop normalize).")
    return m


def _capture(store, site):
    def fn(acts):
        a = acts * 1  # a node of the graph that every later computation reads
        store[site] = a
        return a

    return fn


def _gate(state, layer):
    """An Edit function whose backward is zero while ``state["drop"] == layer`` (forward unchanged)."""
    def fn(acts):
        a = acts * 1
        a.register_hook(lambda g: torch.zeros_like(g) if state["drop"] == layer else None)
        return a

    return fn


def residual_writers(model) -> dict:
    """``{layer: [attn_out.L, mlp_out.L]}``: the sites through which a layer writes to the residual stream."""
    out: dict = {}
    for name in model.site_names:
        m = re.fullmatch(r"(attn_out|mlp_out)\.(\d+)", name)
        if m:
            out.setdefault(int(m.group(2)), []).append(name)
    return dict(sorted(out.items()))


def attribute(pairs: Pairs, by="layer,position", *, normalize: bool = False, method: str = "atp"):
    method = _method(method, normalize)
    keys = parse_by(by)
    model, B = pairs.model, pairs.n
    src = flat_cache(model, pairs.source, pairs.sites)
    acts: dict = {}
    edits = [Edit(s, "all", fn=_capture(acts, s)) for s in pairs.sites]
    state = {"drop": None}
    writers = residual_writers(model) if method == "graddrop" else {}
    if method == "graddrop":
        if len(writers) < 2:
            raise SpecError(f"GradDrop needs at least two layers with attn_out/mlp_out sites; this model has "
                            f"{len(writers)}. Use method='atp'.")
        edits += [Edit(s, "all", fn=_gate(state, L)) for L, names in writers.items() for s in names]
    res = model.run(pairs.base, edits, grad=True)
    total = pairs.metric(res.logits, pairs.batch).nansum()
    nodes = [acts[s] for s in pairs.sites]
    am = pairs.base["attention_mask"].bool().cpu()
    row_of = am.nonzero()[:, 0]  # example of each flat token
    rank = pairs.rank[am]
    shapes = {s: tuple(v.shape[1:]) for s, v in src.items()}
    cells = variants(pairs, keys, shapes)

    def per_example(grads) -> list:
        """``(B,)`` first-order estimate of every cell, and whether the example has the cell's position."""
        contrib = {}
        for s, g in zip(pairs.sites, grads):
            c = (src[s].to(g.dtype) - acts[s].detach()) * g
            c = c.flatten(2).sum(-1) if len(shapes[s]) == 2 else c.flatten(1).sum(-1)[:, None]  # (N, H|1)
            contrib[s] = c.detach().float().cpu()
        out = []
        for s, _, h, p in cells:
            c = (contrib[s] if h is None else contrib[s][:, h : h + 1]).sum(1)
            sel = torch.ones_like(rank, dtype=torch.bool) if p is None else rank == p
            present = torch.zeros(B, dtype=torch.bool)
            present[row_of[sel]] = True
            out.append((torch.zeros(B).index_add_(0, row_of[sel], c[sel]), present))
        return out

    if method == "atp":
        est = per_example(torch.autograd.grad(total, nodes))
        effects = [effect_of(pairs.rows["base"] + e, pairs.rows, present, normalize) for e, present in est]
        return effects_frame(cells, effects, pairs, keys, normalize, forwards=1, backwards=1, method="attribution")
    score = [torch.zeros(B) for _ in cells]
    present = None
    for L in writers:
        state["drop"] = L
        est = per_example(torch.autograd.grad(total, nodes, retain_graph=True))
        for i, (e, pr) in enumerate(est):
            score[i] += e.abs()
        present = [pr for _, pr in est]
    state["drop"] = None
    effects = [float((sc[pr] / (len(writers) - 1)).nanmean()) if bool(pr.any()) else math.nan
               for sc, pr in zip(score, present)]
    return effects_frame(cells, effects, pairs, keys, normalize, forwards=1, backwards=len(writers),
                         method="attribution+graddrop", signed=False, graddrop_layers=len(writers))


def agreement(real, approx, k: int = 3) -> dict:
    """How well ``approx`` (attribution) reproduces ``real`` (activation patching) on the same cells:
    Pearson and Spearman correlation of the effects, and the overlap of the top-``k`` cells by |effect|.
    An unsigned ``approx`` (GradDrop, ``approx.attrs["signed"] is False``) is compared with ``|real|``."""
    import numpy as np

    cols = ["site", "layer", "head", "position"]
    m = real.merge(approx, on=cols, suffixes=("_real", "_approx"))
    if len(m) != len(real):
        raise ValueError(f"The tables cover different cells ({len(real)} vs {len(approx)}; {len(m)} shared).")
    a, b = m["effect_real"].to_numpy(float), m["effect_approx"].to_numpy(float)
    signed = approx.attrs.get("signed", True) is not False
    if not signed:
        a = np.abs(a)
    top = lambda v: set(np.argsort(-np.abs(v))[:k].tolist())  # noqa: E731
    rank = lambda v: np.argsort(np.argsort(v)).astype(float)  # noqa: E731
    corr = lambda x, y: float(np.corrcoef(x, y)[0, 1]) if len(x) > 1 and x.std() > 0 and y.std() > 0 else math.nan  # noqa: E731
    return {"cells": len(m), "compared": "effect" if signed else "|effect|", "pearson": corr(a, b),
            "spearman": corr(rank(a), rank(b)), "top_k": k, "top_k_overlap": len(top(a) & top(b)) / min(k, len(m)),
            "max_abs_diff": float(np.max(np.abs(a - b)))}
