"""notebooks/03_narrow_gate.ipynb executes top to bottom on the shipped toy models (nbclient)."""
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]


def test_narrow_gate_notebook_runs():
    nb = nbformat.read(ROOT / "notebooks" / "03_narrow_gate.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    out = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "gate(gated) = eoi" in out and "narrow=True" in out
    assert "gate(free) = eoi" not in out
    assert "gated [EOI] at chance: True" in out and "free img→text at chance: True" in out
    assert "| [EOI] |" in out
