"""Canonical layouts and position selections for the compiled ops (:mod:`hooks.ops`).

``to_canon`` / ``from_canon`` move an activation between its module's layout and the canonical
``(B, q, ...)`` one (position axis second); ``window_mask`` and :class:`Sel` give the positions an
op acts on in the current window. ``TOKEN_ROWS`` holds the batch's row count for token-flattened
sites (set by HookedModel's batch context).
"""
from __future__ import annotations

import contextvars

import torch

from . import positions as P
from .errors import HookError


# -- layouts -------------------------------------------------------------------
# rows of the batch in the forward now running (set by HookedModel's batch context): the "tokens"
# layout — an MoE router's (B·P, E) logits, tokens flattened — is viewed as (B, P, E) with it
TOKEN_ROWS: contextvars.ContextVar = contextvars.ContextVar("hooks_token_rows", default=None)


def to_canon(t: torch.Tensor, layout: str, n_heads=None) -> torch.Tensor:
    if layout == "BPD":
        return t
    if layout == "tokens":
        rows = TOKEN_ROWS.get()
        if rows is None or t.dim() != 2 or t.shape[0] % rows:
            raise HookError(f"a token-flattened site ({tuple(t.shape)}) needs the batch's shape: run the model "
                            "through HookedModel (hm.run / hm.trace / hm.generate)")
        return t.reshape(rows, t.shape[0] // rows, t.shape[-1])
    if layout == "PBD":
        return t.transpose(0, 1)
    if layout == "heads":
        return t.view(*t.shape[:-1], n_heads, t.shape[-1] // n_heads)
    if layout == "heads_PBD":
        t = t.transpose(0, 1)
        return t.reshape(*t.shape[:-1], n_heads, t.shape[-1] // n_heads)
    if layout == "attn":
        return t.permute(0, 2, 1, 3)
    raise ValueError(f"unknown layout {layout}")


def from_canon(t: torch.Tensor, layout: str) -> torch.Tensor:
    if layout == "BPD":
        return t
    if layout == "tokens":
        return t.reshape(-1, t.shape[-1])
    if layout == "PBD":
        return t.transpose(0, 1)
    if layout == "heads":
        return t.reshape(*t.shape[:-2], -1)
    if layout == "heads_PBD":
        return t.reshape(*t.shape[:-2], -1).transpose(0, 1)
    if layout == "attn":
        return t.permute(0, 2, 1, 3)
    raise ValueError(f"unknown layout {layout}")


def native_cache_view(t: torch.Tensor, layout: str) -> torch.Tensor:
    """Padded cache tensors are returned in the user-facing shape (B×H×Q×K for patterns)."""
    return t.permute(0, 2, 1, 3) if layout == "attn" else t


def window_mask(ctx: P.BatchContext, selector, apply_to: str) -> torch.Tensor:
    """CPU ``(B, q)`` mask of the selected positions in the current window (memoised per forward)."""
    key = ("sel", repr(selector) if not isinstance(selector, torch.Tensor) else id(selector), apply_to)
    m = ctx.memo.get(key)
    if m is None:
        full = P.resolve(selector, ctx, check=ctx.window_start == 0)
        m = ctx.memo[key] = P.window(full, ctx, apply_to).cpu()
        ctx.memo[("all", id(m))] = bool(m.all())
    return m


class Sel:
    """A position selection for one activation: the CPU mask, and whether it covers everything.

    ``full`` lets ops skip masking (and any host→device copy) in the common case where every
    position of the window is selected, e.g. ``"all"`` on an unpadded batch or ``"last"``
    while generating.
    """

    __slots__ = ("cpu", "full", "_dev", "_ctx")

    def __init__(self, cpu: torch.Tensor, ctx):
        self.cpu, self._ctx, self._dev = cpu, ctx, None
        full = ctx.memo.get(("all", id(cpu))) if ctx is not None else None
        self.full = bool(cpu.all()) if full is None else full

    def any(self) -> bool:
        return self.full or bool(self.cpu.any())

    def on(self, device) -> torch.Tensor:
        if self._dev is None or self._dev.device != torch.device(device):
            key = ("dev", id(self.cpu), str(device))
            d = self._ctx.memo.get(key) if self._ctx is not None else None
            if d is None:
                d = self.cpu.to(device, non_blocking=True)
                if self._ctx is not None:
                    self._ctx.memo[key] = d
            self._dev = d
        return self._dev

    def take(self, x: torch.Tensor) -> torch.Tensor:
        """Selected rows, row-major: ``x[mask]``."""
        return x.reshape(-1, *x.shape[2:]) if self.full else x[self.on(x.device)]

    def put(self, x: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """``x`` with the selected rows replaced by ``values`` (a new tensor)."""
        values = values.to(dtype=x.dtype, device=x.device)
        if self.full:  # never alias the caller's tensors (a patch source, the input itself)
            return values.reshape(x.shape).clone()
        out = x.clone()
        out[self.on(x.device)] = values
        return out

    def expand(self, x: torch.Tensor) -> torch.Tensor:
        m = self.on(x.device)
        return m.view(*m.shape, *([1] * (x.dim() - 2)))
