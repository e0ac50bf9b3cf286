"""Task metrics of the narrow-gate ablation tables (Serra et al. 2025, Table 1).

* :func:`vqa_accuracy` — the official VQAv2 accuracy: after the official answer normalisation
  (lower case, punctuation, articles, number words, contractions), the average over the 10
  leave-one-annotator-out subsets of ``min(#matching answers in the subset / 3, 1)``, then
  averaged over questions (VQA evaluation code, as the authors run it in
  RitAreaSciencePark/Narrow-gate ``evaluation_task/vqa/eval/eval_vqa.py::evaluate_VQA``). An
  answer given by 3 of 10 annotators scores 0.9, not 1.0.
* :func:`cider` — captioning CIDEr (Vedantam et al. 2015) with the reference implementation
  of ``pycocoevalcap`` (the coco-caption scorer: CIDEr-D, n = 1..4, σ = 6). Captions are
  lower-cased and punctuation-split in Python here (coco-caption's PTB tokenizer needs Java);
  pass ``tokenize=ptb_tokenize`` to use it when Java is available.
* :func:`classification_accuracy` — fraction of constrained answers equal to the label.

    vqa_accuracy(["two"], [["2"] * 4 + ["3"] * 6])      # 1.0
    vqa_accuracy(["2"], [["2"] * 3 + ["3"] * 7])        # 0.9 (official leave-one-out)
    cider(["a cat on a mat"], [["a cat sits on a mat", "the cat is on the mat"]])
"""
from __future__ import annotations

import re

from .errors import MissingDependencyError, TaskError

_CONTRACTIONS = {
    "dont": "don't", "doesnt": "doesn't", "isnt": "isn't", "arent": "aren't", "cant": "can't", "wont": "won't",
    "didnt": "didn't", "im": "i'm", "ive": "i've", "youre": "you're", "thats": "that's", "whats": "what's",
    "wasnt": "wasn't", "werent": "weren't", "hasnt": "hasn't", "havent": "haven't", "shouldnt": "shouldn't",
    "couldnt": "couldn't", "wouldnt": "wouldn't", "its": "it's", "lets": "let's", "theyre": "they're",
}
_NUMBERS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
            "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
_ARTICLES = {"a", "an", "the"}
_PUNCT = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!"]
_PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_NUM = re.compile(r"(\d)(,)(\d)")


def normalize_answer(ans: str) -> str:
    """The VQAv2 evaluation's answer processing (punctuation, digits, articles, contractions)."""
    s = str(ans).replace("\n", " ").replace("\t", " ").strip().lower()
    for p in _PUNCT:
        if (p + " " in s or " " + p in s) or re.search(_COMMA_NUM, s) is not None:
            s = s.replace(p, "")
        else:
            s = s.replace(p, " ")
    s = _PERIOD.sub("", s)
    words = []
    for w in s.split():
        w = _NUMBERS.get(w, w)
        if w in _ARTICLES:
            continue
        words.append(_CONTRACTIONS.get(w, w))
    return " ".join(words)


def vqa_score(prediction: str, answers) -> float:
    """One question, official VQAv2: ``mean_i min(#matches among the answers other than i / 3, 1)``.

    With n matching answers out of 10: 1.0 for n >= 4, 0.9 for n = 3, 0.6 for n = 2, 0.3 for n = 1.
    """
    if not answers:
        raise TaskError("A VQA example has no reference answers; VQAv2 examples carry 10 annotator answers.")
    p = normalize_answer(prediction)
    hits = [normalize_answer(a) == p for a in answers]
    n = sum(hits)
    return sum(min((n - h) / 3.0, 1.0) for h in hits) / len(hits)


def vqa_accuracy(predictions, references) -> float:
    """Mean :func:`vqa_score` over questions; ``references[i]`` is the list of answers of question i."""
    _same_length(predictions, references)
    return sum(vqa_score(p, r) for p, r in zip(predictions, references)) / max(len(predictions), 1)


def simple_tokenize(text: str) -> str:
    """Lower case, punctuation removed as coco-caption's PTB tokenizer does, words joined by spaces."""
    s = str(text).lower().replace("\n", " ")
    s = re.sub(r"(\w)(n't|'s|'re|'ve|'ll|'d|'m)\b", r"\1 \2", s)  # clitics as PTB splits them
    s = re.sub(r"([.,!?;:()\[\]{}\"`-]|'(?![a-z]))", r" \1 ", s)
    drop = {"''", "'", "``", "`", ".", "?", "!", ",", ":", "-", "--", "...", ";", "(", ")", "[", "]", "{", "}", '"'}
    return " ".join(w for w in s.split() if w not in drop)


def ptb_tokenize(captions: dict) -> dict:
    """coco-caption's Stanford PTB tokenizer (needs Java): ``{id: [str]} -> {id: [tokenized str]}``."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    return PTBTokenizer().tokenize({k: [{"caption": c} for c in v] for k, v in captions.items()})


def require_cider() -> None:
    """Fail before any work when CIDEr cannot be computed (``pycocoevalcap`` missing)."""
    try:
        from pycocoevalcap.cider.cider import Cider  # noqa: F401
    except ImportError:
        raise MissingDependencyError("CIDEr needs the pycocoevalcap package: pip install pycocoevalcap "
                                     "(checked before generating any caption).") from None


def cider(predictions, references, *, tokenize=None) -> float:
    """Corpus CIDEr(-D) of generated captions against reference captions (pycocoevalcap).

    ``references[i]`` is the list of reference captions of image i. Needs the ``pycocoevalcap``
    package (pure Python for CIDEr).
    """
    _same_length(predictions, references)
    try:
        from pycocoevalcap.cider.cider import Cider
    except ImportError:
        raise MissingDependencyError("CIDEr needs the pycocoevalcap package: pip install pycocoevalcap") from None
    if any(not r for r in references):
        raise TaskError("A captioning example has no reference captions; COCO/Flickr30k examples carry 5.")
    gts = {i: list(r) for i, r in enumerate(references)}
    res = {i: [p] for i, p in enumerate(predictions)}
    if tokenize is None:
        gts = {k: [simple_tokenize(c) for c in v] for k, v in gts.items()}
        res = {k: [simple_tokenize(c) for c in v] for k, v in res.items()}
    else:
        gts, res = tokenize(gts), tokenize(res)
    score, _ = Cider().compute_score(gts, res)
    return float(score)


def classification_accuracy(predictions, labels) -> float:
    """Fraction of predictions equal to the labels (compared after :func:`normalize_answer`)."""
    _same_length(predictions, labels)
    hits = sum(normalize_answer(p) == normalize_answer(t) for p, t in zip(predictions, labels))
    return hits / max(len(predictions), 1)


def _same_length(a, b):
    if len(a) != len(b):
        raise TaskError(f"{len(a)} predictions but {len(b)} references; they must pair up one to one.")
    if not len(a):
        raise TaskError("No predictions to score.")
