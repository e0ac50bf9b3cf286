"""Tiny random models of every supported VLM class (the builders of tests/hooks/test_vlm_adapters.py),
wrapped with a word-level tokenizer, and pre-tokenised examples with one 8×8 image each."""
from __future__ import annotations

import torch

import hooks
from tests.hooks.test_vlm_adapters import (BOI, BOS, EMU3_HEADER, EMU3_TRAILER, EOI, FAMILIES, IMG, PAD)  # noqa: F401

CLASSES = ["w20", "w21", "w22"]


def tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": PAD, "<s>": BOS, "</s>": 2, "<image>": IMG, "<begin_of_image>": BOI, "<end_of_image>": EOI,
             **{f"w{i}": i for i in range(6, 63)}, "<unk>": 63}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", padding_side="left")


EMU3_EOF = 24  # EMU3_TRAILER: the id the tiny Emu3 prompts use for <|extra_201|>


def build(family: str):
    model = FAMILIES[family][0]()
    if family == "emu3":  # name <|extra_201|> so the layout finds Emu3's [EOI] pair (as a real Emu3 vocabulary does)
        model.config.vocabulary_map = {**model.config.vocabulary_map, "<|extra_201|>": EMU3_EOF}
    return hooks.wrap(model, tokenizer())


def examples(family: str, n: int = 12, seed: int = 0, post=None) -> list:
    """Prompts ``<s> w7? [block] w8 w9 (w10)``, labels cycling over CLASSES, random pixels."""
    _, n_img, boi, eoi, extra = FAMILIES[family]
    if family == "janus":
        eoi = EOI  # Janus' processor writes <end_of_image>; our tokenizer knows it, so the adapter finds it
    head, tail = (EMU3_HEADER, EMU3_TRAILER) if family == "emu3" else ([], [])
    block = ([boi] if boi else []) + head + [IMG] * n_img + tail + ([eoi] if eoi else [])
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        pre = [BOS, 7] if i % 2 else [BOS]
        tail_text = post if post is not None else ([8, 9] if i % 3 else [8, 9, 10])
        lab = CLASSES[i % len(CLASSES)]
        e = {"input_ids": pre + block + tail_text, "pixel_values": torch.randn(3, 8, 8, generator=g),
             "label": i % len(CLASSES), "label_name": lab, "candidates": list(CLASSES), "answers": [lab] * 10,
             "captions": [f"{lab} w30 w31", "w30 w32"]}
        if "image_sizes" in extra:
            e["image_sizes"] = torch.tensor([8, 8])
        out.append(e)
    return out
