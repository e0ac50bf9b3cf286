"""Atomic writes: results land complete or not at all (temp file in the same dir, then rename).

    from hooks.io import atomic_path, write_json_atomic, write_csv_atomic
    write_json_atomic("runs/x/results.json", {"acc": 0.9})      # creates runs/x/ if needed
    write_csv_atomic("runs/x/rows.csv", [{"a": 1, "b": 2}])     # header from the first row
    with atomic_path("runs/x/w.safetensors") as tmp:            # any writer that takes a path
        save_file(tensors, str(tmp))

The one implementation of temp-file-then-rename in the project; used by every package
(``hooks`` is the bottom layer); ``interp.io`` re-exports these. A file lands with the mode a
plain ``open()`` gives (0666 less the umask; :mod:`hooks.permissions`) even when its writer
(safetensors, ``mkstemp``) made it owner-only. ``fsync=True`` flushes the file to disk before the
rename, for files whose loss after a power cut would corrupt a resumable state (the activation
cache's manifest, training checkpoints).
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
from pathlib import Path
from typing import Iterator, Optional

from .permissions import as_umask_allows


@contextlib.contextmanager
def atomic_path(path, *, fsync: bool = False, mode: Optional[int] = None) -> Iterator[Path]:
    """Yield a temp path beside ``path`` (same suffix, so writers that go by it still work); when
    the block ends without an exception the temp file gets ``mode`` (default: what the umask
    allows), is fsynced if asked and is renamed over ``path``. On an exception ``path`` is left as
    it was and the temp file is removed. The parent folder is created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}{path.suffix}")
    try:
        yield tmp
        if mode is None:
            as_umask_allows(tmp)
        else:
            os.chmod(tmp, mode)
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path, text: str, *, fsync: bool = False) -> Path:
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json_atomic(path, obj, *, fsync: bool = False) -> Path:
    return write_text_atomic(path, json.dumps(obj, indent=2, default=float) + "\n", fsync=fsync)


def csv_text(rows: list) -> str:
    """``rows`` (dicts) as CSV text, the header from the first row's keys; ``""`` for no rows."""
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return buf.getvalue()


def write_csv_atomic(path, rows: list) -> Path:
    return write_text_atomic(path, csv_text(rows))
