"""Structural inference, bottom layer: the config keys it reads, :class:`InferenceError`, and the
block ``ModuleList`` found in the module tree (:func:`find_blocks`). See :mod:`hooks.infer`.
"""
from __future__ import annotations

import re
from typing import Optional

import torch

from .infer_stack import _common
from .recording import _first_int, text_config

SKIP_TOWERS = ("vision", "visual", "image", "audio", "speech", "vqmodel", "vq_model", "img", "patch", "video",
               "encoder_model", "perceiver", "resampler", "mtp")
LAYER_KEYS = ("num_hidden_layers", "n_layer", "num_layers", "n_layers")
EXPERT_KEYS = ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts", "num_moe_experts")
ATTN_NAME = re.compile(r"(?i)^(?!.*(norm|layer|block|output|rotary|embedding)).*(attention|attn)")


class InferenceError(RuntimeError):
    """Structural inference could not find the canonical sites (the message says what was missing)."""


class _NoBlockList(InferenceError):
    """No ``ModuleList`` of the config's layer count: the layers may be one shared module (ALBERT)."""


# -- tree helpers ------------------------------------------------------------------------------
def _path_of(model, module) -> Optional[str]:
    if module is None:
        return None
    for name, m in model.named_modules():
        if m is module:
            return name
    return None


def find_blocks(model) -> str:
    """Path of the block ``ModuleList`` (length == the config's layer count, near the embeddings)."""
    cfg = text_config(model)
    n = _first_int(cfg, LAYER_KEYS)
    if n is None:
        raise InferenceError(f"the config ({type(cfg).__name__}) has none of {LAYER_KEYS}")
    emb = _path_of(model, model.get_input_embeddings()) if hasattr(model, "get_input_embeddings") else None
    cands = []
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.ModuleList) and len(m) == n:
            low = name.lower()
            if any(s in part for part in low.split(".") for s in SKIP_TOWERS):
                continue
            cands.append(name)
    if not cands:
        raise _NoBlockList(f"no ModuleList of length {n} (the config's layer count) outside vision/audio towers")
    if emb is not None:
        cands.sort(key=lambda p: (-_common(p, emb), len(p.split("."))))
    else:
        cands.sort(key=lambda p: len(p.split(".")))
    return cands[0]
