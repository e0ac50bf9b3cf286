"""HookedModel's per-forward batch context and generation bookkeeping (a mixin of :class:`hooks.model.HookedModel`).

A forward pre-hook on the model builds the :class:`hooks.positions.BatchContext` of every forward
(attention mask, token ids of the whole sequence so far, the window of this forward) that position
selectors, spans and ``apply_to`` read; :meth:`BatchContextMixin.generating` marks forwards as
generation steps. The attributes used here (``_ctx``, ``_ctx_users``, ``_ctx_handle``, ``_gen``,
``_prev_ids``, ``backend``, ``adapter``, ``tokenizer``, ``model``) are set by ``HookedModel.__init__``.
"""
from __future__ import annotations

import contextlib

import torch

from . import ops as O
from . import positions as P
from .errors import HookError
from .kv_cache import cache_length, find_kv_cache


class BatchContextMixin:
    """The batch context of each forward and generation bookkeeping of :class:`hooks.model.HookedModel`."""

    # -- batch context ------------------------------------------------------------
    def forget_window(self) -> None:
        """Forget the token ids seen so far. A forward whose window starts where the previous
        forward's ids ended (a decode step with a cache) is read as that run's continuation, so
        ``token()`` selectors and spans see the whole sequence; call this before a cached forward
        that continues a *different* batch (e.g. a suffix run over a shared prefix).

            hm.forget_window()
            hm.run({"input_ids": suffix, "attention_mask": mask}, ivs, cache=prefix_cache)
        """
        self._prev_ids = None

    def _acquire_context_hook(self):
        if self._ctx_users == 0:
            self._ctx_handle = self.model.register_forward_pre_hook(self._set_context, with_kwargs=True)
        self._ctx_users += 1

    def _release_context_hook(self):
        self._ctx_users -= 1
        if self._ctx_users == 0 and self._ctx_handle is not None:
            self._ctx_handle.remove()
            self._ctx_handle = None
            self._ctx = None

    def _set_context(self, module, args, kwargs):
        ids, am, shape = self.backend.call_inputs(args, kwargs)
        if shape is None:
            self._ctx = None
            return None
        B, q = shape
        O.TOKEN_ROWS.set(B)  # token-flattened sites (MoE router logits) are (B·q, E)
        # Masks are resolved on the CPU (one small copy per forward) so that selecting
        # positions never synchronises the device inside a hook.
        if am is None:  # e.g. transformers' generate drops an all-ones mask: count the cached past
            am = torch.ones(B, self._past_length(args, kwargs, q) + q, dtype=torch.bool)
        else:
            am = am.detach().to("cpu", torch.bool)
        L = am.shape[1]
        start = L - q
        if self._gen:
            self._gen["seen"] = L
        if ids is not None:
            prev = self._prev_ids
            if start == 0 or prev is None or prev.shape[1] != start or prev.shape[0] != ids.shape[0]:
                full = ids
            else:
                full = torch.cat([prev.to(ids.device), ids], 1)
            self._prev_ids = full
        else:
            full = None
        self._ctx = P.BatchContext(
            attention_mask=am,
            input_ids=full,
            window_start=start,
            prompt_len=self._gen.get("prompt_len"),
            span_fn=(lambda f=full, m=am: self.spans(None if f is None else f.cpu(), m)),
            tokenizer=self.tokenizer,
        )
        return None

    def _past_length(self, args, kwargs, q: int) -> int:
        """Cached positions before this forward when the model got no attention mask.

        Read from the KV cache object whatever transformers calls its argument; inside our
        own generation (:meth:`generating`) a forward with no visible cache counts the
        positions fed so far (a window shorter than what was seen continues it; one at
        least as long re-feeds the sequence, as ``use_cache=False`` does)."""
        kind, obj = find_kv_cache(args, kwargs)
        n = cache_length(kind, obj)
        seen = int(self._gen.get("seen", 0)) if self._gen else 0
        if kind is not None and n is not None and not (n == 0 and 0 < q < seen):
            return n  # (a cache reading 0 after our own prompt keeps its state elsewhere: RecurrentGemma)
        if self._gen:  # our own generation, no readable cache: the positions fed so far are known
            return seen if 0 < q < seen else 0
        if n is None:
            raise HookError(
                f"This forward got a KV cache of type {type(obj).__name__} without an attention mask, and the "
                "cache does not say how many positions it holds (get_seq_length() is missing or fails). Pass "
                "attention_mask covering past + new positions, or use a transformers Cache object."
            )
        return 0

    def _fallback_context(self, x: torch.Tensor) -> P.BatchContext:
        return P.BatchContext(attention_mask=torch.ones(x.shape[:2], dtype=torch.bool))

    def spans(self, input_ids, attention_mask) -> dict:
        """Named position spans of a batch (VLM modalities, ESM residues/cls/eos)."""
        if self.adapter.spans is None or input_ids is None:
            return {}
        return self.adapter.spans(self, input_ids, attention_mask.bool())

    @contextlib.contextmanager
    def generating(self, prompt_len: int):
        """Mark forwards inside the block as generation steps of a prompt of ``prompt_len``
        (padded) positions, so ``apply_to`` and windows resolve. Used by custom generators."""
        old = self._gen
        self._gen = {"prompt_len": int(prompt_len)}
        try:
            yield
        finally:
            self._gen = old
