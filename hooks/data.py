"""Batched iteration over datasets: lists, ``datasets.Dataset`` objects and local files.

    for batch in iter_batches("prompts.jsonl", batch_size=16, text_key="text"):
        ...   # batch is a list of strings

Accepted: a list of strings/sequences, a ``datasets.Dataset`` (column ``text_key``, or the
first string column), a ``.txt`` file (one example per line), a ``.jsonl``/``.json`` file
(field ``text_key``), a ``.csv``/``.parquet`` file, or a ``.fasta`` file (sequences).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Iterator

from .errors import HookError

TEXT_KEYS = ("text", "sequence", "prompt", "seq")


def pick_text_column(columns, text_key=None, *, keys=TEXT_KEYS, error=HookError) -> str:
    """The column that holds the examples: ``text_key`` when given (it must be one of
    ``columns``), else the first of ``keys`` present; raises ``error`` naming the columns.

        pick_text_column(["id", "sequence"])                 # "sequence"
        pick_text_column(row.keys(), "question")             # "question" (or an error listing the keys)

    ``saes.data`` passes its own error class and token-id keys; one picking rule for both.
    """
    columns = list(columns)
    if text_key is not None:
        if text_key not in columns:
            raise error(f"Column {text_key!r} not found; available: {columns}. Pass text_key=... (--text-key on the "
                        "command line) with one of them.")
        return text_key
    for k in keys:
        if k in columns:
            return k
    raise error(f"No text column found (looked for {tuple(keys)}); pass text_key=... (--text-key on the command line). "
                f"Columns: {columns}.")


def read_fasta(path) -> list:
    seqs, cur = [], []
    for line in Path(path).read_text().splitlines():
        if line.startswith(">"):
            if cur:
                seqs.append("".join(cur))
            cur = []
        elif line.strip():
            cur.append(line.strip())
    if cur:
        seqs.append("".join(cur))
    return seqs


def read_json_rows(path) -> list:
    """The rows of a ``.jsonl`` file (one JSON value per line) or a ``.json`` file (a list, or a
    dict holding it under ``"data"`` or ``"examples"``)."""
    p = Path(path)
    if p.suffix.lower() == ".jsonl":
        return [json.loads(ln) for ln in p.read_text().splitlines() if ln.strip()]
    rows = json.loads(p.read_text())
    if isinstance(rows, dict):
        rows = rows.get("data", rows.get("examples"))
    return rows


def load_examples(data, text_key=None) -> list:
    """Materialise ``data`` as a list of examples (strings or sequences)."""
    if isinstance(data, (str, Path)) and Path(data).exists():
        p = Path(data)
        suf = p.suffix.lower()
        if suf in (".txt", ""):
            return [ln for ln in p.read_text().splitlines() if ln.strip()]
        if suf in (".fasta", ".fa", ".faa"):
            return read_fasta(p)
        if suf in (".jsonl", ".json"):
            rows = read_json_rows(p)
        elif suf in (".csv", ".parquet"):
            import pandas as pd

            df = pd.read_csv(p) if suf == ".csv" else pd.read_parquet(p)
            return [str(x) for x in df[pick_text_column(df.columns, text_key)].tolist()]
        else:
            raise HookError(f"Unsupported data file {p.name}; use .txt, .jsonl, .json, .csv, .parquet or .fasta.")
        if rows and isinstance(rows[0], dict):
            key = pick_text_column(rows[0].keys(), text_key)
            return [r[key] for r in rows]
        return list(rows)
    if isinstance(data, (str, Path)):
        if isinstance(data, str) and not any(sep in data for sep in "/\\") and not Path(data).suffix:
            return [data]
        raise HookError(f"Data file {str(data)!r} does not exist.")
    if hasattr(data, "column_names") and hasattr(data, "__getitem__"):  # datasets.Dataset
        key = pick_text_column(data.column_names, text_key)
        return list(data[key])
    if isinstance(data, Iterable):
        return list(data)
    raise HookError(f"Cannot iterate over {type(data).__name__}; pass a list, a Dataset or a file path.")


def iter_batches(data, batch_size: int = 8, *, text_key=None, progress: bool = True, desc: str = "batches") -> Iterator[list]:
    examples = load_examples(data, text_key)
    if not examples:
        raise HookError("The dataset is empty.")
    from .progress import track

    batches = (examples[i : i + batch_size] for i in range(0, len(examples), batch_size))
    yield from track(batches, desc, total=len(examples), unit="ex", step=len, enabled=progress)
