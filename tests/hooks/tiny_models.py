"""Tiny random HF models of every transformers-backed text/protein family, for known-answer tests."""
from __future__ import annotations

import torch

V = 64


def _small(**kw):
    base = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, vocab_size=V,
                max_position_embeddings=64, pad_token_id=0)
    base.update(kw)
    return base


def build(family: str, seed: int = 0, attn_implementation: str = "sdpa"):
    import transformers as T

    torch.manual_seed(seed)
    if family == "gpt2":
        cfg = T.GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=V, n_positions=64, bos_token_id=1, eos_token_id=2,
                           pad_token_id=0)
        cls = T.GPT2LMHeadModel
    elif family == "llama":
        cfg, cls = T.LlamaConfig(**_small(num_key_value_heads=2)), T.LlamaForCausalLM
    elif family == "mistral":
        cfg, cls = T.MistralConfig(**_small(num_key_value_heads=2, sliding_window=None)), T.MistralForCausalLM
    elif family == "qwen2":
        cfg, cls = T.Qwen2Config(**_small(num_key_value_heads=2)), T.Qwen2ForCausalLM
    elif family == "gemma":
        cfg, cls = T.GemmaConfig(**_small(num_key_value_heads=2, head_dim=8)), T.GemmaForCausalLM
    elif family == "gemma2":
        cfg, cls = T.Gemma2Config(**_small(num_key_value_heads=2, head_dim=8, sliding_window=16)), T.Gemma2ForCausalLM
        attn_implementation = "eager"
    elif family == "esm":
        cfg = T.EsmConfig(**_small(position_embedding_type="rotary", mask_token_id=32, token_dropout=False,
                                   pad_token_id=1, layer_norm_eps=1e-5, emb_layer_norm_before=False))
        cls = T.EsmForMaskedLM
    else:
        raise KeyError(family)
    cfg._attn_implementation = attn_implementation
    model = cls(cfg).eval()
    return model


CAUSAL = ["gpt2", "llama", "mistral", "qwen2", "gemma", "gemma2"]
ALL = CAUSAL + ["esm"]


def batch(family: str, B: int = 3, P: int = 7, seed: int = 1, pad_side: str = "right"):
    """Random ids with ragged lengths; ESM rows are <cls> residues <eos> <pad>."""
    g = torch.Generator().manual_seed(seed)
    lengths = [P - (i % 3) for i in range(B)]
    pad = 1 if family == "esm" else 0
    ids = torch.full((B, P), pad, dtype=torch.long)
    am = torch.zeros(B, P, dtype=torch.long)
    for b, n in enumerate(lengths):
        if family == "esm":
            row = torch.cat([torch.tensor([0]), torch.randint(4, 24, (n - 2,), generator=g), torch.tensor([2])])
        else:
            row = torch.randint(3, V, (n,), generator=g)
        if pad_side == "right":
            ids[b, :n], am[b, :n] = row, 1
        else:
            ids[b, P - n:], am[b, P - n:] = row, 1
    return {"input_ids": ids, "attention_mask": am}


def value_proj(family: str, layer: int) -> str:
    """Module path whose output holds the value vectors of ``layer``."""
    return {
        "gpt2": f"transformer.h.{layer}.attn.c_attn",
        "esm": f"esm.encoder.layer.{layer}.attention.self.value",
    }.get(family, f"model.layers.{layer}.self_attn.v_proj")


def out_proj(family: str, layer: int) -> str:
    return {
        "gpt2": f"transformer.h.{layer}.attn.c_proj",
        "esm": f"esm.encoder.layer.{layer}.attention.output.dense",
    }.get(family, f"model.layers.{layer}.self_attn.o_proj")


def save_toy_llama(path, n_layers: int = 2, seed: int = 0):
    """A random 2-layer-style Llama with :mod:`interp.toy_lm`'s word tokenizer, saved at ``path``
    (safetensors + tokenizer), for CLI tests that load a model by path."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from hooks.loading import save_pretrained_atomic
    from interp.toy_lm import make_tokenizer

    torch.manual_seed(seed)
    tok = make_tokenizer()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=n_layers,
                      num_attention_heads=4, num_key_value_heads=2, pad_token_id=0)
    save_pretrained_atomic(LlamaForCausalLM(cfg), tok, path)
    return path
