"""Attention capture and knockout through transformers' ``AttentionInterface``.

We register ``interp_sdpa`` and ``interp_eager`` (with the matching mask functions in
``AttentionMaskInterface`` — without them transformers passes ``attention_mask=None`` and
the causal mask is silently lost). Each delegates to the stock implementation unless a
trace has asked for the scores or the pattern of that layer; then it computes attention
explicitly and lets the trace read or edit the pre-softmax scores (``attn_scores.L``) and
the post-softmax weights (``attn_pattern.L``). Models are switched to the wrapped
implementation when wrapped, so nothing changes numerically until a trace asks::

    model = hooks.load("gpt2")            # config._attn_implementation == "interp_sdpa"
    with model.trace(batch) as tr:
        tr.knockout(layers=[3], queries="last", keys=0, mode="zero")

This is the transformers-supported extension point; transformers itself is never patched.
"""
from __future__ import annotations

import sys

import torch

from .errors import AttentionNotSupportedError

PREFIX = "interp_"
BASES = ("sdpa", "eager")
_HANDLERS: dict = {}  # id(attention module) -> list of handler callables (stage, tensor) -> tensor|None
_REGISTERED = False


def active_handlers() -> int:
    """Number of attention handlers installed right now (0 outside traces)."""
    return sum(len(v) for v in _HANDLERS.values())


def handlers_for(module: torch.nn.Module) -> list:
    """Handlers registered for ``module`` now (empty list when none): for custom attention backends."""
    return list(_HANDLERS.get(id(module), ()))


def add_handler(module: torch.nn.Module, fn) -> None:
    """Call ``fn(stage, tensor)`` in ``module``'s attention. ``fn.active`` (optional, ``() -> bool``)
    says whether it applies to the call in progress (a per-call site of a shared layer)."""
    _HANDLERS.setdefault(id(module), []).append(fn)


def remove_handler(module: torch.nn.Module, fn) -> None:
    lst = _HANDLERS.get(id(module))
    if lst is None:
        return
    for i, f in enumerate(lst):
        if f is fn:
            del lst[i]
            break
    if not lst:
        _HANDLERS.pop(id(module), None)


def _module_eager(module):
    fn = getattr(sys.modules.get(type(module).__module__), "eager_attention_forward", None)
    if fn is None:
        from transformers.models.llama.modeling_llama import eager_attention_forward as fn
    return fn


def _base_fn(base: str, module):
    if base == "eager":
        return _module_eager(module)
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    return ALL_ATTENTION_FUNCTIONS[base]


def _repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    if n_rep == 1:
        return x
    b, h, s, d = x.shape
    return x[:, :, None].expand(b, h, n_rep, s, d).reshape(b, h * n_rep, s, d)


def explicit_attention(module, query, key, value, attention_mask, handlers, **kwargs):
    """Eager attention with hook points on scores and weights. Returns (output, weights)."""
    scaling = kwargs.get("scaling")
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    n_rep = query.shape[1] // key.shape[1]
    k = _repeat_kv(key, n_rep)
    v = _repeat_kv(value, n_rep)
    scores = torch.matmul(query, k.transpose(2, 3)) * scaling
    softcap = kwargs.get("softcap")
    if softcap:
        scores = torch.tanh(scores / softcap) * softcap
    Q, K = scores.shape[-2], scores.shape[-1]
    neg = torch.finfo(scores.dtype).min
    if attention_mask is None:
        is_causal = kwargs.get("is_causal")
        if is_causal is None:
            is_causal = getattr(module, "is_causal", True)
        if is_causal and Q > 1:
            qpos = torch.arange(K - Q, K, device=scores.device)[:, None]
            kpos = torch.arange(K, device=scores.device)[None, :]
            scores = scores.masked_fill(kpos > qpos, neg)
    elif attention_mask.dtype == torch.bool:
        scores = scores.masked_fill(~attention_mask[..., :K], neg)
    else:
        scores = (scores + attention_mask[..., :K]).clamp(min=neg)
    allowed = None
    for h in handlers:
        out = h("scores", scores)
        if out is not None:
            if allowed is None:
                allowed = (scores > neg).any(-1)  # (B, H, Q): rows with a key before the handlers
            scores = out
    weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    if allowed is not None:
        # A query whose every allowed key was masked by an intervention attends to nothing: its
        # weights are 0 (softmax would spread them over all keys, future and padding included).
        emptied = allowed & ~(scores > neg).any(-1)
        if bool(emptied.any()):
            weights = weights.masked_fill(emptied[..., None], 0.0)
    for h in handlers:
        out = h("pattern", weights)
        if out is not None:
            weights = out
    dropout = kwargs.get("dropout", 0.0)
    if dropout and module.training:
        weights = torch.nn.functional.dropout(weights, p=dropout)
    out = torch.matmul(weights, v).transpose(1, 2).contiguous()
    return out, weights


def _make(base: str):
    resolved: dict = {}  # module class -> stock implementation (looked up once)

    def interp_attention(module, query, key, value, attention_mask, **kwargs):
        handlers = _HANDLERS.get(id(module))
        if handlers:  # a handler for another call of a shared module (hooks.calls) leaves this one stock
            handlers = [h for h in handlers if getattr(h, "active", None) is None or h.active()]
        if not handlers:
            fn = resolved.get(type(module))
            if fn is None:
                fn = resolved[type(module)] = _base_fn(base, module)
            return fn(module, query, key, value, attention_mask, **kwargs)
        return explicit_attention(module, query, key, value, attention_mask, list(handlers), **kwargs)

    interp_attention.__name__ = f"{PREFIX}{base}"
    return interp_attention


def ensure_registered() -> None:
    """Register ``interp_sdpa``/``interp_eager`` and their mask functions (idempotent)."""
    global _REGISTERED
    if _REGISTERED:
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    for base in BASES:
        AttentionInterface.register(PREFIX + base, _make(base))
        AttentionMaskInterface.register(PREFIX + base, ALL_MASK_ATTENTION_FUNCTIONS[base])
    _REGISTERED = True


def enable(model: torch.nn.Module) -> bool:
    """Switch an HF model to the wrapped implementation. Returns False when it cannot be.

    Models loaded with flash/flex attention keep them (capture/knockout then raise
    :class:`AttentionNotSupportedError` with the fix).
    """
    cfg = getattr(model, "config", None)
    impl = getattr(cfg, "_attn_implementation", None)
    if impl is None or not hasattr(model, "set_attn_implementation"):
        return False
    if impl.startswith(PREFIX):
        return True
    if impl not in BASES:
        return False
    ensure_registered()
    model.set_attn_implementation(PREFIX + impl)
    return model.config._attn_implementation.startswith(PREFIX)


def require(model: torch.nn.Module, enabled: bool) -> None:
    if not enabled:
        impl = getattr(getattr(model, "config", None), "_attn_implementation", None)
        raise AttentionNotSupportedError(
            f"Attention capture/knockout needs attention we can reach, but this model runs "
            f"attn_implementation={impl!r}. Load it with hooks.load(..., attn_implementation='sdpa') "
            "(or 'eager'), or call model.set_attn_implementation('sdpa') before wrapping."
        )
