"""interp — mechanistic interpretability for LLMs, VLMs and protein language models.

    import interp
    model = interp.load("gpt2")          # a hooks.HookedModel
    res = model.run(["Hello"], interventions=[interp.Cache("resid_post.*", positions="last")])

Heavy dependencies (transformers, TransformerLens, nnsight) are imported only when used:
``import interp`` itself stays light.
"""
from __future__ import annotations

__version__ = "0.1.0"

_HOOKS_EXPORTS = ("load", "wrap", "Cache", "Ablate", "Patch", "Steer", "Knockout", "Edit", "load_spec",
                  "save_spec", "token", "HookedModel")


def __getattr__(name):
    if name in _HOOKS_EXPORTS:
        import hooks

        return getattr(hooks, name)
    raise AttributeError(f"module 'interp' has no attribute {name!r}")


__all__ = list(_HOOKS_EXPORTS)
