"""``interp.geometry`` moved to the top-level ``geometry`` package; the old import paths still
give the very same objects (functions, classes, submodules), so old code and patches keep working."""
from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import geometry

ROOT = Path(__file__).resolve().parents[2]
SUBMODULES = sorted(m.name for m in pkgutil.iter_modules(geometry.__path__))


def test_every_geometry_module_has_an_alias():
    # a new module in geometry/ needs its alias in interp/geometry/ (a 3-line file, see neighbors.py there)
    assert "neighbors" in SUBMODULES and "_search" in SUBMODULES
    missing = [m for m in SUBMODULES if not (ROOT / "interp" / "geometry" / f"{m}.py").exists()]
    assert not missing, f"add interp/geometry/<name>.py aliases for {missing}"


@pytest.mark.parametrize("name", SUBMODULES)
def test_old_submodule_path_is_the_same_module(name):
    old = importlib.import_module(f"interp.geometry.{name}")
    assert old is importlib.import_module(f"geometry.{name}")


def test_old_package_names_are_the_same_objects():
    import interp.geometry as old
    from interp.geometry import DuplicatePointsError, knn

    assert old.__all__ == geometry.__all__
    assert knn is geometry.knn and DuplicatePointsError is geometry.DuplicatePointsError
    for name in geometry.__all__:
        assert getattr(old, name) is getattr(geometry, name), name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        old.nope  # noqa: B018


def test_patching_the_old_path_patches_the_new(monkeypatch):
    import interp.geometry._search as old

    monkeypatch.setattr(old, "_TILE_BYTES", 123)
    assert geometry._search._TILE_BYTES == 123


def test_old_alias_first_in_a_fresh_process():
    # the alias imported before geometry itself: one module object, registered under both names
    code = ("import sys, interp.geometry.errors as e, geometry.errors as g\n"
            "assert e is g and sys.modules['interp.geometry.errors'] is g\n"
            "import interp.geometry\n"
            "assert interp.geometry.errors is g\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": ""})
