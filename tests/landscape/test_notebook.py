"""notebooks/04_icl_vs_sft.ipynb executes top to bottom at tiny scale (nbclient)."""
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]


def test_notebook_04_runs(monkeypatch):
    # one intra-op thread in the kernel: tiny models only lose from OpenMP threads on a shared CPU
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(ROOT / "notebooks" / "04_icl_vs_sft.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "conditions: ['0shot', '1shot', '2shot', 'sft']" in text
    assert "SFT lowered the answer loss: True" in text
    assert "planted layers recovered: True" in text
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 6
    # the notebook's note on what the toy cannot show rests on these numbers
    assert "subject ARI at k >= 1, all layers: [1.0]" in text
    assert "subject ARI at 0 shots and SFT, all layers: [0.0]" in text
