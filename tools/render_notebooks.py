"""Execute the notebooks and store their outputs in the ``.ipynb`` files, and turn an executed
notebook into a Markdown page for the docs site (``tools/mkdocs_notebooks.py`` does that at build
time, without executing anything).

    python tools/render_notebooks.py                       # every notebooks/*.ipynb, outputs written back
    python tools/render_notebooks.py 01_hooks_tour.ipynb   # one
    from render_notebooks import to_markdown
    md, images = to_markdown(nbformat.read(path, 4), "01_hooks_tour")   # images: {file name: PNG bytes}

Execution uses the small settings the notebook tests use (``INTERP_NOTEBOOK_SMALL=1``, one thread,
Agg backend), runs in the repository root, writes outputs that notebook 02 saves to a temporary
folder (``INTERP_NOTEBOOK_OUT``), drops per-cell timing metadata (stable diffs), downscales PNG
outputs wider than 900 px (256-colour palette) and replaces the notebook atomically. A notebook
that fails is reported and left unchanged (exit status 1).
"""
from __future__ import annotations

import argparse
import base64
import os
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
ENV = {"INTERP_NOTEBOOK_SMALL": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg",
       "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
MAX_WIDTH = 900   # stored PNG outputs are downscaled to this width (pixels)


def execute(path: Path, timeout: int = 1200) -> float:
    """Run ``path`` top to bottom and write it back with its outputs; returns the seconds taken."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    old = {k: os.environ.get(k) for k in [*ENV, "INTERP_NOTEBOOK_OUT", "PYTHONPATH"]}
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="nb-out-") as out:
        os.environ.update(ENV, INTERP_NOTEBOOK_OUT=out,
                          PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), old["PYTHONPATH"]) if p))
        try:
            NotebookClient(nb, timeout=timeout, kernel_name="python3",
                           resources={"metadata": {"path": str(ROOT)}}).execute()
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    shrink_images(nb)
    write(nb, path)
    return time.time() - t0


def shrink_images(nb, width: int = MAX_WIDTH) -> int:
    """Downscale stored PNG outputs wider than ``width`` pixels and store them with a 256-colour
    palette when that is smaller (keeps the committed notebooks small); returns how many changed."""
    import io

    from PIL import Image

    n = 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if "image/png" not in data:
                continue
            raw = base64.b64decode(data["image/png"])
            img = Image.open(io.BytesIO(raw)).convert("RGB")
            if img.width > width:
                img = img.resize((width, max(1, round(img.height * width / img.width))), Image.LANCZOS)
            buf = io.BytesIO()
            img.quantize(256).save(buf, format="png", optimize=True)
            if len(buf.getvalue()) < len(raw):
                data["image/png"] = base64.b64encode(buf.getvalue()).decode()
                n += 1
    return n


def write(nb, path: Path) -> None:
    """Write ``nb`` to ``path`` atomically (temp file, then rename), cell ids filled in."""
    import nbformat
    from nbformat.validator import normalize

    nb = nbformat.from_dict(normalize(nb)[1]) if nb.get("nbformat_minor", 0) >= 5 else nb
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        nbformat.write(nb, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _text(x) -> str:
    return ANSI.sub("", "".join(x) if isinstance(x, list) else str(x)).rstrip("\n")


def _fence(text: str, lang: str = "text") -> list:
    ticks = "```" if "```" not in text else "````"
    return [f'{ticks}{lang}', text, ticks, ""]


def _merge_streams(outputs) -> list:
    """Consecutive outputs of one stream joined, and carriage returns applied as a terminal shows
    them (a progress bar's last state only)."""
    merged = []
    for out in outputs:
        if out.get("output_type") == "stream" and merged and merged[-1].get("output_type") == "stream" \
                and merged[-1].get("name") == out.get("name"):
            merged[-1] = {**merged[-1], "text": _text_raw(merged[-1]["text"]) + _text_raw(out.get("text", ""))}
        else:
            merged.append(dict(out))
    for out in merged:
        if out.get("output_type") == "stream":
            out["text"] = "\n".join(line.rsplit("\r", 1)[-1] if "\r" in line.rstrip("\r") else line.rstrip("\r")
                                    for line in _text_raw(out["text"]).split("\n"))
    return merged


def _text_raw(x) -> str:
    return "".join(x) if isinstance(x, list) else str(x)


def to_markdown(nb, stem: str) -> tuple[str, dict]:
    """``(markdown, {image file name: bytes})`` for an executed notebook: markdown cells as they are,
    code cells as fenced Python, outputs below each in a ``<div class="nb-output">`` (streams and
    plain text fenced, HTML tables as HTML, PNG images as files ``<stem>_<i>.png`` next to the page)."""
    lines, images = [], {}
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            lines += [_text(cell.source), ""]
            continue
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        lines += _fence(_text(cell.source), "python")
        for out in _merge_streams(cell.get("outputs", [])):
            body = []
            kind = out.get("output_type")
            if kind == "stream":
                text = _text(out.get("text", ""))
                body = _fence(text) if text.strip() else []
            elif kind == "error":
                body = _fence(_text(out.get("traceback", [out.get("evalue", "")])))
            else:
                data = out.get("data", {})
                if "image/png" in data:
                    name = f"{stem}_{len(images)}.png"
                    images[name] = base64.b64decode(data["image/png"])
                    body = [f"![output {len(images)}]({name})", ""]
                elif "text/html" in data:
                    body = [_text(data["text/html"]), ""]
                elif "text/markdown" in data:
                    body = [_text(data["text/markdown"]), ""]
                elif "text/plain" in data:
                    body = _fence(_text(data["text/plain"]))
            if body:
                lines += ['<div class="nb-output" markdown="1">', ""] + body + ["</div>", ""]
    return "\n".join(lines), images


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Execute notebooks and store their outputs in the .ipynb files.")
    ap.add_argument("names", nargs="*", help="notebook file names under notebooks/ (default: all)")
    ap.add_argument("--timeout", type=int, default=1200, help="seconds per cell")
    a = ap.parse_args(argv)
    paths = [NOTEBOOKS / n for n in a.names] or sorted(NOTEBOOKS.glob("*.ipynb"))
    failed = 0
    for p in paths:
        try:
            print(f"{p.name}: {execute(p, a.timeout):.0f} s", flush=True)
        except Exception as e:  # noqa: BLE001 - report every notebook, then fail
            failed += 1
            print(f"{p.name}: FAILED ({type(e).__name__}: {str(e)[-2000:]}); left unchanged", file=sys.stderr, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
