"""notebooks/05_zigzag.ipynb executes top to bottom at tiny scale (nbclient)."""
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_notebook_05_runs(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(ROOT / "notebooks" / "05_zigzag.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "betti_1 per layer: [3, 3, 2, 3, 3, 2, 2]" in text
    assert "H1 bars (birth layer, death layer): [(0, 2), (0, 5), (0, 7), (3, 7)]" in text
    assert "planted blocks found: True" in text
    assert "cheaper than every random control: True" in text
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 2
