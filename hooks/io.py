"""Atomic writes: results land complete or not at all (temp file in the same dir, then rename).

    from hooks.io import write_json_atomic, write_csv_atomic
    write_json_atomic("runs/x/results.json", {"acc": 0.9})      # creates runs/x/ if needed
    write_csv_atomic("runs/x/rows.csv", [{"a": 1, "b": 2}])     # header from the first row

Used by every package (``hooks`` is the bottom layer); ``interp.io`` re-exports these.
"""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path


def write_text_atomic(path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_json_atomic(path, obj) -> Path:
    return write_text_atomic(path, json.dumps(obj, indent=2, default=float) + "\n")


def write_csv_atomic(path, rows: list) -> Path:
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return write_text_atomic(path, buf.getvalue())
