"""Wrapping a built model in a :class:`~hooks.model.HookedModel` (with the load-time self-check).

    model = hooks.wrap(my_hf_model, tokenizer)                # HF, TransformerLens, fair-esm, peft, nnsight

Kept apart from :mod:`hooks.loading` (which reads checkpoints and dispatches to the TransformerLens /
fair-esm loaders in :mod:`hooks.adapters`): those loaders call :func:`wrap`, and importing it from
here keeps the imports one-way (loading -> adapters -> wrapping).
"""
from __future__ import annotations

import torch

from .adapters.base import rebase
from .hf_backend import set_bos_policy
from .model import HookedModel


def wrap(model: torch.nn.Module, tokenizer_or_processor=None, *, adapter=None, verify: bool = True,
         prepend_bos=None) -> HookedModel:
    """Wrap a built model (HF, TransformerLens, fair-esm, or a peft ``PeftModel``) in a :class:`HookedModel`.

    ``verify=True`` runs the load-time self-check (:mod:`hooks.verify`, one forward on a few
    tokens): residual sites that disagree with the model's own hidden states are removed with a warning.
    ``prepend_bos``: this wrap's BOS policy for texts (default True: position 0 is BOS; see
    :mod:`hooks.hf_backend`)."""
    if type(model).__module__.startswith("nnsight") and isinstance(getattr(model, "_module", None), torch.nn.Module):
        # an nnsight NNsight / LanguageModel: hook the module it wraps, with its own tokenizer
        tokenizer_or_processor = tokenizer_or_processor or getattr(model, "tokenizer", None)
        model = model._module
    if hasattr(model, "peft_config") and hasattr(model, "get_base_model"):
        model = model.get_base_model()  # a peft model: the LoRA layers live inside the base model's modules
    if adapter is not None:
        adapter = rebase(adapter, model)
        if adapter.extends_inferred:  # a thin override (e.g. hooks.adapters.esm): on top of the inferred table
            from .adapters import on_inferred
            from .infer import infer_adapter

            adapter = on_inferred(adapter, infer_adapter(model))
    model.eval()
    tok = tokenizer_or_processor
    hm = HookedModel(model, getattr(tok, "tokenizer", tok), adapter)
    hm.processor = tok if tok is not None and hasattr(tok, "tokenizer") else None
    set_bos_policy(hm, prepend_bos)
    if verify:
        from .verify import self_check

        self_check(hm)
    return hm
