"""MMLU prompts (Hendrycks et al., ICLR 2021) and letter-logit accuracy.

The template of Doimo et al. (NeurIPS 2024), i.e. the original MMLU evaluation format::

    The following are multiple choice questions (with answers) about high school biology.

    <dev question 1>
    A. <choice>
    B. <choice>
    C. <choice>
    D. <choice>
    Answer: B

    ... (the first k dev examples of the same subject, in a random order drawn per question)
    <question>
    A. <choice>
    ...
    Answer:

The subject is written with spaces instead of underscores. As in the authors' code
(diegodoimo/geometry_icl_finetuning, ``utils/dataset_utils.py``, ``construct_prompt`` with
``random_order=True``) the k shots are the subject's first k dev examples, shuffled for every
question by one seeded generator run over the questions in order (``shuffle=False``: dataset
order). SFT training prompts carry no header (``construct_prompt_train``: question, choices,
``"Answer:"``): ``build_prompt(rec, header=False)``. A prediction is the letter whose
token gets the largest logit at the last prompt token (the one after ``"Answer:"``).

Usage::

    from interp.landscape.prompts import FewShotPrompter, letter_token_ids, letter_accuracy
    prompter = FewShotPrompter(dev_records, k=5)
    texts = prompter.prompts(test_records)
    ids = letter_token_ids(tokenizer)            # token ids of " A", " B", " C", " D" after "Answer:"
    acc = letter_accuracy(letter_logits, [r.answer for r in test_records])
"""
from __future__ import annotations

from typing import Sequence

import torch

from .data import LETTERS, MCQ, by_subject
from .errors import PromptError

__all__ = ["HEADER", "format_subject", "format_question", "build_prompt", "FewShotPrompter", "letter_token_ids",
           "letter_accuracy", "macro_accuracy", "predict_letters"]

HEADER = "The following are multiple choice questions (with answers) about{subject}.\n\n"


def format_subject(subject: str) -> str:
    """``"high_school_biology"`` -> ``" high school biology"`` (leading space, as MMLU's harness)."""
    return "".join(" " + part for part in subject.split("_"))


def format_question(rec: MCQ, *, include_answer: bool = False, letters: Sequence[str] = LETTERS) -> str:
    """The question, its lettered choices and ``"Answer:"`` (plus ``" X\\n\\n"`` for a shot)."""
    s = f"{rec.question.strip()}\n"
    for L, choice in zip(letters, rec.choices):
        s += f"{L}. {choice.strip()}\n"
    s += "Answer:"
    if include_answer:
        s += f" {letters[rec.answer]}\n\n"
    return s


def build_prompt(rec: MCQ, shots: Sequence[MCQ] = (), *, letters: Sequence[str] = LETTERS,
                 header: bool = True) -> str:
    """Header about ``rec.subject`` (unless ``header=False``), the solved ``shots`` in order, then
    ``rec`` up to ``"Answer:"``."""
    out = HEADER.format(subject=format_subject(rec.subject)) if header else ""
    for s in shots:
        out += format_question(s, include_answer=True, letters=letters)
    return out + format_question(rec, letters=letters)


class FewShotPrompter:
    """k-shot prompts with the first ``k`` dev examples of each question's subject, shuffled per
    question (``shuffle=True``, ``numpy.random.default_rng(seed)`` over the questions in order).

    Raises :class:`PromptError` when a subject has fewer than ``k`` dev examples.
    """

    def __init__(self, dev: Sequence[MCQ] = (), k: int = 0, *, letters: Sequence[str] = LETTERS,
                 shuffle: bool = True, seed: int = 0, header: bool = True):
        if int(k) != k or k < 0:
            raise PromptError(f"the number of shots must be an integer >= 0, got {k!r}.")
        self.k = int(k)
        self.letters = tuple(letters)
        self.pool = by_subject(dev)
        self.shuffle, self.seed, self.header = bool(shuffle), int(seed), bool(header)

    def shots_for(self, subject: str) -> list:
        if self.k == 0:
            return []
        pool = self.pool.get(subject, [])
        if len(pool) < self.k:
            raise PromptError(
                f"subject {subject!r} has {len(pool)} dev example(s) but {self.k}-shot prompts need {self.k}; "
                f"add dev examples for it, lower the number of shots, or drop the subject.")
        return pool[: self.k]

    def check(self, subjects: Sequence[str]) -> None:
        """Raise now (before any model work) if some subject cannot get ``k`` shots."""
        for s in sorted(set(subjects)):
            self.shots_for(s)

    def prompt(self, rec: MCQ, rng=None) -> str:
        """One prompt; ``rng`` (a numpy Generator) shuffles the shots (None: dataset order)."""
        shots = self.shots_for(rec.subject)
        if rng is not None:
            shots = [shots[i] for i in rng.permutation(len(shots))]
        return build_prompt(rec, shots, letters=self.letters, header=self.header)

    def prompts(self, records: Sequence[MCQ]) -> list:
        import numpy as np

        self.check([r.subject for r in records])
        rng = np.random.default_rng(self.seed) if self.shuffle else None
        return [self.prompt(r, rng) for r in records]


def letter_token_ids(tokenizer, letters: Sequence[str] = LETTERS, *, prefix: str = "Answer:") -> list:
    """Token id of each answer letter as the model sees it right after ``prefix``.

    The id is what tokenizing ``prefix + " A"`` adds to tokenizing ``prefix`` (so it works for
    BPE tokenizers, where it is the ``" A"`` token, and for SentencePiece ones, ``"▁A"``).
    Raises :class:`PromptError` when there is no tokenizer, or when a letter is not exactly one
    new token, or two letters share a token.
    """
    if tokenizer is None:
        raise PromptError("this model has no tokenizer, so answer letters cannot be mapped to tokens; load the model "
                          "with its tokenizer (hooks.load(path) or hooks.wrap(model, tokenizer)).")
    if not callable(tokenizer):
        raise PromptError(f"{type(tokenizer).__name__} is not a tokenizer (it is not callable); pass the model's "
                          f"tokenizer.")
    base = list(tokenizer(prefix, add_special_tokens=False)["input_ids"])
    ids = []
    for L in letters:
        full = list(tokenizer(f"{prefix} {L}", add_special_tokens=False)["input_ids"])
        extra = full[len(base):] if full[: len(base)] == base else None
        if extra is None or len(extra) != 1:
            raise PromptError(
                f"the tokenizer does not map the answer letter {L!r} to a single token after {prefix!r} "
                f"(tokens: {full}); letter-logit accuracy needs one token per letter. Use a tokenizer with single-"
                f"token letters or pass letter_ids=[...] explicitly.")
        ids.append(int(extra[0]))
    if len(set(ids)) != len(ids):
        raise PromptError(f"answer letters {list(letters)} map to repeated token ids {ids} (an unknown-token "
                          f"fallback?); the tokenizer must know each letter.")
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is not None and unk in ids:
        raise PromptError(f"answer letter {letters[ids.index(unk)]!r} maps to the unknown token; add it to the "
                          f"tokenizer's vocabulary.")
    return ids


def predict_letters(letter_logits: torch.Tensor) -> torch.Tensor:
    """Index of the largest letter logit per row (ties -> the first letter)."""
    return torch.as_tensor(letter_logits).argmax(dim=-1)


def letter_accuracy(letter_logits, answers) -> float:
    """Fraction of rows whose largest letter logit is the correct answer's letter."""
    logits = torch.as_tensor(letter_logits)
    ans = torch.as_tensor(list(answers) if not isinstance(answers, torch.Tensor) else answers)
    if logits.ndim != 2 or logits.shape[0] != ans.shape[0]:
        raise PromptError(f"letter_logits must be (N, n_letters) with one row per answer; got "
                          f"{tuple(logits.shape)} for {ans.shape[0]} answers.")
    if ans.numel() == 0:
        raise PromptError("no answers to score.")
    return float((predict_letters(logits) == ans.to(torch.long)).double().mean())


def macro_accuracy(letter_logits, answers, subjects) -> float:
    """Mean over subjects of each subject's letter accuracy (the paper's ``--compute_macro_accuracy``);
    :func:`letter_accuracy` is the micro (per-question) accuracy."""
    import numpy as np

    subjects = np.asarray(list(subjects))
    ok = (predict_letters(letter_logits) == torch.as_tensor(list(answers), dtype=torch.long)).numpy()
    if len(subjects) != len(ok):
        raise PromptError(f"{len(subjects)} subjects for {len(ok)} answers.")
    return float(np.mean([ok[subjects == s].mean() for s in np.unique(subjects)]))
