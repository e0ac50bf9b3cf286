"""The toy world through a second family: a tiny *LLaVA* (CLIP-style vision tower, projector,
Llama decoder) whose images are pixels, not tokens.

Same task as :mod:`.world` (8 classes, 4 colours, evidence pooled over patches), but each of
the 36 patches of a 24×24 image is painted with a fixed random 4×4×3 pattern of its code
(:func:`paint`), so the image reaches the decoder through the vision tower and projector into
36 ``<image>`` positions, the processor-free pixel path of a non-native model. LLaVA has no
end-of-image marker: the gate candidate is the last image token (``lay.gate_name ==
"last_image"``), and ``[EOI]`` rows read ``last image``.

* ``llava_gated`` (shipped, seed 3, 800 steps): trained with the ``gated`` recipe of
  :mod:`.train` — text→image edges other than the last image token blocked for the first half,
  then plain attention with a penalty on the text's attention to the other image tokens.
  Unlike the Chameleon-class toy, it did **not** form a narrow gate: it learned to read the
  image tokens directly with a small attention mass (≈2%, in layer 0), so the
  last image token carries ~5% of the flow, knocking it out costs nothing, and ``img→text``
  drops the answers to chance (bench/RESULTS_narrow_gate.md). The test checks that the flow and
  the knockouts agree on that (no gate), through the LLaVA adapter and the pixel path.
  (A stronger penalty, 40 with 3/4 masked steps, did not recover the task: 0.22 accuracy.)

    hm = load_toy_model("llava_gated")
    exs = make_llava_examples(8, seed=0)           # pre-tokenised: input_ids + pixel_values
"""
from __future__ import annotations

import random

import torch

from . import world as W

N_SIDE, PATCH = 6, 4  # 6 × 6 patches of 4 × 4 pixels: a 24 × 24 image, 36 image tokens
N_IMG = N_SIDE * N_SIDE
KINDS = ("llava_gated",)


def codebook() -> torch.Tensor:
    """The fixed pixel pattern of each code: ``(N_CODES, 3, PATCH, PATCH)`` in [-1, 1]."""
    g = torch.Generator().manual_seed(1234)
    return torch.rand(W.N_CODES, 3, PATCH, PATCH, generator=g) * 2 - 1


_CODEBOOK = None


def paint(codes: list) -> torch.Tensor:
    """``(3, 24, 24)`` pixels of an image whose patch k (row-major) shows code ``codes[k]``."""
    global _CODEBOOK
    if _CODEBOOK is None:
        _CODEBOOK = codebook()
    p = _CODEBOOK[torch.tensor(codes)]  # (36, 3, P, P)
    return p.view(N_SIDE, N_SIDE, 3, PATCH, PATCH).permute(2, 0, 3, 1, 4).reshape(3, N_SIDE * PATCH, N_SIDE * PATCH)


def prompt_ids(question: str) -> list:
    v = W.VOCAB
    return [v["<s>"], *([v["<image>"]] * N_IMG), *(v[w] for w in W.QUESTIONS[question].split())]


def sample(rng: random.Random, question: str, cls: int, color: int) -> dict:
    codes = [0] * 0
    while len(codes) < N_IMG:  # the world's sampler draws N_PATCHES codes at a time
        codes += W.sample_image(rng, cls, color)
    codes = codes[:N_IMG]
    answer = W.CLASSES[cls] if question == "class" else W.COLORS[color]
    return {"input_ids": prompt_ids(question), "pixel_values": paint(codes), "question": question,
            "answer": answer, "answers": [answer] * 10,
            "candidates": list(W.CLASSES if question == "class" else W.COLORS), "label": cls,
            "label_name": W.CLASSES[cls], "color": color, "codes": codes}


def make_llava_examples(n: int, seed: int = 0, questions=("class", "color")) -> list:
    """``n`` pre-tokenised examples (``input_ids``, ``pixel_values``, ``answer``, ``candidates``, ...)."""
    rng = random.Random(seed)
    qs = list(questions)
    return [sample(rng, qs[i % len(qs)], rng.randrange(len(W.CLASSES)), rng.randrange(len(W.COLORS)))
            for i in range(n)]


def llava_config(*, hidden_size: int = 48, layers: int = 4, heads: int = 4):
    from transformers import LlavaConfig

    v = W.VOCAB
    return LlavaConfig(
        text_config=dict(model_type="llama", vocab_size=W.VOCAB_SIZE, hidden_size=hidden_size,
                         intermediate_size=2 * hidden_size, num_hidden_layers=layers, num_attention_heads=heads,
                         num_key_value_heads=heads, max_position_embeddings=64, pad_token_id=v["<pad>"],
                         bos_token_id=v["<s>"], eos_token_id=v["</s>"], tie_word_embeddings=False),
        vision_config=dict(model_type="clip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                           num_attention_heads=2, image_size=N_SIDE * PATCH, patch_size=PATCH),
        image_token_id=v["<image>"], vision_feature_layer=-1, vision_feature_select_strategy="default",
        pad_token_id=v["<pad>"], tie_word_embeddings=False)


def batch(rng: random.Random, n: int):
    """Training batch: ``(inputs with pixel_values, labels)``; the loss is on the answer and ``</s>``."""
    v = W.VOCAB
    rows, pix = [], []
    for _ in range(n):
        q = rng.choice(("class", "color"))
        e = sample(rng, q, rng.randrange(len(W.CLASSES)), rng.randrange(len(W.COLORS)))
        rows.append(e["input_ids"] + [v[e["answer"]], v["</s>"]])
        pix.append(e["pixel_values"])
    ids = torch.tensor(rows)
    labels = torch.full_like(ids, -100)
    labels[:, -2:] = ids[:, -2:]
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "pixel_values": torch.stack(pix)}, labels
