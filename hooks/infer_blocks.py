"""Structural inference, per block: the role of each module inside a decoder/encoder block.

:func:`analyse_block` reads one block's recorded tensors (:mod:`hooks.recording`) and finds its
composition (sequential, parallel, post-norm, single, opaque) and its sites (``resid_mid``,
``attn_out``, ``mlp_out``, ``head_out``, attention, the MoE router); :func:`_plans` does it for every
layer (or for the layers of parallel lists). The residual-stream identities used are described in
:mod:`hooks.infer`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from .adapters.base import Site
from .infer_stack import _depth, _parallel_lists, _under, close
from .infer_tree import ATTN_NAME, EXPERT_KEYS, InferenceError
from .recording import Rec, _first_int, text_config


# -- per-block analysis ----------------------------------------------------------------------------
@dataclass
class LayerPlan:
    composition: str  # "sequential" | "parallel" | "post_norm" | "single" | "unknown"
    sites: dict  # kind -> Site (absolute paths)
    absent: dict  # kind -> reason
    attention: Optional[str] = None
    norms: tuple = ()  # post_norm: (norm1, norm2) paths


def _is_linear(m) -> bool:
    w = getattr(m, "weight", None)
    return isinstance(w, torch.Tensor) and w.dim() == 2 and not isinstance(m, torch.nn.Embedding)


def analyse_block(bpath: str, recs: dict, n_heads: Optional[int], members: Optional[list] = None,
                  n_experts: Optional[int] = None) -> LayerPlan:
    """The sites of one block. ``members``: a layer made of the ``L``-th modules of parallel lists
    (XLM's ``attentions[L]``, ``layer_norm1[L]``, ``ffns[L]``, ``layer_norm2[L]``) instead of one module."""
    if members:
        first, last = recs[members[0]], recs[members[-1]]
        block = Rec(bpath, None, 1, first.start, last.end, first.inp, last.out)
        pre_site, post_site = Site(members[0], kind="input"), Site(members[-1])
        inner = [r for p, r in recs.items() if any(_under(p, m) for m in members) and r.calls >= 1]
    else:
        block = recs[bpath]
        pre_site, post_site = Site(bpath, kind="input"), Site(bpath)
        inner = [r for p, r in recs.items() if p != bpath and _under(p, bpath) and r.calls >= 1]
        if block.out is None and block.out_list is not None:  # OpenAI-GPT's Block returns [h, ...]: a list
            block = Rec(bpath, block.module, 1, block.start, block.end, block.inp, block.out_list)
            last = [r for r in inner if r.calls == block.calls and r.out is not None and close(r.out, block.out)]
            if not last:
                raise InferenceError(f"block {bpath} returns a list and no module inside it gives its first element")
            post_site = Site(max(last, key=lambda r: (r.end, -_depth(r.path))).path)
    x, y = block.inp, block.out
    if x is None or y is None or x.shape != y.shape:
        raise InferenceError(f"block {bpath} does not map a (B, P, D) tensor to one of the same shape")
    once = [r for r in inner if r.calls == block.calls]  # once per block call (a shared block runs n times)
    cands = sorted([r for r in once if r.out is not None and r.out.shape == x.shape], key=lambda r: r.end)
    readers = sorted([r for r in once if r.inp is not None and r.inp.shape == x.shape], key=lambda r: r.start)
    probed = [r for r in inner if r.attn_calls > 0]
    named = [r for r in once if ATTN_NAME.search(type(r.module).__name__) and (r.out is not None or r.out_list is not None)]
    attn_mods = probed or named
    attn = min(attn_mods, key=lambda r: (_depth(r.path), r.start)) if attn_mods else None
    reachable = bool(probed)
    twice = attn is not None and attn.attn_calls > block.calls  # e.g. differential attention: two softmaxes per layer
    sites: dict = {"resid_pre": pre_site, "resid_post": post_site}
    absent: dict = {}

    def pref(rs):  # the attention module itself, else no dropout/identity, the outermost, the latest
        return sorted(rs, key=lambda r: (not (attn is not None and r is attn),
                                         isinstance(r.module, (torch.nn.Dropout, torch.nn.Identity)),
                                         _depth(r.path), -r.end))[0]

    def is_attn_contrib(r) -> bool:
        if attn is None:
            return False
        return _under(attn.path, r.path) or _under(r.path, attn.path) or (r.start > attn.end - 1 and r.start >= attn.start)

    # sequential / post-norm: a module reads resid_pre + c1
    c1 = X = None
    for reader in readers:
        hits = [c for c in cands if c.end < reader.start + 1 and c.end <= reader.start and close(reader.inp, x + c.out)]
        hits = [c for c in hits if not _under(reader.path, c.path)]
        if hits:
            c1, X = pref(hits), reader
            break
    comp, norms = "unknown", ()
    c2 = None
    if c1 is not None:
        later = [c for c in cands if c.start > X.start and not _under(c.path, X.path)]
        hits = [c for c in later if close(y, X.inp + c.out)]
        if hits:
            comp, c2 = "sequential", pref(hits)
            sites["resid_mid"] = Site(X.path, kind="input", inplace=True)
        elif X.out is not None and X.out.shape == x.shape:
            for n2 in [r for r in once if r.start > X.end and r.inp is not None and r.out is not None
                       and close(y, r.out)]:
                h2 = [c for c in cands if c.start > X.end and c.end <= n2.start and close(n2.inp, X.out + c.out)]
                if h2:
                    comp, c2, norms = "post_norm", pref(h2), (X.path, n2.path)
                    sites["resid_mid"] = Site(X.path)
                    break
        if c2 is None and close(y, X.inp):
            comp = "single"
        elif c2 is None:  # e.g. an MoE block returning flattened (B·P, D) tokens: no (B, P, D) contribution
            comp = "sequential"
            sites["resid_mid"] = Site(X.path, kind="input", inplace=True)
            absent["mlp_out"] = ("no (B, P, D) module output c with resid_post = resid_mid + c (the MLP/MoE output "
                                 "is reshaped or combined inside the block)")
    if comp == "unknown":  # parallel: resid_post = resid_pre + c1 + c2
        d = y - x
        for i, a in enumerate(cands):
            for b in cands[i + 1:]:
                if b.start > a.end and close(d, a.out + b.out):
                    if is_attn_contrib(b) and not is_attn_contrib(a):
                        a, b = b, a
                    comp = "parallel"
                    c1 = pref([c for c in cands if close(c.out, a.out)])
                    c2 = pref([c for c in cands if close(c.out, b.out) and c is not c1])
                    break
            if comp != "unknown":
                break
        if comp == "parallel":
            absent["resid_mid"] = ("parallel residual block: attention and MLP both read resid_pre and "
                                   "resid_post = resid_pre + attn_out + mlp_out, so no residual state exists between them")
    if comp == "unknown":
        single = [c for c in cands if close(y - x, c.out)]
        if single:
            comp, c1 = "single", pref(single)
    if comp == "unknown":  # gated / scaled / multi-stream residuals: only the block boundary is a site
        why = ("no (B, P, D) module outputs of the block add up to resid_post - resid_pre (a gated, scaled, "
               "multi-stream or flattened residual)")
        for k in ("resid_mid", "attn_out", "mlp_out", "head_out"):
            absent[k] = why
        if attn is not None and reachable:
            sites["attn_scores"] = Site(attn.path, kind="attn", layout="attn")
            sites["attn_pattern"] = Site(attn.path, kind="attn", layout="attn")
        return LayerPlan("opaque", sites, absent, attn.path if attn is not None else None)
    if comp == "single":
        absent["resid_mid"] = absent["mlp_out"] = "block has a single residual sub-layer"

    attn_layer = attn is not None and c1 is not None and is_attn_contrib(c1)
    if attn_layer:
        sites["attn_out"] = Site(c1.path)
        if reachable and not twice:
            sites["attn_scores"] = Site(attn.path, kind="attn", layout="attn")
            sites["attn_pattern"] = Site(attn.path, kind="attn", layout="attn")
        elif twice:
            absent["attn_scores"] = absent["attn_pattern"] = (
                f"{type(attn.module).__name__} computes attention {attn.attn_calls} times per forward "
                "(e.g. differential attention): no single pattern per layer")
        else:
            absent["attn_scores"] = absent["attn_pattern"] = (
                f"{type(attn.module).__name__} does not call transformers' AttentionInterface with the "
                "wrapped implementation (custom kernel, or attn_implementation other than sdpa/eager)")
        head = _head_proj(once, attn, c1, n_heads)
        if head is not None:
            sites["head_out"] = Site(head.path, kind="input", layout="heads")
        else:
            absent["head_out"] = "no output projection reading the concatenated heads was found"
    else:
        why = ("its token mixer does not call transformers' AttentionInterface"
               if attn is None else "the attention output is not a residual contribution")
        mixer = type(c1.module).__name__ if c1 is not None else "?"
        for k in ("attn_out", "attn_scores", "attn_pattern", "head_out"):
            absent[k] = f"not an attention layer ({mixer}): {why}"
        if c1 is not None:
            sites["mixer_out"] = Site(c1.path)
    if c2 is not None:
        sites["mlp_out"] = Site(c2.path)
        router = _router(once, c2, x, n_experts)
        if router is not None:
            sites["router_logits"] = router
    return LayerPlan(comp, sites, absent, attn.path if attn is not None else None, norms)


def _router(once, mlp, x, n_experts) -> Optional[Site]:
    """The router logits of an MoE block: the outermost module inside ``mlp`` whose (first) output
    has one row per token and ``n_experts`` columns, ``(B·P, E)`` (Mixtral's and Qwen-MoE's
    ``TopKRouter``, whose output 0 is what ``output_router_logits`` returns:
    models/mixtral/modeling_mixtral.py ``_can_record_outputs``) or ``(B, P, E)``; not a softmax
    output (rows of probabilities summing to 1). A router that returns its routing decision with
    the logits (a tuple) gives a read-only site: caching works, edits are refused."""
    if not n_experts:
        return None
    B, P = x.shape[:2]
    hits = []
    for r in once:
        t = r.out
        if t is None or not _under(r.path, mlp.path) or r.path == mlp.path or t.shape[-1] != n_experts:
            continue
        if tuple(t.shape) == (B * P, n_experts):
            layout = "tokens"
        elif tuple(t.shape) == (B, P, n_experts):
            layout = "BPD"
        else:
            continue
        if bool((t >= 0).all()) and close(t.float().sum(-1), torch.ones_like(t[..., 0], dtype=torch.float32)):
            continue  # routing probabilities, not logits
        hits.append((r, layout))
    if not hits:
        return None
    r, layout = min(hits, key=lambda h: (_depth(h[0].path), h[0].start))
    # a router returning (logits, scores, indices) has routed already: editing its logits would change nothing
    return Site(r.path, layout=layout, readonly=r.out_tuple)


def _head_proj(once, attn, c1, n_heads):
    """The linear layer whose input is the concatenated per-head outputs (o_proj / c_proj / dense)."""
    if not n_heads:
        return None
    targets = [c1.out] + ([c1.inp] if c1.inp is not None else [])
    for r in sorted(once, key=lambda r: -r.end):
        if not _is_linear(r.module) or r.inp is None or r.out is None:
            continue
        if not (_under(r.path, attn.path) or _under(r.path, c1.path) or r.start > attn.end):
            continue
        if r.start < attn.start or r.end > c1.end:
            continue
        if r.inp.shape[-1] % n_heads == 0 and any(close(t, r.out) for t in targets):
            return r
    return None


def _plans(model, blocks_path: str, n: int, recs: dict, nh) -> tuple:
    """``(plans, members)``: one :class:`LayerPlan` per block; where the blocks are opaque and the
    layer is spread over parallel lists (:func:`_parallel_lists`), plans of those layers instead."""
    err, plans = None, None
    ne = _first_int(text_config(model), EXPERT_KEYS)
    try:
        for L in range(n):
            if recs[f"{blocks_path}.{L}"].calls == 0:
                raise InferenceError(f"block {blocks_path}.{L} did not run in the forward")
        plans = [analyse_block(f"{blocks_path}.{L}", recs, nh, n_experts=ne) for L in range(n)]
        if not any(pl.composition == "opaque" for pl in plans):
            return plans, None
    except InferenceError as e:
        err = e
    members = _parallel_lists(model, blocks_path, n, recs)
    if members is not None:
        try:
            alt = [analyse_block(f"{blocks_path}.{L}", recs, nh, members[L], n_experts=ne) for L in range(n)]
        except InferenceError:
            alt = None
        if alt is not None and (plans is None or sum(p.composition == "opaque" for p in alt)
                                < sum(p.composition == "opaque" for p in plans)):
            return alt, members
    if plans is None:
        raise err
    return plans, None
