"""The file-level import cycles of issue 15 stay undone (read from the source, nothing imported):
protein pipeline <-> its report / chance / steering arm, toy_model <-> train_loop, interp.cli <-> interp.demo."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imports_of(module: str) -> set:
    """Modules of ours that ``module`` imports anywhere in its file (top level or inside functions)."""
    path = ROOT / (module.replace(".", "/") + ".py")
    pkg = module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            found |= {target} | {f"{target}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return found


PAIRS = [("steering.protein.pipeline", "steering.protein.pipeline_report"),
         ("steering.protein.pipeline", "steering.protein.chance"),
         ("steering.protein.pipeline", "steering.protein.steer_arm"),
         ("steering.protein.toy_model", "steering.protein.train_loop"),
         ("interp.cli", "interp.demo")]


@pytest.mark.parametrize("a,b", PAIRS, ids=[f"{a}~{b.rsplit('.', 1)[1]}" for a, b in PAIRS])
def test_no_two_file_cycle(a, b):
    assert not (b in imports_of(a) and a in imports_of(b)), f"{a} and {b} import each other"


def test_the_reader_sees_a_cycle_when_there_is_one():
    assert "steering.protein.latents" in imports_of("steering.protein.pipeline")  # relative imports resolved
    assert "steering.protein.toy_model" in imports_of("steering.protein.train_loop")
