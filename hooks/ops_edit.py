"""The ops that change activations: steer, ablate, patch, edit and attention knockout (see :mod:`hooks.ops`).

Each receives the canonical ``(B, q, ...)`` activation and returns its replacement or ``None``."""
from __future__ import annotations

import torch

from . import positions as P
from .errors import PositionError, ShapeMismatchError
from .ops_cache import Op
from .ops_layout import window_mask


class SteerOp(Op):
    def __init__(self, binding, iv):
        super().__init__(binding, iv.positions, iv.apply_to)
        self.iv = iv
        self._vec = None
        if isinstance(iv.vector, torch.Tensor) and iv.vector.is_meta:
            raise ShapeMismatchError(
                f"Steer vector for {binding.name} is on the 'meta' device: it has a shape but no values. "
                "Build it from real activations or weights (e.g. after the model's weights are loaded, "
                "not from a model created under init_empty_weights / device='meta')."
            )

    def __call__(self, x, ctx):
        sel = self.mask(x, ctx)
        if not sel.any():
            return None
        vec = self._vec
        if vec is None or vec.device != x.device or vec.dtype != x.dtype:
            vec = torch.as_tensor(self.iv.vector)
            hidx = self.head_index(x)
            if hidx is not None:
                vec = self._head_vector(vec, x, hidx)
            if tuple(vec.shape) != tuple(x.shape[2:]):
                raise ShapeMismatchError(
                    f"Steer vector has shape {tuple(vec.shape)} but {self.binding.name} activations are "
                    f"{tuple(x.shape)} (vector must be {tuple(x.shape[2:])})."
                )
            vec = self._vec = vec.to(device=x.device, dtype=x.dtype)
        delta = self.iv.scale * vec
        if sel.full:
            return x + delta
        return x + sel.expand(x).to(x.dtype) * delta

    def _head_vector(self, vec, x, hidx):
        """A ``(H, D)`` vector that is zero outside the chosen heads."""
        H, rest, n = x.shape[2], tuple(x.shape[3:]), len(hidx)
        if tuple(vec.shape) not in (rest, (n, *rest), (H, *rest)):
            raise ShapeMismatchError(
                f"Steer with heads={self.iv.heads} at {self.binding.name}: vector has shape {tuple(vec.shape)}; "
                f"give one head's shape {rest}, one row per head {(n, *rest)} or the site's {(H, *rest)}."
            )
        full = torch.zeros((H, *rest), dtype=vec.dtype, device=vec.device)
        full[hidx.to(vec.device)] = vec if tuple(vec.shape) != (H, *rest) else vec[hidx.to(vec.device)]
        return full


class AblateOp(Op):
    def __init__(self, binding, iv, reference=None):
        super().__init__(binding, iv.positions, iv.apply_to)
        self.iv, self.reference = iv, reference  # mean tensor, or list of per-row tensors

    def __call__(self, x, ctx):
        sel = self.mask(x, ctx)
        if not sel.any():
            return None
        return self.only_heads(x, self._ablate(x, ctx, sel), self.head_index(x))

    def _ablate(self, x, ctx, sel):
        if self.iv.method == "zero":
            return torch.zeros_like(x) if sel.full else x.masked_fill(sel.expand(x), 0)
        if self.iv.method == "mean":
            mean = self.reference.to(device=x.device, dtype=x.dtype)
            if tuple(mean.shape) != tuple(x.shape[2:]):
                raise ShapeMismatchError(f"Reference mean {tuple(mean.shape)} does not fit {tuple(x.shape)}.")
            return mean.expand_as(x).clone() if sel.full else torch.where(sel.expand(x), mean, x)
        rows = self.reference
        g = torch.Generator().manual_seed(self.iv.seed)
        pick = torch.randint(len(rows), (x.shape[0],), generator=g)
        rank = ctx.rank()[:, ctx.window_start:]
        vals = []
        for b in range(x.shape[0]):
            r = rank[b][sel.cpu[b]]
            ref = rows[int(pick[b])]
            vals.append(ref[r.clamp(max=ref.shape[0] - 1)])
        return sel.put(x, torch.cat(vals))


class PatchOp(Op):
    def __init__(self, binding, iv, rows):
        super().__init__(binding, iv.positions, iv.apply_to)
        self.iv, self.rows = iv, rows  # per-row source values, each (n_b, ...)
        self._cat = None

    def __call__(self, x, ctx):
        sel = self.mask(x, ctx)
        if not sel.any():
            return None
        counts = sel.cpu.sum(1).tolist()
        if len(self.rows) != x.shape[0]:
            raise ShapeMismatchError(
                f"Patch source at {self.binding.name} has {len(self.rows)} rows but this batch has {x.shape[0]}."
            )
        hidx = self.head_index(x)
        want = tuple(x.shape[2:])
        sub = None if hidx is None else (len(hidx), *x.shape[3:])  # a source cached with the same heads=
        for b, n in enumerate(counts):
            src = self.rows[b]
            if src.shape[0] != n or tuple(src.shape[1:]) not in (want, sub):
                raise ShapeMismatchError(
                    f"Patch at {self.binding.name}, row {b}: source values have shape {tuple(src.shape)} but the "
                    f"target selects {n} positions of shape {want} (target activation {tuple(x.shape)})."
                )
        if self._cat is None or self._cat.device != x.device:
            self._cat = torch.cat(self.rows).to(x.device)
        if hidx is None:
            return sel.put(x, self._cat)
        vals = sel.take(x).clone()
        vals[:, hidx] = self._cat.to(vals.dtype) if tuple(self._cat.shape[1:]) == sub else self._cat[:, hidx].to(vals.dtype)
        return sel.put(x, vals)


class EditOp(Op):
    def __init__(self, binding, iv):
        super().__init__(binding, iv.positions, iv.apply_to)
        self.iv = iv

    def __call__(self, x, ctx):
        sel = self.mask(x, ctx)
        if not sel.any():
            return None
        acts = sel.take(x)
        new = self.iv.fn(acts)
        if not isinstance(new, torch.Tensor) or new.shape != acts.shape:
            raise ShapeMismatchError(
                f"Edit fn at {self.binding.name} must return a tensor of shape {tuple(acts.shape)}, "
                f"got {getattr(new, 'shape', type(new).__name__)}."
            )
        return sel.put(x, new)


class KnockoutOp(Op):
    """Cut query→key edges on canonical (B, Q, H, K) scores (mask) or weights (zero)."""

    def __init__(self, binding, iv):
        super().__init__(binding, iv.queries, iv.apply_to)
        self.iv = iv

    def _edges(self, ctx, B, Q, H, K) -> torch.Tensor:
        """CPU (B, Q, H|1, K) bool tensor of the edges to cut (memoised per forward)."""
        key = ("edges", id(self), B, Q, H, K)
        e = ctx.memo.get(key)
        if e is not None:
            return e
        qm = window_mask(ctx, self.positions, self.apply_to)  # (B, Q)
        if self.iv.keys == "others":
            qpos = torch.arange(ctx.window_start, ctx.length)
            km = (qpos[:, None] != torch.arange(K)[None, :])[None] & ctx.attention_mask[:, None, :]
        else:
            km = P.resolve(self.iv.keys, ctx, check=ctx.window_start == 0)[:, None, :]  # (B, 1, K)
        e = qm[:, :, None, None] & km[:, :, None, :]
        if self.iv.heads is not None:
            heads = [self.iv.heads] if isinstance(self.iv.heads, int) else list(self.iv.heads)
            hm = torch.zeros(H, dtype=torch.bool)
            hm[heads] = True
            e = e & hm[None, None, :, None]
        ctx.memo[key] = e
        return e

    def __call__(self, x, ctx):
        B, Q, H, K = x.shape
        if K < ctx.length:
            raise PositionError(
                f"Knockout at {self.binding.name}: attention has {K} keys but the sequence has {ctx.length} "
                "positions (sliding-window caches are not supported for knockout)."
            )
        edges = self._edges(ctx, B, Q, H, ctx.length)
        if K > ctx.length:  # a static KV cache: slots past the sequence are not written yet (masked)
            edges = torch.nn.functional.pad(edges, (0, K - ctx.length))
        if not bool(edges.any()):
            return None
        key = ("edges_dev", id(self), str(x.device))
        dev = ctx.memo.get(key)
        if dev is None:
            dev = ctx.memo[key] = edges.to(x.device, non_blocking=True)
        fill = 0.0 if self.iv.method == "zero" else torch.finfo(x.dtype).min
        return x.masked_fill(dev, fill)
