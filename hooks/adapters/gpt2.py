"""GPT-2 (``GPT2LMHeadModel`` / ``GPT2Model``): pre-LN residual blocks ``transformer.h``.

A pinned table: structural inference (:mod:`hooks.infer`) gives exactly this one
(tests/hooks/test_inference.py ``test_hand_written_tables_are_what_inference_gives``); it is kept so
that wrapping skips inference's recording forwards.
"""
from .base import Adapter, Site

ADAPTER = Adapter(
    name="gpt2",
    model_types=("gpt2",),
    bases=("transformer", ""),
    layers="h",
    sites={
        "embed": Site("wte"),
        "resid_pre": Site("h.{L}", kind="input"),
        "attn_scores": Site("h.{L}.attn", kind="attn", layout="attn"),
        "attn_pattern": Site("h.{L}.attn", kind="attn", layout="attn"),
        "head_out": Site("h.{L}.attn.c_proj", kind="input", layout="heads"),
        "attn_out": Site("h.{L}.attn"),
        "resid_mid": Site("h.{L}.ln_2", kind="input", inplace=True),
        "mlp_out": Site("h.{L}.mlp"),
        "resid_post": Site("h.{L}"),
        "final": Site("ln_f"),
        "logits": Site("/lm_head", optional=True),
    },
    attention_backend="hf",
    n_heads=lambda m: m.config.n_head,
)
