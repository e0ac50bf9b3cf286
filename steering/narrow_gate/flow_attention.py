"""Memory-bounded attention flow: the text→key sums computed inside the attention function.

Capturing ``attn_pattern.L`` materialises a full ``(B, H, Q, K)`` pattern per layer (Emu3 at
512² pixels, ~4,200 tokens, batch 8: ~18 GB per layer in fp32). The flow only needs, per
row ``b`` and key ``j``, ``S[b, j] = Σ_h Σ_{i ∈ queries(b)} A[b, h, i, j]``. This module
registers its own attention function with transformers' ``AttentionInterface`` (plus the
matching ``AttentionMaskInterface`` entry under the same name, the sdpa mask) that, for the
attention modules being measured, computes attention in chunks of ``chunk`` queries, adds
each chunk's weights of the selected queries into ``S`` and its output into the layer's
output; no full pattern is ever stored (peak extra memory ``B · H · chunk · K`` floats).
Other modules (the vision tower, unmeasured layers) run the implementation the model had::

    sums = text_key_sums(hm, inputs, layers=[0, 5], queries=lay.text_after, chunk=256)
    sums[5]          # (B, K) float32 on CPU: Σ_h Σ_{i ∈ queries} A^5[b, h, i, :]
    sums["heads"]    # H, to turn sums into means

The model's ``_attn_implementation`` is switched to ``narrow_gate_flow`` for the duration of
the call and restored afterwards, also after an exception. One measurement at a time per
process (the active collectors are module-level state).
"""
from __future__ import annotations

import contextlib

import torch

NAME = "narrow_gate_flow"
_ACTIVE: dict = {}  # id(attention module) -> _Collector
_DELEGATE: list = []  # stack of the implementations the switched models had
_REGISTERED = False


class _Collector:
    def __init__(self, queries: torch.Tensor, chunk: int):
        self.queries = queries  # (B, P) bool
        self.chunk = int(chunk)
        self.sum = None  # (B, K) float32
        self.heads = None


def _base(name: str, module):
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    if name == "eager" or name not in ALL_ATTENTION_FUNCTIONS:
        import sys

        fn = getattr(sys.modules.get(type(module).__module__), "eager_attention_forward", None)
        if fn is None:
            from transformers.models.llama.modeling_llama import eager_attention_forward as fn
        return fn
    return ALL_ATTENTION_FUNCTIONS[name]


def chunked_attention(module, query, key, value, attention_mask, collector: _Collector, **kwargs):
    """Attention in query chunks, adding the selected queries' weights into ``collector.sum``.

    Same result as eager attention (grouped-query heads are not expanded); returns
    ``(output (B, Q, H, D), None)``.
    """
    B, H, Q, D = query.shape
    Hkv, K = key.shape[1], key.shape[2]
    rep = H // Hkv
    scaling = kwargs.get("scaling")
    if scaling is None:
        scaling = D ** -0.5
    softcap = kwargs.get("softcap")
    qsel = collector.queries.to(query.device)
    if qsel.shape != (B, Q):
        raise ValueError(f"Flow queries are {tuple(qsel.shape)} but this attention call has batch {B} and {Q} "
                         "queries; the flow is measured on one full forward (no cache, no generation).")
    kt = key.transpose(2, 3)[:, :, None]  # (B, Hkv, 1, D, K)
    v = value[:, :, None]  # (B, Hkv, 1, K, D)
    out = query.new_empty(B, Q, H, D)
    acc = torch.zeros(B, K, dtype=torch.float32, device=query.device)
    neg = torch.finfo(query.dtype).min
    is_causal = kwargs.get("is_causal")
    if is_causal is None:
        is_causal = getattr(module, "is_causal", True)
    for s in range(0, Q, collector.chunk):
        e = min(Q, s + collector.chunk)
        q = query[:, :, s:e].reshape(B, Hkv, rep, e - s, D)
        sc = torch.matmul(q, kt) * scaling  # (B, Hkv, rep, c, K)
        if softcap:
            sc = torch.tanh(sc / softcap) * softcap
        if attention_mask is None:
            if is_causal and Q > 1:
                qpos = torch.arange(K - Q + s, K - Q + e, device=sc.device)[:, None]
                sc = sc.masked_fill(torch.arange(K, device=sc.device)[None, :] > qpos, neg)
        else:
            m = attention_mask[:, :, s:e, :K][:, :, None]  # (B, 1|H, 1, c, K)
            if m.shape[1] != 1:
                m = m.reshape(B, Hkv, rep, e - s, K)
            sc = sc.masked_fill(~m, neg) if m.dtype == torch.bool else (sc + m).clamp(min=neg)
        w = torch.softmax(sc, dim=-1, dtype=torch.float32)
        sel = qsel[:, s:e].to(w.dtype)  # (B, c)
        acc += torch.einsum("bgrck,bc->bk", w, sel)
        o = torch.matmul(w.to(value.dtype), v)  # (B, Hkv, rep, c, D)
        out[:, s:e] = o.reshape(B, H, e - s, D).transpose(1, 2)
        del sc, w, o
    collector.sum = acc if collector.sum is None else collector.sum + acc
    collector.heads = H
    return out, None


def flow_attention(module, query, key, value, attention_mask, **kwargs):
    col = _ACTIVE.get(id(module))
    if col is None:
        return _base(_DELEGATE[-1] if _DELEGATE else "sdpa", module)(module, query, key, value, attention_mask,
                                                                     **kwargs)
    return chunked_attention(module, query, key, value, attention_mask, col, **kwargs)


def ensure_registered() -> None:
    global _REGISTERED
    if _REGISTERED:
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    AttentionInterface.register(NAME, flow_attention)
    AttentionMaskInterface.register(NAME, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
    _REGISTERED = True


@contextlib.contextmanager
def flow_mode(hm, modules: dict):
    """Switch ``hm.model`` to :data:`NAME` while ``modules`` (``{id(module): _Collector}``) collect."""
    model = hm.model
    prev = getattr(model.config, "_attn_implementation", None)
    if prev is None or not hasattr(model, "set_attn_implementation"):
        from .errors import NarrowGateError

        raise NarrowGateError("Streaming flow needs a transformers model with a switchable attention "
                              "implementation; use backend='materialize'.")
    ensure_registered()
    _DELEGATE.append(prev)
    _ACTIVE.update(modules)
    try:
        model.set_attn_implementation(NAME)
        yield
    finally:
        for k in modules:
            _ACTIVE.pop(k, None)
        _DELEGATE.pop()
        model.set_attn_implementation(prev)


@torch.no_grad()
def text_key_sums(hm, inputs: dict, layers, queries: torch.Tensor, chunk: int = 256) -> dict:
    """``{L: (B, K) float32 CPU}`` sums over heads and ``queries`` of layer L's attention, plus ``"heads"``."""
    cols = {}
    for L in layers:
        mod = hm.resolve_sites([f"attn_pattern.{L}"])[0].module
        cols[L] = (mod, _Collector(queries.bool(), chunk))
    with flow_mode(hm, {id(m): c for m, c in cols.values()}):
        hm.run(inputs, stop_after=f"resid_post.{max(layers)}")
    out = {}
    for L, (_, c) in cols.items():
        if c.sum is None:
            from .errors import NarrowGateError

            raise NarrowGateError(f"Layer {L}'s attention did not run through the flow function; use "
                                  "backend='materialize' for this model.")
        out[L] = c.sum.cpu()
        out["heads"] = c.heads
    return out
