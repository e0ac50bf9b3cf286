"""Tiny random models of any registered transformers architecture, from its default config.

    from tools.tiny_configs import build
    model = build("gpt_neox", "causal")        # GPTNeoXForCausalLM with 2 layers, width 32

The default config of the model type is shrunk in place: layer counts to 2 (``layer_types``
and similar per-layer lists cut to the first occurrence of each kind, so hybrid stacks keep
one layer of each), widths to 32, heads to 4 (2 key/value heads), feed-forward widths to 64,
experts to 4 (2 per token); sub-configs (``text_config``, ``vision_config``...) are shrunk the
same way. Vocabulary sizes are kept (special-token ids live near their end). No weights are
downloaded.
"""
from __future__ import annotations

import torch

REGISTRIES = {
    "causal": "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES",
    "masked": "MODEL_FOR_MASKED_LM_MAPPING_NAMES",
    "image_text": "MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES",
}

AUTO = {"causal": "AutoModelForCausalLM", "masked": "AutoModelForMaskedLM", "image_text": "AutoModelForImageTextToText"}

N_LAYERS, WIDTH, HEADS, KV, HEAD_DIM, FF, EXPERTS, TOPK = 2, 32, 4, 2, 8, 64, 4, 2
SET = {
    # widths
    **dict.fromkeys(("hidden_size", "n_embd", "d_model", "embed_dim", "model_dim", "n_embed", "word_embed_proj_dim",
                     "projection_dim", "hidden_dim", "dim"), WIDTH),
    # layers
    **dict.fromkeys(("num_hidden_layers", "n_layer", "num_layers", "n_layers", "num_decoder_layers",
                     "num_encoder_layers", "encoder_layers", "decoder_layers", "depth"), N_LAYERS),
    # heads
    **dict.fromkeys(("num_attention_heads", "n_head", "num_heads", "n_heads", "encoder_attention_heads",
                     "decoder_attention_heads", "attention_heads"), HEADS),
    **dict.fromkeys(("num_key_value_heads", "n_head_kv", "num_kv_heads", "n_kv_heads", "multi_query_group_num",
                     "num_key_value_groups"), KV),
    **dict.fromkeys(("head_dim", "attention_head_dim", "kv_channels", "d_head", "attention_head_size", "d_kv",
                     "qk_head_dim_total"), HEAD_DIM),
    # feed-forward
    **dict.fromkeys(("intermediate_size", "ffn_dim", "n_inner", "d_ff", "ffn_hidden_size", "inner_hidden_size",
                     "decoder_ffn_dim", "encoder_ffn_dim", "mlp_dim", "hidden_act_dim", "d_inner"), FF),
    **dict.fromkeys(("moe_intermediate_size", "shared_expert_intermediate_size", "expert_intermediate_size",
                     "moe_ffn_hidden_size", "intermediate_size_mlp"), FF // 2),
    # experts
    **dict.fromkeys(("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts", "num_moe_experts"),
                    EXPERTS),
    **dict.fromkeys(("num_experts_per_tok", "moe_topk", "top_k", "num_selected_experts", "moe_k", "topk_group",
                     "n_group"), 1),
    "num_experts_per_tok": TOPK,
    "n_shared_experts": 1,
    # low-rank attention (DeepSeek MLA)
    "q_lora_rank": 16, "kv_lora_rank": 16, "qk_rope_head_dim": 8, "qk_nope_head_dim": 8, "v_head_dim": 8,
    # state-space / linear attention
    **dict.fromkeys(("state_size", "ssm_state_size", "mamba_d_state", "d_state"), 8),
    "time_step_rank": 8, "mamba_n_heads": 8, "mamba_head_dim": 8, "mamba_expand": 2, "expand": 2,
    "n_groups": 1, "mamba_n_groups": 1,
    "linear_num_key_heads": 2, "linear_num_value_heads": 4, "linear_key_head_dim": 8, "linear_value_head_dim": 8,
    "rotary_dim": 4, "mamba_d_ssm": 64, "mamba_d_head": 8,
    "first_k_dense_replace": 1, "num_dense_layers": 1, "decoder_sparse_step": 1,
    # vision towers (keep images small)
    "image_size": 32, "patch_size": 8,
}
PER_LAYER_LISTS = ("layer_types", "layers_block_type", "block_types", "hybrid_override_pattern", "attn_type_list",
                   "layer_type_list")


def _shrink_pattern(v):
    """One layer of each kind, in order of first appearance (at least N_LAYERS layers)."""
    items = list(v) if isinstance(v, (str, list, tuple)) else None
    if not items:
        return v
    out = []
    for x in items:
        if x not in out:
            out.append(x)
    while len(out) < N_LAYERS:
        out.append(items[0])
    return "".join(out) if isinstance(v, str) else type(v)(out)


def shrink(cfg):
    """Shrink a config (and its sub-configs) in place; returns it."""
    from transformers import PretrainedConfig

    orig = dict(vars(cfg))
    for k, v in list(orig.items()):
        try:
            if isinstance(v, PretrainedConfig):
                shrink(v)
            elif k in SET and isinstance(v, int) and not isinstance(v, bool) and v > 0:
                setattr(cfg, k, min(v, SET[k]) if k not in ("image_size",) else SET[k])
            elif k in PER_LAYER_LISTS and v:
                setattr(cfg, k, _shrink_pattern(v))
            elif k.endswith("_period") and isinstance(v, int) and not isinstance(v, bool) and v > 2:
                setattr(cfg, k, 2)  # hybrid / MoE interleaving: one layer of each kind in 2 layers
            elif k.endswith("_offset") and isinstance(v, int) and not isinstance(v, bool) and v > 1:
                setattr(cfg, k, 1)
        except Exception:  # noqa: BLE001 - per-layer attributes some configs refuse to set globally
            continue
    if getattr(cfg, "model_type", None) == "esm":  # ESM-2's <pad> and <mask> ids (its tokenizer's vocabulary)
        cfg.pad_token_id, cfg.mask_token_id = 1, 32
    if "vocab_size" in orig and orig["vocab_size"] is None:  # e.g. ESM: the vocabulary comes with a tokenizer
        cfg.vocab_size = 64
    for hk, kk in (("num_attention_heads", "num_key_value_heads"), ("n_head", "n_head_kv")):
        if orig.get(hk) is not None and orig.get(hk) == orig.get(kk):  # multi-head (MLA needs kv == heads)
            try:
                setattr(cfg, kk, getattr(cfg, hk))
            except Exception:  # noqa: BLE001
                pass
    if all(isinstance(getattr(cfg, k, None), int) for k in ("num_heads", "head_dim", "expand", "hidden_size")) and \
            hasattr(cfg, "state_size"):  # Mamba-2: heads × head_dim = expand × hidden
        cfg.num_heads = cfg.expand * cfg.hidden_size // cfg.head_dim
    for key in PER_LAYER_LISTS:  # the layer count follows the shrunk per-layer pattern
        lt = getattr(cfg, key, None)
        if isinstance(lt, (list, tuple, str)) and lt and key in orig:
            for nk in ("num_hidden_layers", "n_layer", "num_layers"):
                if isinstance(getattr(cfg, nk, None), int):
                    try:
                        setattr(cfg, nk, len(lt))
                    except Exception:  # noqa: BLE001
                        pass
            break
    for key in ("attn_layer_indices", "attention_layer_indices", "full_attn_idxs"):
        if key in vars(cfg):  # hybrids: one attention layer (None means "none" for Bamba)
            setattr(cfg, key, [1])
    mod = type(cfg).__module__
    mrope = any(t in mod for t in ("_vl", "omni", "glm4v", "glm46v", "paddleocr", "glm_ocr", "glmga", "glm5"))
    for attr in ("rope_parameters", "rope_scaling"):  # multimodal RoPE sections must sum to head_dim / 2
        rp = getattr(cfg, attr, None)
        if mrope and isinstance(rp, dict) and "mrope_section" not in rp and "num_attention_heads" in orig:
            rp["mrope_section"] = [2, 1, 1]  # the modeling code's default ([16, 24, 24]) fits head_dim 128 only
        if isinstance(rp, dict) and isinstance(rp.get("mrope_section"), (list, tuple)):
            sec = list(rp["mrope_section"])
            half = HEAD_DIM // 2
            new = [max(1, round(half * x / sum(sec))) for x in sec]
            new[0] += half - sum(new)
            rp["mrope_section"] = new
    heads = getattr(cfg, "num_attention_heads", None)
    kv = getattr(cfg, "num_key_value_heads", None)
    if isinstance(heads, int) and isinstance(kv, int) and heads % kv:
        cfg.num_key_value_heads = heads
    if getattr(cfg, "head_dim", None) is not None and isinstance(getattr(cfg, "hidden_size", None), int):
        pass
    return cfg


def model_class(model_type: str, registry: str):
    import transformers
    from transformers.models.auto import modeling_auto

    names = getattr(modeling_auto, REGISTRIES[registry])
    return getattr(transformers, names[model_type])


def build(model_type: str, registry: str = "causal", seed: int = 0, attn_implementation: str = "sdpa"):
    """A tiny random ``registry`` model of ``model_type`` (eval mode, float32)."""
    from transformers import AutoConfig

    import transformers

    cfg = shrink(AutoConfig.for_model(model_type))
    auto = getattr(transformers, AUTO[registry])
    torch.manual_seed(seed)
    try:
        model = auto.from_config(cfg, attn_implementation=attn_implementation)
    except (ValueError, ImportError):  # no sdpa for this architecture
        cfg = shrink(AutoConfig.for_model(model_type))
        model = auto.from_config(cfg, attn_implementation="eager")
    return model.float().eval()


def model_types(registry: str) -> list:
    from transformers.models.auto import modeling_auto

    return list(getattr(modeling_auto, REGISTRIES[registry]))
