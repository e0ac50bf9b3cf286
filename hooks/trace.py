"""Traces: context managers that install our hooks and always remove them.

Usage (the forward runs when the block exits; results are read after it)::

    with model.trace(["The cat sat", "A dog"]) as tr:
        acts = tr.cache("resid_post.*", positions="last")
        tr.ablate("attn_out.3")
    acts["resid_post.5"].shape      # (2, d_model)
    tr.logits.shape                 # (2, P, vocab)

Without a batch, hooks stay active for every forward inside the block (baukit style)::

    with model.trace() as tr:
        tr.steer("resid_post.2", vector=v, scale=4.0)
        out = tr.run(batch_a)       # steered
        out = model.model(**inputs) # steered as well

Only the hooks a trace added are removed, in ``finally``, even when user code or an
intervention raises; hooks that users or other libraries (transformers' own output
capture, nnsight) registered are never touched. Traces nest: an inner trace's forward
also sees the outer trace's interventions.
"""
from __future__ import annotations

from typing import Optional

import torch

from . import attention, ops as O
from .calls import CallCounter
from .errors import HookError
from .interventions import Ablate, Cache, Edit, Intervention, Knockout, Patch, Steer


class _StopForward(Exception):
    """Raised by the stop hook of ``Trace(stop_after=...)``; caught by that trace only."""

    def __init__(self, trace):
        super().__init__("forward stopped early")
        self.trace = trace


class Trace:
    def __init__(self, hm, batch=None, *, grad: bool = False, internal: bool = False, stop_after=None,
                 **forward_kwargs):
        self.hm, self.batch, self.grad, self.internal = hm, batch, grad, internal
        self.stop_after = stop_after
        self.forward_kwargs = forward_kwargs
        self.output = None
        self.inputs = None
        self._entries: dict = {}  # binding name -> (binding, ops, remover)
        self._counters: dict = {}  # id(module) -> CallCounter, for per-call bindings (hooks.calls)
        self._stores: list = []
        self._active = False
        self._ran = False

    # -- context manager -------------------------------------------------
    def __enter__(self) -> "Trace":
        self.hm._acquire_context_hook()
        self._active = True
        return self

    def __exit__(self, et, ev, tb) -> bool:
        try:
            if et is None and self.batch is not None and not self._ran:
                self.run()
            self._finalize()
        finally:
            self.close()
        return False

    def close(self) -> None:
        """Remove every hook this trace added (idempotent)."""
        if not self._active:
            return
        self._active = False
        entries, self._entries = self._entries, {}
        counters, self._counters = self._counters, {}
        try:
            for _, _, remover in entries.values():
                remover()
            for c in counters.values():
                c.remove()
        finally:
            self.hm._release_context_hook()

    # -- declaring interventions --------------------------------------------
    def add(self, iv: Intervention):
        """Install an intervention; returns a :class:`CacheResult` for ``Cache``."""
        if not self._active:
            raise HookError("This trace is closed; declare interventions inside its `with` block.")
        if self._ran and self.batch is not None:
            raise HookError("The traced forward already ran; declare interventions before tr.run().")
        hm = self.hm
        if isinstance(iv, Cache):
            result = O.CacheResult()
            store = O.CacheStore(result)
            self._stores.append(store)
            for b in hm.resolve_sites(iv.sites):
                self._install(b, O.CacheOp(b, iv, store, self.grad))
            return result
        if isinstance(iv, Steer):
            for b in hm.resolve_sites(iv.sites):
                self._install(b, O.SteerOp(b, iv))
        elif isinstance(iv, Ablate):
            bindings = hm.resolve_sites(iv.sites)
            refs = hm._reference_stats(iv, bindings) if iv.how != "zero" else {}
            for b in bindings:
                self._install(b, O.AblateOp(b, iv, refs.get(b.name)))
        elif isinstance(iv, Patch):
            bindings = hm.resolve_sites(iv.sites)
            rows = hm._patch_source(iv, bindings)
            for b in bindings:
                self._install(b, O.PatchOp(b, iv, rows[b.name]))
        elif isinstance(iv, Edit):
            for b in hm.resolve_sites(iv.site):
                self._install(b, O.EditOp(b, iv))
        elif isinstance(iv, Knockout):
            for b in hm.knockout_bindings(iv):
                self._install(b, O.KnockoutOp(b, iv))
        else:
            raise HookError(f"Unknown intervention {iv!r}.")
        return None

    def cache(self, sites="resid_post.*", positions="all", **kw):
        return self.add(Cache(sites, positions, **kw))

    def ablate(self, sites, positions="all", **kw):
        return self.add(Ablate(sites, positions, **kw))

    def patch(self, sites, positions="all", **kw):
        return self.add(Patch(sites, positions, **kw))

    def steer(self, sites, positions="all", **kw):
        return self.add(Steer(sites, positions, **kw))

    def knockout(self, layers="all", **kw):
        return self.add(Knockout(layers, **kw))

    def edit(self, site, positions="all", fn=None, **kw):
        return self.add(Edit(site, positions, fn, **kw))

    # -- running -------------------------------------------------------------
    def run(self, batch=None, **forward_kwargs):
        """Run the model on ``batch`` (default: the trace's batch) with the hooks active."""
        if not self._active:
            raise HookError("This trace is closed.")
        batch = self.batch if batch is None else batch
        if batch is None:
            raise HookError("tr.run() needs a batch (none was given to model.trace()).")
        kw = {**self.forward_kwargs, **forward_kwargs}
        inputs = self.hm.prepare(batch, prepend_bos=kw.pop("prepend_bos", None))  # the BOS policy of this call
        stop = self._stop_hook() if self.stop_after is not None else None
        try:
            with self.hm.lock, torch.set_grad_enabled(self.grad):
                out = self.hm.forward(inputs, **kw)
        except _StopForward as e:
            if e.trace is not self:
                raise
            out = None
        finally:
            if stop is not None:
                stop.remove()
        self._ran = True
        self.inputs, self.output = inputs, out
        self._finalize()
        return out

    def _stop_hook(self):
        """A forward hook that ends the forward after ``stop_after`` (registered last, so every
        intervention at that site has run)."""
        b = self.hm.resolve_sites(self.stop_after)[-1]
        at_call = self._at_call(b)

        def stop(mod, args, output=None, _t=self):
            if at_call is None or at_call():
                raise _StopForward(_t)

        if b.kind == "input":
            return b.module.register_forward_pre_hook(lambda m, a: stop(m, a))
        return b.module.register_forward_hook(stop)

    @property
    def logits(self) -> Optional[torch.Tensor]:
        return None if self.output is None else self.hm.logits_of(self.output)

    def _finalize(self):
        for s in self._stores:
            s.finalize()

    # -- hooks -----------------------------------------------------------------
    def _at_call(self, binding):
        """``() -> bool``: is the module's call in progress the one ``binding`` names? None (every
        call) for ordinary bindings; for a per-call binding (``binding.call``: a module that runs once per
        layer, ALBERT) through one :class:`~hooks.calls.CallCounter` per module and trace."""
        if binding.call is None:
            return None
        key = id(binding.module)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = CallCounter(binding.module, binding.scope or self.hm.model)
        return lambda _c=counter, _i=binding.call: _c.index == _i

    def _install(self, binding, op) -> None:
        entry = self._entries.get(binding.name)
        if entry is not None:
            entry[1].append(op)
            return
        ops_list = [op]
        at_call = self._at_call(binding)
        if binding.kind == "attn":
            attention.require(self.hm.model, self.hm.attention_enabled)
            stage = "scores" if binding.name.startswith("attn_scores") else "pattern"

            def handler(st, t, _b=binding, _ops=ops_list, _stage=stage):
                return self._apply(_b, _ops, t) if st == _stage else None

            if at_call is not None:
                handler.active = at_call  # other calls of the module keep the stock attention

            attention.add_handler(binding.module, handler)
            remover = (lambda m=binding.module, h=handler: attention.remove_handler(m, h))
        elif binding.kind == "output":

            def fwd_hook(mod, args, output, _b=binding, _ops=ops_list):
                if at_call is not None and not at_call():
                    return None
                t = output[0] if isinstance(output, tuple) else output
                if not isinstance(t, torch.Tensor):
                    raise HookError(f"Site {_b.name} returns {type(t).__name__}, not a tensor; hook a submodule.")
                new = self._apply(_b, _ops, t)
                if new is None:
                    return None
                return (new, *output[1:]) if isinstance(output, tuple) else new

            remover = binding.module.register_forward_hook(fwd_hook).remove
        elif binding.kind == "input":

            def pre_hook(mod, args, kwargs, _b=binding, _ops=ops_list):
                if at_call is not None and not at_call():
                    return None
                if args and isinstance(args[0], torch.Tensor):
                    new = self._apply(_b, _ops, args[0])
                    return None if new is None else ((new, *args[1:]), kwargs)
                key = "hidden_states" if "hidden_states" in kwargs else next(
                    (k for k, v in kwargs.items() if isinstance(v, torch.Tensor)), None
                )
                if key is None:
                    raise HookError(f"Site {_b.name}: no tensor input found to hook.")
                new = self._apply(_b, _ops, kwargs[key])
                return None if new is None else (args, {**kwargs, key: new})

            remover = binding.module.register_forward_pre_hook(pre_hook, with_kwargs=True).remove
        else:
            raise HookError(f"Unknown binding kind {binding.kind!r}")
        self._entries[binding.name] = (binding, ops_list, remover)

    def _apply(self, binding, ops_list, native: torch.Tensor):
        hm = self.hm
        if hm._suspended and not self.internal:
            return None
        ctx = hm._ctx
        x = O.to_canon(native, binding.layout, binding.n_heads)
        if ctx is None or ctx.attention_mask.shape[0] != x.shape[0]:
            ctx = hm._fallback_context(x)
        full, off = None, binding.token_offset
        if off is not None and ctx is hm._ctx and x.shape[1] > ctx.length - ctx.window_start:
            # a stream longer than the input (Site.token_offset): ops see the tokens' positions only
            full, x = x, x[:, off:off + ctx.length - ctx.window_start]
        changed = False
        for op in ops_list:
            y = op(x, ctx)
            if y is not None:
                x, changed = y, True
        if not changed:
            return None
        if full is not None:
            full = full.clone()
            full[:, off:off + x.shape[1]] = x
            x = full
        new = O.from_canon(x, binding.layout)
        if binding.inplace:
            if torch.is_grad_enabled():
                native.copy_(new)
            else:
                with torch.no_grad():
                    native.copy_(new)
            return None
        return new
