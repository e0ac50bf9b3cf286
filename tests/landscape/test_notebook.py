"""notebooks/04_icl_vs_sft.ipynb executes top to bottom at tiny scale (nbclient)."""
from tests.notebook_run import run_notebook


def test_notebook_04_runs(monkeypatch):
    # one intra-op thread in the kernel: tiny models only lose from OpenMP threads on a shared CPU
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    text, images = run_notebook("04_icl_vs_sft.ipynb")
    assert "conditions: ['0shot', '1shot', '2shot', 'sft']" in text
    assert "SFT lowered the answer loss: True" in text
    assert "planted layers recovered: True" in text
    assert len(images) == 6
    # the notebook's note on what the toy cannot show rests on these numbers
    assert "subject ARI at k >= 1, all layers: [1.0]" in text
    assert "subject ARI at 0 shots and SFT, all layers: [0.0]" in text
