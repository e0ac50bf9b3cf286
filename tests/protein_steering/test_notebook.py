"""notebooks/02_protein_sae_steering.ipynb runs top to bottom at reduced size (nbclient, tiny model)."""
import os
from pathlib import Path

from tests.notebook_run import run_notebook

ROOT = Path(__file__).resolve().parents[2]


def test_notebook_02_runs(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("INTERP_PROTEIN_MODEL", str(tiny_model_dir))
    monkeypatch.setenv("INTERP_NOTEBOOK_OUT", str(tmp_path / "out"))
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    text, _ = run_notebook("02_protein_sae_steering.ipynb", timeout=120)
    assert "annotations: ['COILED', 'TRANSMEM', 'ZN_FING']" in text and "summary ok: True" in text
    assert (tmp_path / "out" / "report.md").exists()
