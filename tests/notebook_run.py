"""Run a notebook top to bottom (nbclient) for a test and return what it printed and drew.

    text, images = run_notebook("05_zigzag.ipynb")
    assert "planted blocks found: True" in text and len(images) == 2
"""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_notebook(name: str, timeout: int = 300) -> tuple:
    """Execute ``notebooks/<name>`` with the repository root as the working directory; returns
    ``(text, images)``: every code cell's text output joined, and its ``image/png`` outputs."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    return "".join(o.get("text", "") for o in outputs), [o for o in outputs if "image/png" in o.get("data", {})]
