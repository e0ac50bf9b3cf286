"""Data rows with labelled answers: what ``interp run`` and ``interp sweep`` read.

    rows = read_rows("pairs.jsonl")      # [{"clean": ..., "corrupt": ..., "answer": ..., "distractor": ...}, ...]
    texts, answers, distractors = split_rows(rows, text_key=None)

``.jsonl``/``.json``/``.csv``/``.parquet`` files give one dict per row; any other input
(a ``.txt`` file, a list of strings or token-id lists) becomes ``{"text": x}`` rows.
"""
from __future__ import annotations

from pathlib import Path

from hooks.data import TEXT_KEYS, load_examples, pick_text_column, read_json_rows
from hooks.errors import HookError

TABLE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


def read_rows(data, text_key=None) -> list:
    """One dict per example."""
    if isinstance(data, (str, Path)) and Path(data).suffix.lower() in TABLE_SUFFIXES and Path(data).exists():
        p = Path(data)
        suf = p.suffix.lower()
        if suf in (".jsonl", ".json"):
            rows = read_json_rows(p)
        else:
            import pandas as pd

            df = pd.read_csv(p, keep_default_na=False) if suf == ".csv" else pd.read_parquet(p)
            rows = df.to_dict("records")
        if not isinstance(rows, list) or not rows:
            raise HookError(f"{p.name} holds no rows.")
        if isinstance(rows[0], dict):
            return [dict(r) for r in rows]
        return [{"text": r} for r in rows]
    if isinstance(data, list) and data and isinstance(data[0], dict):
        return [dict(r) for r in data]
    return [{"text": x} for x in load_examples(data, text_key)]


def _column(rows, key):
    vals = [r.get(key) for r in rows]
    vals = [None if (v is None or (isinstance(v, float) and v != v) or v == "") else v for v in vals]
    return None if all(v is None for v in vals) else vals


def split_rows(rows: list, text_key=None):
    """``(texts, answers or None, distractors or None)``."""
    # the one picking rule (hooks.data); "clean" last: a patching file's clean prompts are its text
    key = pick_text_column(sorted(rows[0]), text_key, keys=TEXT_KEYS + ("clean",))
    return [r[key] for r in rows], _column(rows, "answer"), _column(rows, "distractor")


def split_pairs(rows: list):
    """``(clean, corrupt, answers or None, distractors or None)`` of patching data."""
    missing = [k for k in ("clean", "corrupt") if k not in rows[0]]
    if missing:
        raise HookError(f"Patching data needs 'clean' and 'corrupt' fields in every row; missing {missing} "
                        f"(columns: {sorted(rows[0])}).")
    return [r["clean"] for r in rows], [r["corrupt"] for r in rows], _column(rows, "answer"), _column(rows, "distractor")
