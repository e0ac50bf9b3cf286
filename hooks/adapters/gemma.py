"""Gemma and Gemma 2 (Gemma 2 adds post-attention/post-MLP norms and logit soft-capping).

For Gemma 2 ``attn_out``/``mlp_out`` are the normalised contributions actually added to the
residual stream, so ``resid_mid = resid_pre + attn_out`` holds in both. Gemma 2's ``logits``
site is the unembedding output *before* final logit soft-capping (``tanh(x/c)·c``), which
has no module of its own; the model output (``RunResult.logits``) is capped as usual.

Pinned tables: structural inference gives exactly these (tests/hooks/test_inference.py
``test_hand_written_tables_are_what_inference_gives``); kept so that wrapping skips its forwards.
"""
from dataclasses import replace

from .base import Adapter, Site
from .llama import SITES

GEMMA = Adapter(
    name="gemma",
    model_types=("gemma",),
    bases=("model", ""),
    layers="layers",
    sites=SITES,
    attention_backend="hf",
)

GEMMA2 = replace(
    GEMMA,
    name="gemma2",
    model_types=("gemma2", "gemma3_text"),
    sites={
        **SITES,
        "attn_out": Site("layers.{L}.post_attention_layernorm"),
        "resid_mid": Site("layers.{L}.pre_feedforward_layernorm", kind="input", inplace=True),
        "mlp_out": Site("layers.{L}.post_feedforward_layernorm"),
    },
)

ADAPTERS = [GEMMA, GEMMA2]
