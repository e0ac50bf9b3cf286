"""Compiled interventions: small callables run by the hooks on canonical activations.

Every op receives the activation in *canonical layout* — ``(B, q, ...)`` with the position
axis second (``q`` = positions in the current window) — and returns a replacement or
``None``. Attention sites are canonicalised from ``(B, H, Q, K)`` to ``(B, Q, H, K)``.

The layouts and position selections are in :mod:`hooks.ops_layout`, the :class:`Op` base class and
caching in :mod:`hooks.ops_cache`, the ops that edit activations in :mod:`hooks.ops_edit`; all are
importable from here.
"""
from __future__ import annotations

from .ops_cache import CacheOp, CacheResult, CacheStore, Op  # noqa: F401 (re-exported)
from .ops_edit import AblateOp, EditOp, KnockoutOp, PatchOp, SteerOp  # noqa: F401 (re-exported)
from .ops_layout import TOKEN_ROWS, Sel, from_canon, native_cache_view, to_canon, window_mask  # noqa: F401 (re-exported)
