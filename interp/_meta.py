"""Run metadata recorded beside every results file: package version, git commit (when the code
runs from a git checkout), UTC timestamp, the full command line and the seeds.

    from interp._meta import run_meta, write_meta_sidecar
    json.dump({**results, "meta": run_meta(seeds=[0, 1, 2])}, f)   # inside a results.json / summary.json
    write_meta_sidecar("runs/sweep/sweep.csv", seeds=[0])          # -> runs/sweep/sweep.csv.meta.json

One helper for every command: the CLI's commands call it when they write, and
``interp.cli`` stamps ``DIR/run.json`` for any command given ``--out DIR`` (see
:func:`stamp_out_dir`).
"""
from __future__ import annotations

import datetime as _dt
import functools
import shlex
import subprocess
import sys
from pathlib import Path


def package_version() -> str:
    """The installed ``interp`` distribution's version, or ``pyproject.toml``'s when not installed."""
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("interp", "interp-toolkit"):
        try:
            return version(dist)
        except PackageNotFoundError:
            pass
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    if pyproject.exists():
        import tomllib

        return tomllib.loads(pyproject.read_text())["project"]["version"]
    return "unknown"


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the checkout this code runs from (``+dirty`` when it has changes), or None."""
    root = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
        return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def run_meta(seeds=None, argv=None, **extra) -> dict:
    """``{"package", "version", "git", "utc", "command", "argv", "seeds", ...extra}`` for a results file."""
    argv = list(sys.argv if argv is None else argv)
    if argv and argv[0].endswith(("cli.py", "__main__.py")):
        argv[0] = "interp"
    elif argv:
        argv[0] = Path(argv[0]).name
    return {"package": "interp", "version": package_version(), "git": git_commit(),
            "utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "command": shlex.join(argv), "argv": argv,
            "seeds": None if seeds is None else [int(s) for s in seeds], **extra}


def write_meta_sidecar(path, seeds=None, **extra) -> Path:
    """Write ``PATH.meta.json`` (atomically) describing how ``path`` (a CSV, PNG, ...) was made."""
    from hooks.io import write_json_atomic

    side = Path(str(path) + ".meta.json")
    write_json_atomic(side, run_meta(seeds=seeds, file=Path(path).name, **extra))
    return side


RESULT_FILES = ("results.json", "summary.json")  # top-level results files that get a "meta" block


def stamp_out_dir(out, seeds=None, since: float | None = None, **extra) -> Path | None:
    """Write ``OUT/run.json``: the metadata of the command that filled ``OUT`` plus the files it
    holds (so every CSV/PNG there has its provenance), and add the same block as ``"meta"`` to
    ``OUT/results.json`` / ``OUT/summary.json`` when they are JSON objects without one (only files
    modified at or after ``since``, a ``time.time()``, when given). No-op when ``out`` is not a
    directory."""
    import json

    from hooks.io import write_json_atomic

    out = Path(out)
    if not out.is_dir():
        return None
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.name != "run.json")
    meta = run_meta(seeds=seeds, **extra)
    for name in RESULT_FILES:
        f = out / name
        if not f.is_file() or (since is not None and f.stat().st_mtime < since - 1):
            continue
        try:
            obj = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(obj, dict) and "meta" not in obj:
            write_json_atomic(f, {**obj, "meta": meta})
    path = out / "run.json"
    write_json_atomic(path, {**meta, "files": files})
    return path
