"""The KV cache of a forward call, recognised by what it is (not by transformers' argument name).

Used by HookedModel's batch context (:mod:`hooks.model_context`) to count the cached positions of a
forward that got no attention mask; also importable from :mod:`hooks.model`.
"""
from __future__ import annotations

from typing import Optional

import torch


def find_kv_cache(args, kwargs):
    """The KV cache among a forward's arguments, recognised by what it is, not by its name.

    transformers renamed the argument (``past_key_values`` -> ``cache`` in 5.25), so we look
    at every argument: a cache object answers ``get_seq_length()``; the legacy format is a
    tuple of per-layer ``(key, value)`` tensors of shape ``(B, H, past, D)``. Returns
    ``(kind, obj)`` with kind ``"cache"``, ``"legacy"``, ``"unknown"`` (an object whose class
    calls itself a cache but offers neither) or ``(None, None)`` when there is none.
    """
    for v in list(kwargs.values()) + list(args):
        if v is None or isinstance(v, (torch.Tensor, bool, int, float, str)):
            continue
        if callable(getattr(v, "get_seq_length", None)):
            return "cache", v
        if isinstance(v, (tuple, list)) and v and isinstance(v[0], (tuple, list)) and len(v[0]) >= 2 \
                and all(isinstance(t, torch.Tensor) and t.dim() == 4 for t in v[0][:2]):
            return "legacy", v
        if "cache" in type(v).__name__.lower():
            return "unknown", v
    return None, None


def cache_length(kind, obj) -> Optional[int]:
    """Positions held by a cache :func:`find_kv_cache` found: 0 without one, None when unreadable."""
    if kind == "cache":
        try:
            return int(obj.get_seq_length())
        except Exception:  # noqa: BLE001 - e.g. a cache of only linear-attention/SSM layers (transformers < 5.2x)
            return None
    if kind == "legacy":
        return int(obj[0][0].shape[-2])
    if kind == "unknown":
        return None
    return 0


def past_length(args, kwargs) -> Optional[int]:
    """Positions already in the KV cache of this forward call: 0 without a cache, None when a
    cache is there but its length cannot be read."""
    return cache_length(*find_kv_cache(args, kwargs))
