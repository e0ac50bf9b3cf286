"""Attribution patching: every cell of a sweep from one forward and one backward.

    from interp.patching import attribution_patching, activation_patching, agreement
    atp = attribution_patching(model, clean, corrupt, sites="head_out", by="layer,head",
                               answers=ans, distractors=dis)                 # method="atp"
    gd = attribution_patching(..., method="graddrop")                         # AtP + GradDrop
    qk = attribution_patching(..., sites="attn_scores", method="qk")          # AtP + QK fix
    star = attribution_patching(..., method="atp*")                           # both corrections
    agreement(activation_patching(...same...), atp)   # {"pearson", "spearman", "top_k_overlap", ...}

**AtP** (default). The effect of patching cell ``c`` is approximated to first order around the
base run: ``(a_source - a_base)[c] · dM/da[c]`` (Nanda 2023, "Attribution Patching: Activation
Patching At Industrial Scale", neelnanda.io/attribution-patching; code in the TransformerLens
demo ``demos/Attribution_Patching_Demo.ipynb``: ``attr = (clean_act - corrupted_act) *
corrupted_grad`` summed over ``d_head``/``d_model``). ``M`` is the metric summed over
examples, so each example keeps its own gradient; effects are then averaged over examples
like :func:`~interp.patching.activation_patching`. The gradient is the total derivative
(through every later layer), so on a model whose metric is linear in the patched activation
the estimate equals real patching exactly. Masked attention scores (-inf in both runs)
contribute 0.

The two AtP* corrections (Kramár, Lieberum, Shah & Nanda 2024, "AtP*: An efficient and
scalable method for localizing LLM behaviour to components", arXiv:2403.00745, §3.1; the
authors released no code, so both follow the paper's text):

**QK fix** (``method="qk"``; §3.1.1 "Attention saturation"). Linearising the attention
softmax misses large effects where it saturates (gradient ~0). AtP* recomputes the softmax
exactly for the patched queries/keys and linearises only from the attention pattern on:
``Σ (softmax(s_patched) - softmax(s_base)) · dM/dA``. Our score nodes are ``attn_scores.L``
cells (a head's whole score row at a query position, or all of them), so the patched row's
exact softmax is the source run's pattern row and the estimate is taken at ``attn_pattern.L``;
it equals real patching wherever the metric is linear in that pattern (test: one-layer
attention-only model, and the last layer of a two-layer one). Other sites are unchanged. Not
covered: query- or key-*vector* nodes (patching ``q_t`` alone against the base keys), which the
hook registry does not expose as sites.

**GradDrop** (``method="graddrop"``; §3.1.2 "Cancellation"). When a node's direct effect and its
indirect effect through later layers cancel in the gradient, AtP reports ~0 although real
patching does not cancel (the later layers are not linear). GradDrop runs ``L`` backward
passes; in pass ``ℓ`` the gradient through layer ``ℓ``'s contribution to the residual stream
(its ``attn_out.ℓ`` and ``mlp_out.ℓ`` sites) is set to zero while the forward pass is
unchanged, giving ``AtP+GD_ℓ(n)``; the estimate is

    GradDrop(n) = 1/(L-1) · Σ_ℓ |AtP+GD_ℓ(n)|

per clean/corrupt pair, then averaged over pairs (``L-1``: the pass that drops ``n``'s own
layer gives 0 for nodes inside that layer's contribution). It is an *unsigned* magnitude for
ranking nodes (``df.attrs["signed"] = False``; :func:`agreement` then compares it with
``|effect|``), so ``normalize=True`` is refused. Cost: one forward and ``L`` backward passes
through the retained graph.

``method="atp*"``: both (the QK fix where there are score sites, then GradDrop).
"""
from __future__ import annotations

import math
import re

import torch

from hooks import Edit
from hooks.errors import SpecError

from .common import Pairs, flat_cache, parse_by, prepare_pairs
from .sweep import effect_of, effects_frame, variants

METHODS = {"atp": (False, False), "attribution": (False, False), "qk": (True, False), "atp+qk": (True, False),
           "graddrop": (False, True), "atp+graddrop": (False, True), "atp*": (True, True)}  # name -> (QK fix, GradDrop)


def attribution_patching(model, clean, corrupt, *, sites="attn_out", by="layer,position", metric="logit_diff",
                         answers=None, distractors=None, direction: str = "denoising", normalize: bool = False,
                         method: str = "atp"):
    """The same table as :func:`~interp.patching.activation_patching`, by attribution:
    ``method="atp"`` (signed), ``"qk"`` (AtP with the QK fix on ``attn_scores`` sites),
    ``"graddrop"`` (unsigned) or ``"atp*"`` (both corrections)."""
    _method(method, normalize)
    pairs = prepare_pairs(model, clean, corrupt, sites=sites, metric=metric, answers=answers,
                          distractors=distractors, direction=direction)
    return attribute(pairs, by, normalize=normalize, method=method)


def _method(method: str, normalize: bool) -> tuple:
    m = METHODS.get(str(method).lower())
    if m is None:
        raise SpecError(f"Attribution method must be 'atp' (Nanda 2023), 'qk' (AtP with the QK fix), 'graddrop' "
                        f"(AtP with GradDrop) or 'atp*' (both; Kramár et al. 2024), got {method!r}.")
    if m[1] and normalize:
        raise SpecError("GradDrop scores are unsigned magnitudes: normalize=True is not defined for them "
                        "(use method='atp' or 'qk', or drop normalize).")
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


def _qk_nodes(model, sites, qk: bool) -> dict:
    """``{sweep site: site whose gradient is taken}``: with the QK fix an ``attn_scores.L`` cell is
    scored at ``attn_pattern.L`` (exact softmax of the patched scores), everything else at itself."""
    out = {}
    for s in sites:
        fam, _, layer = s.rpartition(".")
        out[s] = f"attn_pattern.{layer}" if qk and fam == "attn_scores" else s
        if out[s] not in model.site_names:
            raise SpecError(f"The QK fix for {s} needs the site {out[s]}, which this model does not expose; "
                            "use method='atp' or 'graddrop'.")
    return out


def _difference(src: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """``src - base``, 0 where they are equal (masked attention scores: -inf in both runs)."""
    return torch.where(src == base, torch.zeros_like(base), src - base)


def attribute(pairs: Pairs, by="layer,position", *, normalize: bool = False, method: str = "atp"):
    qk, graddrop = _method(method, normalize)
    keys = parse_by(by)
    model, B = pairs.model, pairs.n
    node_of = _qk_nodes(model, pairs.sites, qk)
    nodes = list(dict.fromkeys(node_of.values()))
    src = flat_cache(model, pairs.source, nodes)
    acts: dict = {}
    edits = [Edit(n, "all", fn=_capture(acts, n)) for n in nodes]
    state, writers = {"drop": None}, residual_writers(model) if graddrop else {}
    if graddrop:
        if len(writers) < 2:
            raise SpecError(f"GradDrop needs at least two layers with attn_out/mlp_out sites; this model has "
                            f"{len(writers)}. Use method='atp'.")
        edits += [Edit(s, "all", fn=_gate(state, L)) for L, names in writers.items() for s in names]
    res = model.run(pairs.base, edits, grad=True)
    total = pairs.metric(res.logits, pairs.batch).nansum()
    am = pairs.base["attention_mask"].bool().cpu()
    row_of, rank = am.nonzero()[:, 0], pairs.rank[am]  # example and position of each flat token
    shapes = {s: tuple(src[node_of[s]].shape[1:]) for s in pairs.sites}
    cells = variants(pairs, keys, shapes)

    def per_example(grads) -> list:
        """``(B,)`` first-order estimate of every cell, and which examples have the cell's position."""
        contrib = {}
        for n, g in zip(nodes, grads):
            c = _difference(src[n].to(g.dtype), acts[n].detach()) * g
            contrib[n] = (c.flatten(2).sum(-1) if c.dim() == 3 else c.flatten(1).sum(-1)[:, None]).detach().float().cpu()
        out = []
        for s, _, h, p in cells:
            c = contrib[node_of[s]]
            c = (c if h is None else c[:, h : h + 1]).sum(1)
            sel = torch.ones_like(rank, dtype=torch.bool) if p is None else rank == p
            present = torch.zeros(B, dtype=torch.bool)
            present[row_of[sel]] = True
            out.append((torch.zeros(B).index_add_(0, row_of[sel], c[sel]), present))
        return out

    applied = "attribution" + ("+qk" if node_of != {s: s for s in pairs.sites} else "")
    if not graddrop:
        est = per_example(torch.autograd.grad(total, [acts[n] for n in nodes]))
        effects = [effect_of(pairs.rows["base"] + e, pairs.rows, present, normalize) for e, present in est]
        return effects_frame(cells, effects, pairs, keys, normalize, forwards=1, backwards=1, method=applied)
    score = [torch.zeros(B) for _ in cells]
    for L in writers:  # Kramár et al. 2024 §3.1.2: one backward per dropped layer, |.| per pair
        state["drop"] = L
        est = per_example(torch.autograd.grad(total, [acts[n] for n in nodes], retain_graph=True))
        for sc, (e, _) in zip(score, est):
            sc += e.abs()
    state["drop"] = None
    effects = [float((sc[pr] / (len(writers) - 1)).mean()) if bool(pr.any()) else math.nan
               for sc, (_, pr) in zip(score, est)]
    return effects_frame(cells, effects, pairs, keys, normalize, forwards=1, backwards=len(writers),
                         method=applied + "+graddrop", signed=False, graddrop_layers=len(writers))


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
