"""notebooks/05_zigzag.ipynb executes top to bottom at tiny scale (nbclient)."""
import pytest

from tests.notebook_run import run_notebook


@pytest.mark.slow
def test_notebook_05_runs(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    text, images = run_notebook("05_zigzag.ipynb")
    assert "betti_1 per layer: [3, 3, 2, 3, 3, 2, 2]" in text
    assert "H1 bars (birth layer, death layer): [(0, 2), (0, 5), (0, 7), (3, 7)]" in text
    assert "planted blocks found: True" in text
    assert "cheaper than every random control: True" in text
    assert len(images) == 2
