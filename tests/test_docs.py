"""The docs site: a page per public error class, a page per concept, every command in the CLI
page, and ``mkdocs build --strict`` (warnings are errors) when mkdocs is installed."""
from __future__ import annotations

import ast
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PACKAGES = ("hooks", "geometry", "saes", "steering", "interp")
BUILTIN_BASES = {"Exception", "ValueError", "KeyError", "IndexError", "TypeError", "RuntimeError", "OSError",
                 "UserWarning", "Warning", "LookupError", "ImportError", "FileNotFoundError", "AttributeError"}


def public_error_classes() -> dict:
    """``{"pkg.module.Name": path}`` of every public exception/warning class defined in our packages
    (by reading the source, so nothing heavy is imported): classes whose bases are builtin
    exceptions or, transitively, our own exception classes; names starting with ``_`` and classes
    in private modules are skipped."""
    found, pending = {}, []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            if any(part.startswith("_") and part != "__init__" for part in rel.parts):
                continue
            mod = ".".join(p for p in rel.parts if p != "__init__")
            for node in ast.parse(path.read_text()).body:
                if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                    bases = [b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases]
                    pending.append((f"{mod}.{node.name}", node.name, bases, path))
    names = set(BUILTIN_BASES)
    changed = True
    while changed:
        changed = False
        for qual, name, bases, path in pending:
            if qual not in found and any(b in names for b in bases):
                found[qual] = path
                names.add(name)
                changed = True
    return found


ERRORS = public_error_classes()


def test_the_enumeration_finds_the_known_classes():
    for q in ("hooks.errors.UnknownSiteError", "saes.errors.CacheError", "steering.protein.steer.SteeringError",
              "steering.narrow_gate.errors.TaskError", "geometry.errors.DuplicatePointsError",
              "interp.landscape.errors.LandscapeWarning"):
        assert q in ERRORS
    assert len(ERRORS) >= 35


@pytest.mark.parametrize("qual", sorted(ERRORS))
def test_every_public_error_class_has_a_page(qual):
    page = DOCS / "errors" / f"{qual}.md"
    assert page.exists(), f"{qual} has no page: add docs/errors/{qual}.md (what it means, how to fix it) " \
                          f"and a row in docs/errors/index.md"
    text = page.read_text()
    name = qual.rsplit(".", 1)[1]
    assert text.startswith(f"# {name}") and "## What it means" in text and "## How to fix it" in text
    assert f"({qual}.md)" in (DOCS / "errors" / "index.md").read_text()


def test_no_page_for_a_class_that_is_gone():
    stale = {p.stem for p in (DOCS / "errors").glob("*.md") if p.stem != "index"} - set(ERRORS)
    assert not stale, f"error pages without a class: {sorted(stale)}"


def test_concept_and_analysis_pages_are_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in ("concepts/sites.md", "concepts/positions.md", "concepts/interventions.md", "concepts/generation.md",
                 "concepts/attention.md", "concepts/saes.md", "concepts/geometry.md", "analyses/run-and-sweep.md",
                 "analyses/id-profile.md", "analyses/landscape.md", "analyses/zigzag-and-prune.md",
                 "analyses/narrow-gate.md", "analyses/protein-demo.md", "analyses/dashboards.md", "spec.md",
                 "cli.md", "errors/index.md", "figures.md"):
        assert (DOCS / page).exists() and page in nav, page
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        assert f"notebooks/{nb.stem}.md" in nav, f"{nb.name} is not in the mkdocs nav"


def test_before_after_figures_come_in_pairs():
    pngs = {p.name for p in (DOCS / "figures" / "before_after").glob("*.png")}
    names = {n.rsplit("_", 1)[0] for n in pngs}
    assert len(names) >= 4
    text = (DOCS / "figures.md").read_text()
    for n in names:
        assert {f"{n}_before.png", f"{n}_after.png"} <= pngs, n
        assert f"figures/before_after/{n}_before.png" in text and f"figures/before_after/{n}_after.png" in text, n


def test_the_cli_page_lists_every_command():
    import typer

    from interp.cli import app

    text = (DOCS / "cli.md").read_text()
    root = typer.main.get_command(app)
    for name, cmd in root.commands.items():
        assert f"interp {name}" in text, f"docs/cli.md does not list `interp {name}`"
        for sub in getattr(cmd, "commands", {}):
            assert sub in text, f"docs/cli.md does not list `interp {name} {sub}`"


@pytest.mark.skipif(not all(importlib.util.find_spec(m) for m in ("mkdocs", "material", "mkdocstrings_handlers")),
                    reason="mkdocs, mkdocs-material or mkdocstrings[python] not installed (pip install -e '.[docs]')")
def test_docs_build_strict(tmp_path):
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
                        "-d", str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert (tmp_path / "site" / "errors" / "hooks.errors.UnknownSiteError" / "index.html").exists()
    assert "UnknownSiteError" in (tmp_path / "site" / "api" / "hooks" / "index.html").read_text()
    # the notebooks, rendered with their stored outputs (tools/mkdocs_notebooks.py)
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        page = tmp_path / "site" / "notebooks" / nb.stem / "index.html"
        assert page.exists(), f"no page for {nb.name}"
        html = page.read_text()
        assert html.count('class="nb-output"') >= 1, f"{nb.name}: no output rendered (run tools/render_notebooks.py)"
        for img in re.findall(r'src="\.\./([^"]+\.png)"', html):
            assert (tmp_path / "site" / "notebooks" / img).stat().st_size > 0
    # the before/after figures
    figures = (tmp_path / "site" / "figures" / "index.html").read_text()
    for png in sorted((DOCS / "figures" / "before_after").glob("*.png")):
        assert png.name in figures and (tmp_path / "site" / "figures" / "before_after" / png.name).exists()


def test_the_cli_page_documents_the_shared_defaults():
    from steering.cli_common import SHARED_DEFAULTS

    rows = {ln.split("|")[1].strip(): ln for ln in (DOCS / "cli.md").read_text().splitlines() if ln.startswith("| `--")}
    for key, default in SHARED_DEFAULTS.items():
        row = rows[f"`--{key.replace('_', '-')}`"]
        if default is not None:
            assert f"`{default}`" in row, (key, row)
    assert "`runs/<command>`" in rows["`--out`"]
