"""A tiny Pixtral-layout LLaVA (``LlavaForConditionalGeneration`` with a Pixtral vision tower and a
Mistral text model) and its ``PixtralProcessor`` over a word-level tokenizer: the processor writes
rows of ``[IMG]`` separated by ``[IMG_BREAK]`` and closes the image with ``[IMG_END]``."""
from __future__ import annotations

import transformers

import hooks

IMG, BRK, END = 10, 12, 13
WORDS = ["<unk>", "<s>", "</s>", "<pad>"] + [f"w{i}" for i in range(4, 10)] + ["[IMG]", "w11", "[IMG_BREAK]",
                                                                                "[IMG_END]"] + [f"w{i}" for i in range(14, 64)]


def tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers

    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", bos_token="<s>",
                                                eos_token="</s>", unk_token="<unk>", padding_side="left")


def image_block(h: int, w: int) -> list:
    """The ids ``PixtralProcessor.replace_image_token`` writes for an ``h × w``-patch image
    (transformers ``models/pixtral/processing_pixtral.py``: rows of ``[IMG]`` each closed by
    ``[IMG_BREAK]``, the last one by ``[IMG_END]``). Built by hand: the processor needs torchvision."""
    rows = [[IMG] * w + [BRK] for _ in range(h)]
    rows[-1][-1] = END
    return [t for r in rows for t in r]


def model():
    import torch

    torch.manual_seed(0)
    cfg = transformers.LlavaConfig(
        text_config=dict(model_type="mistral", vocab_size=len(WORDS), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                         pad_token_id=3, max_position_embeddings=256),
        vision_config=dict(model_type="pixtral", hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                           num_attention_heads=2, image_size=16, patch_size=4, head_dim=8),
        image_token_id=IMG, vision_feature_layer=-1, vision_feature_select_strategy="full",
        multimodal_projector_bias=True, projector_hidden_act="gelu")
    return transformers.LlavaForConditionalGeneration._from_config(cfg, attn_implementation="sdpa").eval()


def build():
    return hooks.wrap(model(), tokenizer())


def examples(n: int, size=(8, 12), seed: int = 0, post=(20, 21)) -> list:
    """Pre-tokenised ``<s> [image block] w20 w21`` examples with random pixels (patch 4: 2 × 3 patches)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    h, w = size[0] // 4, size[1] // 4
    return [{"input_ids": [1] + image_block(h, w) + list(post), "pixel_values": torch.randn(3, *size, generator=g),
             "image_sizes": torch.tensor(size), "label": i % 2, "label_name": f"w{30 + i % 2}",
             "candidates": ["w30", "w31"], "answers": [f"w{30 + i % 2}"] * 10} for i in range(n)]
