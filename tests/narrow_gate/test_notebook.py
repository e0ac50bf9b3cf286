"""notebooks/03_narrow_gate.ipynb executes top to bottom on the shipped toy models (nbclient)."""
from tests.notebook_run import run_notebook


def test_narrow_gate_notebook_runs():
    out, _ = run_notebook("03_narrow_gate.ipynb")
    assert "gate(gated) = eoi" in out and "narrow=True" in out
    assert "gate(free) = eoi" not in out
    assert "gated [EOI] at chance: True" in out and "free img→text at chance: True" in out
    assert "| [EOI] |" in out
