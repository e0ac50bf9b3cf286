"""Notebooks execute top to bottom on tiny models (nbclient)."""
from pathlib import Path

import nbformat
import pytest

from tests.notebook_run import run_notebook

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["01_hooks_tour.ipynb"])
def test_notebook_runs(name, tmp_path):
    outputs, _ = run_notebook(name)
    assert "patched == B: True" in outputs and "changes logits: True" in outputs


def _render_tool():
    import importlib.util

    spec = importlib.util.spec_from_file_location("render_notebooks", ROOT / "tools" / "render_notebooks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_notebooks_are_committed_with_outputs(path):
    """The docs render the stored outputs (no execution at build time): every code cell ran, in order, without
    an error. Refresh with ``python tools/render_notebooks.py``."""
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    counts = [c.get("execution_count") for c in code]
    assert all(isinstance(n, int) for n in counts) and counts == sorted(counts), \
        f"{path.name} is not fully executed (execution counts {counts}): run python tools/render_notebooks.py {path.name}"
    assert sum(bool(c.get("outputs")) for c in code) >= 1
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{path.name} stored an error: {errors[0].get('ename')}: {errors[0].get('evalue')}"


def test_to_markdown_renders_every_output_kind():
    import base64

    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

    png = base64.b64encode(b"\x89PNG fake").decode()
    nb = new_notebook(cells=[
        new_markdown_cell("# Title\nSome *text*."),
        new_code_cell("print('hi')", outputs=[new_output("stream", name="stdout", text="\x1b[31mhi\x1b[0m\n")]),
        new_code_cell("bar", outputs=[new_output("stream", name="stderr", text="\rload   0%"),
                                      new_output("stream", name="stderr", text="\rload 100%\n"),
                                      new_output("stream", name="stderr", text="done\n")]),
        new_code_cell("df", outputs=[new_output("execute_result", data={"text/html": "<table><tr><td>1</td></tr></table>",
                                                                        "text/plain": "   a\n0  1"}, execution_count=2)]),
        new_code_cell("img", outputs=[new_output("display_data", data={"image/png": png, "text/plain": "<Image>"})]),
        new_code_cell("x", outputs=[new_output("execute_result", data={"text/plain": "42"}, execution_count=4)]),
        new_code_cell("1/0", outputs=[new_output("error", ename="ZeroDivisionError", evalue="division by zero",
                                                 traceback=["\x1b[0;31mZeroDivisionError\x1b[0m: division by zero"])]),
    ])
    md, images = _render_tool().to_markdown(nb, "nb")
    assert md.startswith("# Title\nSome *text*.")
    assert "```python\nprint('hi')\n```" in md and "```text\nhi\n```" in md          # ANSI colour codes stripped
    assert "<table><tr><td>1</td></tr></table>" in md and "   a\n0  1" not in md      # HTML preferred over plain
    assert images == {"nb_0.png": b"\x89PNG fake"} and "![output 1](nb_0.png)" in md
    assert "```text\n42\n```" in md and "ZeroDivisionError: division by zero" in md
    assert "```text\nload 100%\ndone\n```" in md and "load   0%" not in md  # one stream block, progress bar's last state
    assert md.count('<div class="nb-output" markdown="1">') == 6
