"""A synthetic MMLU-format data set, a word-level tokenizer and a tiny Llama, all offline.

Used by the tests, the notebook and ``interp landscape`` demos: the pipeline runs end to end
in seconds on a CPU. Each subject has its own vocabulary; a question mentions its correct
choice, so the answer is learnable (SFT can lower the loss below the letter prior).

    from interp.landscape.synthetic import make_synthetic_mcq, write_synthetic_mcq, build_tiny_model
    splits = make_synthetic_mcq(n_subjects=4, n_test=30, seed=0)     # {"test": [...], "dev": [...], ...}
    data_dir = write_synthetic_mcq("runs/mcq", splits)                 # test.jsonl, dev.jsonl, validation.jsonl
    model_dir = build_tiny_model("runs/tiny-llama", splits, seed=0)    # safetensors + tokenizer
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Sequence

from .data import LETTERS, MCQ
from .prompts import HEADER, format_subject

__all__ = ["SUBJECTS", "make_synthetic_mcq", "write_synthetic_mcq", "make_mcq_tokenizer", "make_tiny_llama",
           "build_tiny_model"]

_SUBJECT_WORDS = {
    "astronomy": "star planet orbit comet galaxy nebula moon quasar pulsar meteor eclipse telescope",
    "cell_biology": "cell protein enzyme membrane nucleus ribosome gene mitosis vesicle cytoplasm organelle lipid",
    "organic_chemistry": "acid base ester alkane benzene ketone amine polymer solvent catalyst isomer ion",
    "world_history": "empire treaty dynasty revolution pharaoh senate crusade colony monarch republic war harbor",
    "music_theory": "chord scale tempo rhythm melody octave interval cadence harmony sonata fugue timbre",
    "plate_geology": "rock magma fault crust mantle basalt granite quartz volcano erosion sediment tectonic",
}
SUBJECTS = tuple(_SUBJECT_WORDS)
_FILLER = "which what term best fits the following describes concept is most related to".split()
_TOKEN_RE = r"\n|[^\w\s]|\w+"


def make_synthetic_mcq(n_subjects: int = 4, n_test: int = 30, *, n_dev: int = 5, n_validation: int = 8,
                       n_choices: int = 4, seed: int = 0) -> dict:
    """Seeded MMLU-format splits ``{"test", "dev", "validation"}`` with ``n_*`` records per subject.

    A question is ``"which term best fits <w1> <w2> <correct> <w3> ?"`` with words of its
    subject; the choices are the correct word and ``n_choices - 1`` other subject words.
    """
    import numpy as np

    if not 1 <= n_subjects <= len(SUBJECTS):
        raise ValueError(f"n_subjects must be 1..{len(SUBJECTS)}, got {n_subjects}.")
    rng = np.random.default_rng(seed)
    out = {"test": [], "dev": [], "validation": []}
    sizes = {"test": n_test, "dev": n_dev, "validation": n_validation}
    for subject in SUBJECTS[:n_subjects]:
        words = _SUBJECT_WORDS[subject].split()
        for split, n in sizes.items():
            for _ in range(n):
                pick = rng.choice(len(words), size=n_choices, replace=False)
                choices = [words[i] for i in pick]
                answer = int(rng.integers(n_choices))
                context = [words[i] for i in rng.choice(len(words), size=3)]
                filler = [_FILLER[i] for i in rng.choice(len(_FILLER), size=2, replace=False)]
                pos = int(rng.integers(4))
                body = context[:pos] + [choices[answer]] + context[pos:]
                q = f"{filler[0]} {filler[1]} {' '.join(body)} ?"
                out[split].append(MCQ(q, tuple(choices), answer, subject))
    return out


def write_synthetic_mcq(directory, splits: dict) -> Path:
    """Write ``{split}.jsonl`` files (one record per line) into ``directory``; returns it."""
    from hooks.io import write_text_atomic

    d = Path(directory)
    for split, recs in splits.items():
        text = "".join(json.dumps(r.to_dict()) + "\n" for r in recs)
        write_text_atomic(d / f"{split}.jsonl", text)
    return d


def make_mcq_tokenizer(records: Sequence[MCQ] = (), extra_words: Sequence[str] = (),
                       letters: Sequence[str] = LETTERS):
    """A word-level ``PreTrainedTokenizerFast`` covering the MMLU template, ``records`` and every
    synthetic subject's words; newlines and punctuation are tokens, BOS is prepended, and each
    answer letter (``" A"`` ...) is one token."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    texts = [HEADER, "Answer:", " ".join(letters), " ".join(_FILLER), " ".join(extra_words), "? . : ( )"]
    texts += [_SUBJECT_WORDS[s] + format_subject(s) for s in SUBJECTS]
    for r in records:
        texts += [r.question, " ".join(r.choices), format_subject(r.subject)]
    words = sorted({w for t in texts for w in re.findall(_TOKEN_RE, t)})
    vocab = {"<pad>": 0, "<bos>": 1, "<unk>": 2}
    for w in words:
        vocab.setdefault(w, len(vocab))
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"[ \t]+"), behavior="removed"),
        pre_tokenizers.Split(Regex(r"\n|[^\w\s]"), behavior="isolated"),
    ])
    tk.post_processor = processors.TemplateProcessing(single="<bos> $A", pair="<bos> $A $B",
                                                      special_tokens=[("<bos>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", bos_token="<bos>", unk_token="<unk>")


def make_tiny_llama(tokenizer, *, hidden_size: int = 48, n_layers: int = 4, seed: int = 0):
    """A randomly initialised Llama-architecture causal LM sized for CPU tests."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                      num_hidden_layers=n_layers, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=1024, pad_token_id=0, bos_token_id=1, eos_token_id=1,
                      tie_word_embeddings=False, initializer_range=0.1)
    model = LlamaForCausalLM(cfg)
    # random-init norms are all ones; perturb them so layers differ a little more
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def build_tiny_model(path, splits: dict | None = None, *, hidden_size: int = 48, n_layers: int = 4,
                     seed: int = 0) -> Path:
    """Save a tiny Llama + its word-level tokenizer (covering ``splits``) at ``path`` atomically."""
    from hooks.loading import save_pretrained_atomic

    recs = [r for v in (splits or {}).values() for r in v]
    tok = make_mcq_tokenizer(recs)
    model = make_tiny_llama(tok, hidden_size=hidden_size, n_layers=n_layers, seed=seed)
    save_pretrained_atomic(model, tok, path)
    return Path(path)
