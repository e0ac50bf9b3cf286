"""Adapter registry. One file per family; ``FAMILIES`` lists them in match order.

To support a new architecture, add ``hooks/adapters/<family>.py`` defining ``ADAPTER``
(or ``ADAPTERS``) — see :mod:`hooks.adapters.base` — and append its name here.
"""
from __future__ import annotations

import importlib

from ..errors import UnsupportedModelError
from .base import Adapter, Site, rebase

FAMILIES = ["gpt2", "llama", "gemma", "esm", "fair_esm", "transformer_lens", "llava", "chameleon", "janus", "emu3"]


def all_adapters() -> list:
    out = []
    for fam in FAMILIES:
        try:
            mod = importlib.import_module(f"{__name__}.{fam}")
        except ModuleNotFoundError as e:
            if e.name and e.name.startswith(__name__):
                continue
            raise
        out.extend(getattr(mod, "ADAPTERS", None) or [mod.ADAPTER])
    return out


def find_adapter(model, infer: bool = True) -> Adapter:
    """The adapter for ``model``, rebased onto where its layers live.

    Hand-written adapters win; any other transformers model gets one inferred from its module
    tree and one recording forward (:func:`hooks.infer.infer_adapter`)."""
    adapters = all_adapters()
    for a in adapters:
        if a.matches(model):
            return rebase(a, model)
    cfg = getattr(model, "config", None)
    why = "it is not a transformers model"
    if infer and cfg is not None and hasattr(model, "get_input_embeddings"):
        from ..infer import InferenceError, infer_adapter

        try:
            return infer_adapter(model)
        except InferenceError as e:
            why = f"structural inference failed: {e}"
    raise UnsupportedModelError(
        f"No adapter for {type(model).__name__} (model_type={getattr(cfg, 'model_type', None)!r}): {why}. "
        f"Supported families: {', '.join(a.name for a in adapters)} (hand-written), and any other transformers "
        "model whose blocks structural inference can read (hooks.infer). To add one, write "
        "hooks/adapters/<family>.py with a declarative Adapter (see hooks/adapters/base.py) and list it in "
        "hooks.adapters.FAMILIES; raw module paths work meanwhile via interp.wrap(model, adapter=...) (the same as hooks.wrap)."
    )


__all__ = ["Adapter", "Site", "find_adapter", "all_adapters", "FAMILIES"]
