"""Compiled interventions: small callables run by the hooks on canonical activations.

Every op receives the activation in *canonical layout* — ``(B, q, ...)`` with the position
axis second (``q`` = positions in the current window) — and returns a replacement or
``None``. Attention sites are canonicalised from ``(B, H, Q, K)`` to ``(B, Q, H, K)``.
"""
from __future__ import annotations

import contextvars

import torch

from . import positions as P
from .errors import HookError, PositionError, ShapeMismatchError


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
