"""The toy world: "images" are sequences of discrete patch tokens, as in native multimodal
models (Chameleon, Emu3) whose VQ tokenizer turns an image into codes of the shared vocabulary.

A prompt is ``<s> <racm3:break> c_1 … c_32 <eoss> what class ?`` (or ``what color ?``) and the
answer is a class name (8 classes) or a colour (4 colours), then ``</s>``. Each patch code is
drawn from the class's 4 signature codes (probability 0.3), the colour's 4 signature codes
(0.2) or uniformly from all 64 codes, so the answer needs evidence pooled over many patches —
no single patch decides it, and knocking out a few patches changes little.

The models are tiny *Chameleon* models (``ChameleonForConditionalGeneration``: 4 layers,
width 48, 4 heads), so they go through the same adapter, spans (``image`` = the ``IMGIMG*``
code tokens, ``boi`` = ``<racm3:break>``, ``eoi`` = ``<eoss>``), knockouts and patches as a
real Chameleon-7B. Two are trained by :mod:`.train` and shipped in ``toy_models/``:

* ``gated``: text→image-side keys other than ``[EOI]`` blocked for the first half of training,
  then plain attention with a penalty on the attention text pays to them — image information
  reaches the text only through ``[EOI]`` (the native-model case of Serra et al. 2025);
* ``free``: plain causal attention, with text→``[EOI]`` knocked out in a random half of the
  rows of every batch, so the text reads the image tokens themselves (the non-native,
  LLaVA-like case);
* ``register`` (a discovery test): prompts carry a register token ``<reg>`` between the last
  code and ``<eoss>``; training routes the image through ``<reg>``, not through the ``[EOI]``
  the layout names, with the edges chosen from token ids, not from :func:`.layout.image_layout`.
  The flow must find ``special[-2]`` (``<reg>``) from attention alone. (A register *after*
  ``<eoss>`` would be text to the layout, outside the image side the flow measures.)

    hm = load_toy_model("gated")
    exs = make_examples(8, seed=0)
    hm.run([e["text"] for e in exs]).logits[:, -1].argmax(-1)   # ids of the answers
"""
from __future__ import annotations

import random
from pathlib import Path

CLASSES = ("cat", "dog", "car", "ship", "bird", "frog", "horse", "truck")
COLORS = ("red", "green", "blue", "yellow")
QUESTIONS = {"class": "what class ?", "color": "what color ?"}
N_CODES, N_PATCHES = 64, 32
P_CLASS, P_COLOR = 0.3, 0.2
SPECIALS = ["<pad>", "<s>", "</s>", "<image>", "<racm3:break>", "<eoss>", "<unk>"]
WORDS = ["what", "class", "color", "?"]
REG = "<reg>"  # the register token of the "register" variant (after the colour words: shipped ids unchanged)
CODE_OFFSET = 32
VOCAB_SIZE = CODE_OFFSET + N_CODES
BOI, EOI = "<racm3:break>", "<eoss>"
TOY_MODEL_DIR = Path(__file__).resolve().parent.parent / "toy_models"
MODEL_KINDS = ("gated", "free")
VARIANT_KINDS = ("register", "llava_gated")  # trained on demand / shipped separately: a gate the layout does not name


def code_name(i: int) -> str:
    """Chameleon's name of image code ``i``: ``IMGIMG`` + digits written A–J + ``Z``."""
    return "IMGIMG" + "".join(chr(ord("A") + int(d)) for d in f"{i:02d}") + "Z"


def vocab() -> dict:
    v = {t: i for i, t in enumerate(SPECIALS)}
    for w in WORDS + list(CLASSES) + list(COLORS) + [REG]:
        v[w] = len(v)
    assert len(v) <= CODE_OFFSET
    for i in range(N_CODES):
        v[code_name(i)] = CODE_OFFSET + i
    return v


VOCAB = vocab()
CODE_NAMES = [code_name(i) for i in range(N_CODES)]


def make_tokenizer():
    """A whitespace word-level tokenizer over the toy vocabulary (left padding)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.WordLevel(vocab=dict(VOCAB), unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                  unk_token="<unk>", padding_side="left")
    return tok


def toy_config(*, hidden_size: int = 48, layers: int = 4, heads: int = 4):
    """The tiny ChameleonConfig of the toy models (vocabulary_map = the toy vocabulary)."""
    from transformers import ChameleonConfig

    v = dict(VOCAB)
    return ChameleonConfig(
        vocab_size=VOCAB_SIZE, hidden_size=hidden_size, intermediate_size=2 * hidden_size, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=64, vocabulary_map=v,
        pad_token_id=v["<pad>"], bos_token_id=v["<s>"], eos_token_id=v["</s>"], tie_word_embeddings=False,
        vq_config=dict(embed_dim=4, num_embeddings=N_CODES, latent_channels=4, resolution=8, base_channels=32,
                       channel_multiplier=[1], num_res_blocks=1, attn_resolutions=[]))


def sample_image(rng: random.Random, cls: int, color: int) -> list:
    """Patch codes of one image of class ``cls`` and colour ``color``."""
    codes = []
    for _ in range(N_PATCHES):
        u = rng.random()
        if u < P_CLASS:
            codes.append(4 * cls + rng.randrange(4))
        elif u < P_CLASS + P_COLOR:
            codes.append(4 * len(CLASSES) + 4 * color + rng.randrange(4))
        else:
            codes.append(rng.randrange(N_CODES))
    return codes


def _block(codes: list, register: bool) -> list:
    return [BOI, *(CODE_NAMES[c] for c in codes), *([REG] if register else []), EOI]


def prompt(codes: list, question: str, register: bool = False) -> str:
    """``<s> <racm3:break> codes… [<reg>] <eoss> question`` (``<reg>``: the register variant)."""
    return " ".join(["<s>", *_block(codes, register), QUESTIONS[question]])


def prompt_ids(codes: list, question: str, register: bool = False) -> list:
    """Token ids of :func:`prompt` without the tokenizer (used by training)."""
    v = VOCAB
    return [v["<s>"], *(v[t] for t in _block(codes, register)), *(v[w] for w in QUESTIONS[question].split())]


def example(rng: random.Random, question: str, cls: int, color: int, register: bool = False) -> dict:
    codes = sample_image(rng, cls, color)
    answer = CLASSES[cls] if question == "class" else COLORS[color]
    cands = list(CLASSES if question == "class" else COLORS)
    return {"text": prompt(codes, question, register), "image_text": prompt(codes, question, register),
            "text_image": " ".join(["<s>", QUESTIONS[question], *_block(codes, register)]),
            "question": question, "answer": answer, "answers": [answer] * 10,
            "candidates": cands, "label": cls, "label_name": CLASSES[cls], "color": color, "codes": codes}


def make_examples(n: int, seed: int = 0, questions=("class", "color"), register: bool = False) -> list:
    """``n`` toy examples (dicts with ``text``, ``answer``, ``answers``, ``candidates``, ``label``).

    ``answers`` repeats the answer 10 times, the VQAv2 format, so VQA accuracy is exact match.
    ``register=True``: prompts of the register variant (``<reg>`` between the codes and ``<eoss>``).
    """
    rng = random.Random(seed)
    qs = list(questions)
    return [example(rng, qs[i % len(qs)], rng.randrange(len(CLASSES)), rng.randrange(len(COLORS)), register)
            for i in range(n)]


def make_pairs(n: int, seed: int = 0) -> list:
    """``n`` (base, target) pairs of class questions with different classes (for EOI patching)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        b, t = rng.sample(range(len(CLASSES)), 2)
        out.append((example(rng, "class", b, rng.randrange(len(COLORS))),
                    example(rng, "class", t, rng.randrange(len(COLORS)))))
    return out


def chance(examples: list) -> float:
    """Accuracy of guessing uniformly among each example's candidates."""
    return sum(1.0 / len(e["candidates"]) for e in examples) / len(examples)


def load_toy_model(kind: str = "gated", path=None):
    """Load a shipped toy model (``"gated"`` or ``"free"``) as a ``hooks.HookedModel`` (float32, CPU)."""
    import hooks

    from ..errors import NarrowGateError

    if kind not in MODEL_KINDS + VARIANT_KINDS and path is None:
        raise NarrowGateError(f"Unknown toy model {kind!r}; use one of {MODEL_KINDS + VARIANT_KINDS}.")
    d = Path(path) if path is not None else TOY_MODEL_DIR / kind
    if not (d / "config.json").exists():
        raise NarrowGateError(f"No toy model at {d}; train them with `interp toy train-gate-models --out {d.parent}`.")
    hm = hooks.load(str(d), dtype="float32", local_files_only=True)
    hm.tokenizer.padding_side = "left"
    return hm
