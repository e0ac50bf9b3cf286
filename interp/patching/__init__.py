"""Circuit discovery by patching: batched activation-patching sweeps, attribution patching
and path patching, with one tidy output schema (``site, layer, head, position, effect``).

    from interp.patching import activation_patching, attribution_patching
    df = activation_patching(model, clean, corrupt, sites="head_out", by="layer,head",
                             answers=ans, distractors=dis)            # metric="logit_diff"
    atp = attribution_patching(model, clean, corrupt, sites="head_out", by="layer,head",
                               answers=ans, distractors=dis)
    heatmaps(df, "out/")                                              # labelled PNGs

Sweeps and path patching stack their variants on the batch dimension and, by default
(``fast=True``), compute only what a patch can change: rows whose source equals the base run
are not run, and modules that return before the patched site replay the base run's outputs
(:mod:`interp.patching.replay`); ``fast=False`` runs everything (the reference).

Shell: ``interp sweep --model M --data pairs.jsonl --sites attn_out --by layer,head --out DIR``.
Imports are lazy so that ``interp --help`` stays light.
"""
from __future__ import annotations

_EXPORTS = {
    "activation_patching": ".sweep", "sweep": ".sweep", "COLUMNS": ".sweep",
    "attribution_patching": ".attribution", "agreement": ".attribution",
    "path_patching": ".path",
    "prepare_pairs": ".common", "str_tokens": ".common",
    "heatmaps": ".plots",
}


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module 'interp.patching' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
