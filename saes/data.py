"""Restartable, streaming iteration over examples, and dataset fingerprints.

    for ex in iter_examples("proteins.fasta", start=1000):   # skips the first 1000 records
        ...
    fingerprint("proteins.fasta")   # {"kind": "file", "source": ..., "sha256": ...}

Accepted data: a list/tuple of examples (texts, token-id lists, VLM ``{"text", "image"}``
dicts), a 2-D token tensor, a ``datasets.Dataset`` / ``IterableDataset``, or a file:
``.txt`` (one example per line), ``.jsonl`` (field ``text_key``), ``.fasta``/``.fa``/``.faa``
(records) — streamed line by line so memory stays bounded — and ``.json``/``.csv``/
``.parquet`` (read whole, through :func:`hooks.data.load_examples`). Data must be
re-iterable (a store restarts it for a second pass or when resuming): one-shot generators
are refused.
"""
from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path
from typing import Iterator

from .errors import DataError

TOKEN_KEYS = ("tokens", "input_ids")  # looked for after hooks.data.TEXT_KEYS: pre-tokenised data
STREAMED = (".txt", "", ".jsonl", ".fasta", ".fa", ".faa")


def _pick_key(columns, text_key):
    from hooks.data import TEXT_KEYS, pick_text_column  # here: importing hooks imports torch

    return pick_text_column(columns, text_key, keys=TEXT_KEYS + TOKEN_KEYS, error=DataError)


def _as_path(data):
    if isinstance(data, Path):
        return data
    if isinstance(data, str):
        p = Path(data)
        if not p.exists():
            raise DataError(f"Data file {data!r} does not exist; pass an existing .txt/.jsonl/.fasta/.csv/.parquet "
                            "file, a list of examples or a datasets.Dataset.")
        return p
    return None


def _lines(path: Path) -> Iterator[str]:
    with open(path, encoding="utf-8") as f:
        for ln in f:
            ln = ln.rstrip("\n")
            if ln.strip():
                yield ln


def _jsonl(path: Path, text_key) -> Iterator:
    key = None
    for i, ln in enumerate(_lines(path)):
        try:
            row = json.loads(ln)
        except json.JSONDecodeError as e:
            raise DataError(f"{path.name}, line {i + 1}: not valid JSON ({e.msg}).") from None
        if isinstance(row, dict):
            key = key or _pick_key(row, text_key)
            yield row[key]
        else:
            yield row


def _fasta(path: Path) -> Iterator[str]:
    cur: list = []
    for ln in _lines(path):
        if ln.startswith(">"):
            if cur:
                yield "".join(cur)
            cur = []
        else:
            cur.append(ln.strip())
    if cur:
        yield "".join(cur)


def _stream(data, text_key) -> Iterator:
    path = _as_path(data)
    if path is not None:
        suf = path.suffix.lower()
        if suf in (".txt", ""):
            return _lines(path)
        if suf == ".jsonl":
            return _jsonl(path, text_key)
        if suf in (".fasta", ".fa", ".faa"):
            return _fasta(path)
        from hooks.data import load_examples

        try:
            return iter(load_examples(path, text_key))
        except ValueError as e:
            raise DataError(str(e)) from None
    if hasattr(data, "column_names") and hasattr(data, "__getitem__") and hasattr(data, "__len__"):
        key = _pick_key(data.column_names, text_key)
        return (row for i in range(0, len(data), 1024) for row in data[i : i + 1024][key])
    if hasattr(data, "column_names") or type(data).__name__ == "IterableDataset":
        return _iterable_dataset(data, text_key)
    import torch

    if isinstance(data, torch.Tensor):
        if data.dim() != 2 or data.is_floating_point():
            raise DataError(f"A tensor dataset must be (examples, positions) token ids, got {tuple(data.shape)} {data.dtype}.")
        return iter(data)
    if isinstance(data, (list, tuple)):
        return iter(data)
    if iter(data) is data:
        raise DataError("Data is a one-shot iterator; pass a list, a file or a datasets.Dataset so it can be "
                        "re-read (stores restart it for a second pass and when resuming).")
    return iter(data)


def _iterable_dataset(data, text_key):
    key = None
    for row in data:
        key = key or _pick_key(row, text_key)
        yield row[key]


def iter_examples(data, *, text_key=None, start: int = 0) -> Iterator:
    """Yield examples of ``data`` from index ``start`` on (one pass)."""
    it = _stream(data, text_key)
    return itertools.islice(it, start, None) if start else it


def _canon(obj):
    """A JSON-able stand-in for an example: binary payloads (images, arrays) by content hash."""
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, dict):
        return {str(k): _canon(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_canon(v) for v in obj]
    if hasattr(obj, "tobytes") and hasattr(obj, "size") and hasattr(obj, "mode"):  # PIL image
        return {"image": [obj.mode, list(obj.size)], "sha256": hashlib.sha256(obj.tobytes()).hexdigest()}
    try:
        import numpy as np
        import torch

        if isinstance(obj, torch.Tensor):
            obj = obj.detach().cpu().numpy()
        if isinstance(obj, np.ndarray):
            return {"array": [str(obj.dtype), list(obj.shape)],
                    "sha256": hashlib.sha256(np.ascontiguousarray(obj).tobytes()).hexdigest()}
    except ImportError:  # pragma: no cover
        pass
    return repr(obj)


def _update(h, ex) -> None:
    if isinstance(ex, str):
        h.update(b"s" + ex.encode("utf-8"))
    else:
        h.update(b"j" + json.dumps(_canon(ex), sort_keys=True).encode("utf-8"))
    h.update(b"\x00")


def fingerprint(data, *, text_key=None) -> dict:
    """A content fingerprint of ``data``: sha256 of a file's bytes, a Dataset's own
    ``_fingerprint``, or sha256 over the examples of a list/tensor (one streaming pass)."""
    path = _as_path(data)
    if path is not None:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return {"kind": "file", "source": str(path), "sha256": h.hexdigest(), "text_key": text_key}
    fp = getattr(data, "_fingerprint", None)
    if fp is not None:
        return {"kind": "datasets", "source": type(data).__name__, "fingerprint": str(fp), "text_key": text_key}
    h = hashlib.sha256()
    n = 0
    for ex in iter_examples(data, text_key=text_key):
        _update(h, ex)
        n += 1
    return {"kind": "examples", "source": type(data).__name__, "sha256": h.hexdigest(), "n_examples": n}
