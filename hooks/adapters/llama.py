"""Llama family: Llama, Mistral, Qwen2/Qwen3 (pre-RMSNorm blocks ``model.layers``, GQA).

A pinned table: structural inference (:mod:`hooks.infer`) gives exactly this one
(tests/hooks/test_inference.py ``test_hand_written_tables_are_what_inference_gives``); it is kept so
that wrapping skips inference's recording forwards, and the VLM adapters reuse ``SITES``.
"""
from .base import Adapter, Site

SITES = {
    "embed": Site("embed_tokens"),
    "resid_pre": Site("layers.{L}", kind="input"),
    "attn_scores": Site("layers.{L}.self_attn", kind="attn", layout="attn"),
    "attn_pattern": Site("layers.{L}.self_attn", kind="attn", layout="attn"),
    "head_out": Site("layers.{L}.self_attn.o_proj", kind="input", layout="heads"),
    "attn_out": Site("layers.{L}.self_attn"),
    "resid_mid": Site("layers.{L}.post_attention_layernorm", kind="input", inplace=True),
    "mlp_out": Site("layers.{L}.mlp"),
    "resid_post": Site("layers.{L}"),
    "final": Site("norm"),
    "logits": Site("/lm_head", optional=True),
}

ADAPTER = Adapter(
    name="llama",
    model_types=("llama", "mistral", "qwen2", "qwen3"),
    bases=("model", ""),
    layers="layers",
    sites=SITES,
    attention_backend="hf",
)
