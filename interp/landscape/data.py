"""Multiple-choice question records in the MMLU format (Hendrycks et al., ICLR 2021).

A record is ``MCQ(question, choices, answer, subject)`` with ``answer`` the 0-based index
of the correct choice. Records come from

* a Hugging Face dataset id, read through ``datasets`` (offline from the local cache when
  the hub is unreachable), e.g. ``"cais/mmlu"`` (config ``"all"``; ``"cais/mmlu:all"``
  names the config explicitly), with splits ``test`` / ``dev`` / ``validation``;
* a local directory holding one file per split: ``test.jsonl`` (or ``.json``, ``.parquet``,
  ``.csv``), ``dev.*``, ``validation.*``;
* a single local file (json/jsonl/parquet/csv) with a ``split`` column.

Accepted columns: ``question``, ``subject``, ``answer`` (an int index, a digit string or a
letter ``"A".."D"``), and either ``choices`` (a list; in CSV a JSON list) or one column per
letter (``A``, ``B``, ``C``, ``D``).

Usage::

    from interp.landscape.data import load_split, cap_per_subject, sft_training_records
    test = cap_per_subject(load_split("cais/mmlu", "test"), cap=200, seed=0)   # ≤200/subject
    dev = load_split("cais/mmlu", "dev")                                     # few-shot pool
    train = sft_training_records(dev, load_split("cais/mmlu", "validation"))  # balanced SFT set

The per-subject cap (≤200 test questions per subject) and the dev+validation training set
balanced per subject follow Doimo et al., "The representation landscape of few-shot learning
and fine-tuning in large language models", NeurIPS 2024.
"""
from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from .errors import DataError

__all__ = ["MCQ", "LETTERS", "load_split", "records_from_rows", "cap_per_subject", "sft_training_records",
           "by_subject", "subjects_of"]

LETTERS = ("A", "B", "C", "D")
_EXTS = (".jsonl", ".json", ".parquet", ".csv")


@dataclass(frozen=True)
class MCQ:
    """One multiple-choice question; ``answer`` is the 0-based index into ``choices``."""

    question: str
    choices: tuple
    answer: int
    subject: str

    def to_dict(self) -> dict:
        return {"question": self.question, "choices": list(self.choices), "answer": self.answer,
                "subject": self.subject}


# ------------------------------------------------------------------------------------ parsing

def _choices_of(row: dict, where: str, letters: Sequence[str]) -> tuple:
    if "choices" in row and row["choices"] is not None:
        ch = row["choices"]
        if isinstance(ch, str):
            try:
                ch = json.loads(ch)
            except json.JSONDecodeError:
                raise DataError(f"{where}: 'choices' is the string {ch[:60]!r}, not a list; store it as a "
                                f"JSON list, e.g. [\"Paris\", \"Rome\", \"Oslo\", \"Bern\"].") from None
        if hasattr(ch, "tolist"):
            ch = ch.tolist()
        if not isinstance(ch, (list, tuple)):
            raise DataError(f"{where}: 'choices' must be a list of strings, got {type(ch).__name__}.")
        return tuple(str(c) for c in ch)
    cols = [L for L in letters if L in row]
    if not cols:
        raise DataError(f"{where}: no 'choices' column and no per-letter columns ({', '.join(letters)}); "
                        f"columns are {sorted(row)}. Add 'choices' (a list) or one column per letter.")
    return tuple(str(row[L]) for L in cols)


def _answer_of(value, n_choices: int, where: str, letters: Sequence[str]) -> int:
    ans = value
    if hasattr(ans, "item"):
        ans = ans.item()
    if isinstance(ans, str):
        s = ans.strip()
        if s.upper() in letters[:n_choices] and len(s) == 1:
            ans = letters.index(s.upper())
        elif s.lstrip("-").isdigit():
            ans = int(s)
        else:
            raise DataError(f"{where}: answer {value!r} is not a choice letter ({'/'.join(letters[:n_choices])}) "
                            f"nor an index; fix the record.")
    if isinstance(ans, float) and ans.is_integer():
        ans = int(ans)
    if isinstance(ans, bool) or not isinstance(ans, int):
        raise DataError(f"{where}: answer {value!r} must be an int index or a letter.")
    if not 0 <= ans < n_choices:
        raise DataError(f"{where}: answer {value!r} is outside the {n_choices} choices (valid: 0..{n_choices - 1} "
                        f"or {letters[0]}..{letters[n_choices - 1]}); fix or drop the record.")
    return ans


def records_from_rows(rows: Iterable[dict], *, split: str = "test", letters: Sequence[str] = LETTERS,
                      default_subject: str | None = None) -> list:
    """Validate raw rows (dicts) into :class:`MCQ` records.

    Every record must have the same number of choices, between 2 and ``len(letters)``.
    """
    out = []
    for i, row in enumerate(rows):
        where = f"split {split!r}, row {i}"
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected a mapping with question/choices/answer/subject, got {type(row).__name__}.")
        q = row.get("question")
        if q is None or (isinstance(q, float) and q != q):
            raise DataError(f"{where}: missing 'question' (columns: {sorted(row)}).")
        subject = row.get("subject", default_subject)
        if subject is None or str(subject).strip() == "":
            raise DataError(f"{where}: missing 'subject'; the landscape labels points by subject, so every record "
                            f"needs one (add a 'subject' column).")
        choices = _choices_of(row, where, letters)
        if not 2 <= len(choices) <= len(letters):
            raise DataError(f"{where}: {len(choices)} choices; need 2..{len(letters)} (one letter per choice).")
        if "answer" not in row:
            raise DataError(f"{where}: missing 'answer' (columns: {sorted(row)}).")
        ans = _answer_of(row["answer"], len(choices), f"{where} (subject {subject!r})", letters)
        out.append(MCQ(str(q), choices, ans, str(subject)))
    if out:
        n = {len(r.choices) for r in out}
        if len(n) > 1:
            raise DataError(f"split {split!r}: records have different numbers of choices {sorted(n)}; letter-logit "
                            f"accuracy and letter labels need the same number everywhere. Pad or filter the data.")
    return out


# ------------------------------------------------------------------------------------ loading

def _read_table(path: Path) -> list:
    suf = path.suffix.lower()
    if suf == ".jsonl":
        return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
    if suf == ".json":
        obj = json.loads(path.read_text())
        if isinstance(obj, dict):
            obj = obj.get("data", obj.get("examples", obj.get("rows")))
        if not isinstance(obj, list):
            raise DataError(f"{path}: expected a JSON list of records (or {{'data': [...]}}).")
        return obj
    if suf in (".parquet", ".csv"):
        import pandas as pd

        df = pd.read_parquet(path) if suf == ".parquet" else pd.read_csv(path, keep_default_na=False)
        return df.to_dict(orient="records")
    raise DataError(f"{path}: unsupported file type {suf!r}; use .jsonl, .json, .parquet or .csv.")


def _split_file(directory: Path, split: str) -> Path | None:
    for ext in _EXTS:
        p = directory / f"{split}{ext}"
        if p.exists():
            return p
    return None


def _load_hf(name: str, split: str) -> list:
    config = "all"
    if ":" in name:
        name, config = name.split(":", 1)
    try:
        import datasets

        ds = datasets.load_dataset(name, config, split=split)
    except Exception as e:  # noqa: BLE001 - network/cache/config errors all mean the same to the user
        raise DataError(
            f"could not load split {split!r} of the dataset {name!r} (config {config!r}) with `datasets` "
            f"({e.__class__.__name__}: {str(e)[:200]}). It is not a local path either. Download it once with "
            f"network access (it is then read offline from the HF cache), or pass a local directory with "
            f"test/dev/validation .jsonl/.json/.parquet/.csv files.") from None
    return [dict(r) for r in ds]


def load_split(source, split: str, *, letters: Sequence[str] = LETTERS) -> list:
    """Records of one split (``"test"``, ``"dev"``, ``"validation"``) from ``source``.

    ``source``: a directory with ``{split}.jsonl|json|parquet|csv``, one file with a ``split``
    column, or a Hugging Face dataset id (``"cais/mmlu"``, ``"cais/mmlu:all"``).
    """
    p = Path(str(source))
    if p.is_dir():
        f = _split_file(p, split)
        if f is None:
            raise DataError(f"{p} has no {split}.jsonl/.json/.parquet/.csv; add that file (the landscape reads test, "
                            f"few-shot prompts read dev, SFT reads dev and validation).")
        rows = _read_table(f)
    elif p.is_file():
        rows = _read_table(p)
        if rows and "split" not in rows[0]:
            if split != "test":  # a file without a split column is the evaluation set
                raise DataError(f"{p} has no 'split' column, so it has no {split!r} examples; add a 'split' column "
                                f"(test/dev/validation) or pass a directory with {split}.jsonl.")
        else:
            rows = [r for r in rows if str(r.get("split")) == split]
    elif p.suffix.lower() in _EXTS or str(source).startswith((".", "/")):
        raise DataError(f"data file {str(source)!r} does not exist.")
    else:
        rows = _load_hf(str(source), split)
    recs = records_from_rows(rows, split=split, letters=letters)
    if not recs:
        raise DataError(f"split {split!r} of {source} is empty.")
    return recs


# ------------------------------------------------------------------------------------ subsets

def by_subject(records: Sequence[MCQ]) -> "OrderedDict[str, list]":
    """Records grouped by subject (subjects sorted, records in their original order)."""
    groups: dict = {}
    for r in records:
        groups.setdefault(r.subject, []).append(r)
    return OrderedDict((s, groups[s]) for s in sorted(groups))


def subjects_of(records: Sequence[MCQ]) -> list:
    return sorted({r.subject for r in records})


def cap_per_subject(records: Sequence[MCQ], cap: int | None = 200, *, seed: int = 0) -> list:
    """At most ``cap`` records per subject, drawn with ``numpy.random.default_rng(seed)``
    (subjects in sorted order); kept records stay in their original order."""
    if cap is None:
        return list(records)
    if cap < 1:
        raise DataError(f"cap must be a positive number of questions per subject, got {cap}.")
    import numpy as np

    rng = np.random.default_rng(seed)
    idx_by_subject: dict = {}
    for i, r in enumerate(records):
        idx_by_subject.setdefault(r.subject, []).append(i)
    keep = []
    for s in sorted(idx_by_subject):
        idx = idx_by_subject[s]
        if len(idx) > cap:
            idx = sorted(rng.choice(idx, size=cap, replace=False).tolist())
        keep.extend(idx)
    return [records[i] for i in sorted(keep)]


def sft_training_records(dev: Sequence[MCQ], validation: Sequence[MCQ], *, per_subject: int | None = None,
                         seed: int = 0, subjects: Sequence[str] | None = None) -> list:
    """The SFT training set as Doimo et al. 2024 build it: dev + validation of every subject.

    diegodoimo/geometry_icl_finetuning, ``utils/dataset_utils.py`` (``construct_dataset`` with
    ``split="train"`` → ``"dev+validation"``; ``construct_balanced``): all examples, or with
    ``per_subject`` at most that many per subject (``min(per_subject, count)``, drawn with
    ``numpy.random.default_rng(seed)``, kept in dataset order). Subjects stay unbalanced; the
    training loss weights each example by ``N / (n_subjects * count_subject)``
    (:func:`subject_weights`, the paper's ``--weight_samples``). ``subjects``: the subjects
    that must be covered (e.g. those of the test set).
    """
    import numpy as np

    groups_dev, groups_val = by_subject(dev), by_subject(validation)
    all_subjects = sorted(set(groups_dev) | set(groups_val))
    if subjects is not None:
        missing = sorted(set(subjects) - set(all_subjects))
        if missing:
            raise DataError(f"no dev/validation examples for subject(s) {missing[:5]}; SFT needs training examples "
                            f"for every evaluated subject. Add them or drop those subjects from the test set.")
    if per_subject is not None and per_subject < 1:
        raise DataError(f"per_subject must be >= 1 or None (all dev+validation examples), got {per_subject}.")
    rng = np.random.default_rng(seed)
    out = []
    for s in all_subjects:
        pool = groups_dev.get(s, []) + groups_val.get(s, [])
        if per_subject is not None and per_subject < len(pool):
            pool = [pool[i] for i in sorted(rng.choice(len(pool), size=per_subject, replace=False).tolist())]
        out.extend(pool)
    return out


def subject_weights(records: Sequence[MCQ]) -> list:
    """Per-example loss weight ``N / (n_subjects * count_subject)`` (mean 1; each subject's total
    weight ``N / n_subjects``), as ``construct_dataset``'s ``sample_weight`` in
    diegodoimo/geometry_icl_finetuning ``utils/dataset_utils.py``."""
    from collections import Counter

    counts = Counter(r.subject for r in records)
    return [len(records) / (len(counts) * counts[r.subject]) for r in records]
