"""Adapter registry. ``FAMILIES`` lists the hand-written files in match order.

Transformers models without one get an inferred table (:mod:`hooks.infer`). The files here are
pinned tables proven equal to inference (gpt2, llama, gemma: they spare the recording forwards),
thin overrides on the inferred table (esm: ``extends_inferred=True``, CLS/EOS spans) or what
inference cannot reach (fair-esm, TransformerLens, VLM image spans). To add one, write
``hooks/adapters/<family>.py`` defining ``ADAPTER`` (or ``ADAPTERS``) — see
:mod:`hooks.adapters.base` — and append its name here.
"""
from __future__ import annotations

import importlib

from ..errors import UnsupportedModelError
from .base import Adapter, Site, rebase  # noqa: F401 (rebase re-exported)

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
    cfg = getattr(model, "config", None)
    why = "it is not a transformers model"
    for a in adapters:
        if a.matches(model) and not a.extends_inferred:
            return rebase(a, model)
        if a.matches(model) and infer:
            from ..infer import InferenceError, infer_adapter

            try:
                return on_inferred(rebase(a, model), infer_adapter(model))
            except InferenceError as e:
                why = f"structural inference (which the {a.name} adapter extends) failed: {e}"
                break
    else:
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


def on_inferred(override: Adapter, inferred: Adapter) -> Adapter:
    """A thin override on top of the inferred table: the override's global sites replace the
    inferred ones, its ``{L}`` sites replace each layer's, and its name, notes and spans win."""
    from dataclasses import replace

    layer_sites = [dict(d) for d in inferred.extra.get("layer_sites") or []]
    sites = dict(inferred.sites)
    for kind, site in override.sites.items():
        if "{L}" in site.path:
            for L, d in enumerate(layer_sites):
                d[kind] = replace(site, path=site.path.format(L=L))
        else:
            sites[kind] = site
    absent = {k: v for k, v in (inferred.extra.get("absent") or {}).items() if k.split(".")[0] not in override.sites}
    return replace(inferred, name=override.name, sites=sites, spans=override.spans or inferred.spans,
                   notes=f"{override.notes or override.name} over {inferred.notes}",
                   extra={**inferred.extra, **override.extra, "layer_sites": layer_sites, "absent": absent})


__all__ = ["Adapter", "Site", "find_adapter", "all_adapters", "FAMILIES"]
