"""hooks — a hook registry over HF transformers, TransformerLens and fair-esm models.

    import hooks
    model = hooks.load("gpt2")
    with model.trace(["The Eiffel Tower is in"]) as tr:
        acts = tr.cache("resid_post.*", positions="last")
        tr.knockout(layers=[5], queries="last", keys=0, mode="zero")
    print(acts["resid_post.11"].shape, tr.logits.shape)

Canonical sites: ``embed``, ``resid_pre.L``, ``resid_mid.L``, ``resid_post.L``,
``attn_out.L``, ``mlp_out.L``, ``head_out.L`` (B×P×H×D), ``attn_scores.L`` /
``attn_pattern.L`` (B×H×Q×K), ``router_logits.L`` (MoE, B×P×E), ``final``, ``logits``;
wildcards and module paths work too.
Depends on torch/transformers only (never on saes/steering/interp).
"""
from .errors import (AttentionNotSupportedError, HookError, PositionError, ShapeMismatchError, SpecError,
                     UnknownSiteError, UnsupportedModelError)
from .interventions import Ablate, Cache, Edit, Intervention, Knockout, Patch, Steer, dump_spec, load_spec, save_spec
from .loading import load
from .model import GenerateResult, HookedModel, RunResult
from .positions import token
from .wrapping import wrap

__all__ = [
    "load", "wrap", "HookedModel", "RunResult", "GenerateResult",
    "Cache", "Ablate", "Patch", "Steer", "Knockout", "Edit", "Intervention", "load_spec", "save_spec", "dump_spec",
    "token", "HookError", "UnknownSiteError", "PositionError", "ShapeMismatchError", "SpecError",
    "UnsupportedModelError", "AttentionNotSupportedError",
]
