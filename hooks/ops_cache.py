"""The :class:`Op` base class and caching: :class:`CacheOp`, the :class:`CacheStore` it fills and the
:class:`CacheResult` a trace returns (see :mod:`hooks.ops`)."""
from __future__ import annotations

import torch

from . import positions as P
from .errors import HookError, PositionError, ShapeMismatchError
from .ops_layout import Sel, native_cache_view, window_mask


# -- ops -------------------------------------------------------------------------
class Op:
    def __init__(self, binding, positions, apply_to):
        self.binding, self.positions, self.apply_to = binding, positions, apply_to
        if getattr(binding, "readonly", False) and not isinstance(self, CacheOp):
            raise HookError(f"{binding.name} can be cached but not edited: the module computes its result (e.g. an "
                            "MoE router's expert choice) before returning this tensor, so a change here would not reach "
                            "the model. Edit the module's input or the block's output instead.")
        self._hidx = None

    def head_index(self, x: torch.Tensor):
        """``None``, or the LongTensor of the heads this op acts on (axis 2 of the canonical
        ``(B, q, H, ...)`` activation of ``head_out.L`` / ``attn_pattern.L`` / ``attn_scores.L``)."""
        heads = getattr(self.iv, "heads", None)
        if heads is None:
            return None
        if x.dim() != 4:
            raise ShapeMismatchError(
                f"heads={heads} needs a site with a head axis (head_out.L, attn_pattern.L, attn_scores.L); "
                f"{self.binding.name} activations are {tuple(x.shape)}. Use head_out.L to act on single heads."
            )
        if max(heads) >= x.shape[2]:
            raise ShapeMismatchError(f"heads={heads} at {self.binding.name}: the site has {x.shape[2]} heads (0..{x.shape[2] - 1}).")
        if self._hidx is None or self._hidx.device != x.device:
            self._hidx = torch.tensor(heads, device=x.device)
        return self._hidx

    def only_heads(self, x: torch.Tensor, y, hidx):
        """``y`` on the chosen heads, ``x`` elsewhere."""
        if y is None or hidx is None:
            return y
        out = x.clone()
        out[:, :, hidx] = y[:, :, hidx]
        return out

    def mask(self, x, ctx) -> Sel:
        m = window_mask(ctx, self.positions, self.apply_to)
        if m.shape != x.shape[:2]:
            if isinstance(self.positions, str) and self.positions == "all":
                # a module outside the token sequence (vision tower, raw path): all positions
                return Sel(torch.ones(x.shape[:2], dtype=torch.bool), None)
            raise PositionError(
                f"{self.binding.name}: activation has {x.shape[1]} positions but the batch context has "
                f"{m.shape[1]} in this window; call the model through HookedModel or pass attention_mask."
            )
        return Sel(m, ctx)


class CacheOp(Op):
    def __init__(self, binding, iv, store, grad):
        super().__init__(binding, iv.positions, iv.apply_to)
        self.iv, self.store, self.grad = iv, store, grad
        layout = iv.layout
        if layout == "auto":
            layout = "row" if P.is_single(iv.positions) else "padded" if iv.positions == "all" else "flat"
        self.layout = layout

    def __call__(self, x, ctx):
        sel = self.mask(x, ctx)
        if not sel.any():
            return None
        v = x if self.grad else x.detach()
        hidx = self.head_index(x)
        if hidx is not None:
            v = v.index_select(2, hidx)
        if self.layout == "padded":
            if not sel.full and self.positions != "all":
                v = v * sel.expand(v).to(v.dtype)
        else:
            if self.layout == "row":
                counts = sel.cpu.sum(1)
                if not bool((counts == 1).all()):
                    b = int((counts != 1).nonzero()[0])
                    raise PositionError(
                        f"Cache layout 'row' needs one position per row; row {b} has {int(counts[b])} "
                        f"selected at {self.binding.name}. Use layout='flat' or 'padded'."
                    )
            v = sel.take(v)
        dev = self.iv.device if self.iv.device is not None else v.device
        moved = v.to(device=dev, dtype=self.iv.dtype or v.dtype)
        if moved.data_ptr() == x.data_ptr() and not self.grad and hidx is None:
            moved = moved.clone()
        self.store.add(self.binding, moved, sel.cpu, self.layout)
        return None


class CacheStore:
    """Collects cached values per site across forward calls and assembles the result."""

    def __init__(self, result):
        self.result = result
        self.parts: dict = {}

    def add(self, binding, value, mask, layout):
        self.parts.setdefault(binding.name, []).append((value, mask, layout, binding.layout))

    def finalize(self):
        for name, parts in self.parts.items():
            layout, blayout = parts[0][2], parts[0][3]
            vals = [p[0] for p in parts]
            if layout == "padded":
                vals = [native_cache_view(v, blayout) for v in vals]
            if len(vals) == 1:
                v = vals[0]
            elif layout == "padded" and blayout != "attn":
                v = torch.cat(vals, 1)
            elif layout == "flat":
                v = torch.cat(vals, 0)
            elif layout == "row":
                v = torch.stack(vals, 1)
            else:
                v = vals
            self.result[name] = v
            masks = [p[1] for p in parts]
            self.result.masks[name] = masks[0] if len(masks) == 1 else torch.cat(masks, 1)
        self.parts.clear()


class CacheResult(dict):
    """``{site: tensor}`` filled when the traced forward has run.

    ``masks[site]`` is the ``(B, q)`` boolean mask of the positions that were selected, in
    the window of each forward (concatenated over generation steps).
    """

    def __init__(self):
        super().__init__()
        self.masks: dict = {}

    def __getitem__(self, key):
        try:
            return super().__getitem__(key)
        except KeyError:
            raise KeyError(
                f"{key!r} is not in this cache (cached: {sorted(self)}). The forward runs when the trace block "
                "exits; read results after the `with` block."
            ) from None
