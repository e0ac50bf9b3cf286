"""mkdocs hook: the executed notebooks (``notebooks/*.ipynb``, outputs stored by
``tools/render_notebooks.py``) become pages ``notebooks/<name>.md`` with their images, generated at
build time (nothing is executed, nothing is written into ``docs/``).

    # mkdocs.yml
    hooks: [tools/mkdocs_notebooks.py]
    nav: [..., {Notebooks: [notebooks/01_hooks_tour.md, ...]}]
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _converter():
    spec = importlib.util.spec_from_file_location("render_notebooks", ROOT / "tools" / "render_notebooks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def on_files(files, config):
    import nbformat
    from mkdocs.structure.files import File

    to_markdown = _converter().to_markdown
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        md, images = to_markdown(nbformat.read(path, as_version=4), path.stem)
        note = f"*The notebook `notebooks/{path.name}` with the outputs stored by `tools/render_notebooks.py`.*"
        md = md.replace("\n", f"\n\n{note}\n\n", 1) if md.startswith("# ") else f"{note}\n\n{md}"
        files.append(File.generated(config, f"notebooks/{path.stem}.md", content=md))
        for name, data in images.items():
            files.append(File.generated(config, f"notebooks/{name}", content=data))
    return files
