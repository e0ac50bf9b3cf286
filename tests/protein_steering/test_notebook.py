"""notebooks/02_protein_sae_steering.ipynb runs top to bottom at reduced size (nbclient, tiny model)."""
import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]


def test_notebook_02_runs(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("INTERP_PROTEIN_MODEL", str(tiny_model_dir))
    monkeypatch.setenv("INTERP_NOTEBOOK_OUT", str(tmp_path / "out"))
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    nb = nbformat.read(ROOT / "notebooks" / "02_protein_sae_steering.ipynb", as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "annotations: ['COILED', 'TRANSMEM', 'ZN_FING']" in text and "summary ok: True" in text
    assert (tmp_path / "out" / "report.md").exists()
