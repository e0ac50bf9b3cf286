"""A static HTML page for any folder of results: ``interp dashboard folder runs/flow``.

    interp dashboard folder runs/flow            # writes runs/flow/index.html
    write_results_page("runs/sweep", title="Sweep")

Every ``.csv`` becomes a sortable table (click a header; numbers sort as numbers), every
``.json`` a key/value table (nested values shown as JSON), ``.png``/``.svg`` figures are
embedded with their file name as text alternative, ``.md``/``.txt`` shown as text, and each
block links the file it was made from. Works for the outputs of ``interp run`` (results.json,
batches.csv), ``interp gate flow`` (flow_shares.csv, flow_keys.csv, gate.json, flow.png),
``interp demo`` (report.md, summary.json, figures/) and any other command that writes such
files — the page reads formats, not commands, so it keeps working when a command's columns
change. CSVs over ``max_rows`` rows show their first ``max_rows`` and say how many were left out.
With ``--latent-pages SITE`` (an ``interp dashboard sae`` output), latent numbers in ``latent``
columns link to their pages: ``interp dashboard folder runs/demo --latent-pages runs/demo/dash``.
"""
from __future__ import annotations

import csv
import json
import os
from html import escape
from pathlib import Path

KINDS = (".csv", ".json", ".png", ".svg", ".md", ".txt")


def _num(x: str):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def csv_table(path: Path, tid: str, max_rows: int = 2000, latent_href=None) -> str:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows:
        return '<p class="muted">empty file</p>'
    header, body = rows[0], rows[1:]
    shown = body[:max_rows]
    numeric = [all(_num(r[j]) is not None for r in shown if j < len(r) and r[j] != "") for j in range(len(header))]
    th = "".join(f'<th scope="col" data-key="c{j}" data-type="{"num" if numeric[j] else "text"}" aria-sort="none"'
                 f'{"" if numeric[j] else " class=l"}><button type="button">{escape(h)}</button></th>'
                 for j, h in enumerate(header))
    trs = []
    lat = {j for j, h in enumerate(header) if h.strip().lower() == "latent"} if latent_href else set()
    for i, r in enumerate(shown):
        attrs = " ".join(f'data-c{j}="{escape(r[j] if j < len(r) else "")}"' for j in range(len(header)))
        cells = []
        for j in range(len(header)):
            v = r[j] if j < len(r) else ""
            txt = escape(_fmt(v))
            href = latent_href(v) if j in lat else None
            if href:
                txt = f'<a href="{href}">{txt}</a>'
            cells.append(f'<td{"" if numeric[j] else " class=l"}>{txt}</td>')
        tds = "".join(cells)
        trs.append(f'<tr data-i="{i}" {attrs}>{tds}</tr>')
    note = (f'<p class="muted small">first {max_rows:,} of {len(body):,} rows shown; {len(body) - max_rows:,} left '
            f"out (open the CSV for all)</p>" if len(body) > max_rows else "")
    return (f'{note}<table id="{tid}" class="sortable" aria-label="{escape(path.name)}"><thead><tr>{th}</tr></thead>'
            f'<tbody>{"".join(trs)}</tbody></table>')


def _fmt(s: str) -> str:
    v = _num(s)
    if v is None or s.strip().lstrip("-").isdigit():
        return s
    return f"{v:.4g}"


def json_table(path: Path) -> str:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        return f'<p class="muted">not valid JSON ({escape(e.msg)}, line {e.lineno})</p>'
    if not isinstance(obj, dict):
        return f"<pre>{escape(json.dumps(obj, indent=1)[:20000])}</pre>"
    rows = []
    for k, v in obj.items():
        val = v if isinstance(v, (str, int, float, bool)) or v is None else json.dumps(v, indent=1)
        cell = f"<pre>{escape(str(val)[:5000])}</pre>" if not isinstance(v, (str, int, float, bool)) and v is not None \
            else escape(str(val))
        rows.append(f'<tr><th scope="row" class="l">{escape(str(k))}</th><td class="l">{cell}</td></tr>')
    return f'<table aria-label="{escape(path.name)}"><tbody>{"".join(rows)}</tbody></table>'


def write_results_page(folder, *, out=None, title=None, max_rows: int = 2000, latent_pages=None) -> Path:
    """Write ``index.html`` (and ``assets/``) for the result files in ``folder`` (recursively, sorted).

    ``latent_pages``: a site written by ``interp dashboard sae``; numbers in CSV columns named
    ``latent`` then link to their latent pages (e.g. the protein demo's ``stats/top_latents.csv``)."""
    from saes.dashboard.html import page
    from saes.dashboard.site import copy_assets

    from hooks.io import write_text_atomic

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a directory; pass the folder a command wrote its results to.")
    out = Path(out) if out is not None else folder / "index.html"
    skip = {Path(latent_pages).resolve()} if latent_pages is not None else set()
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in KINDS
                   and "assets" not in p.relative_to(folder).parts[:1] and p.resolve() != out.resolve()
                   and not any(d in p.resolve().parents for d in skip))
    if not files:
        raise FileNotFoundError(f"{folder} holds no result files ({', '.join(KINDS)}).")
    base = out.parent
    latent_href = None
    if latent_pages is not None:
        lp = Path(latent_pages)
        if not (lp / "latents").is_dir():
            raise FileNotFoundError(f"{lp} holds no latents/ folder; pass the --out of `interp dashboard sae`.")

        def latent_href(v):
            try:
                page = lp / "latents" / f"{int(float(v)):06d}.html"
            except ValueError:
                return None
            return escape(Path(os.path.relpath(page.resolve(), base.resolve())).as_posix()) if page.exists() else None
    blocks, toc = [], []
    for i, p in enumerate(files):
        name = str(p.relative_to(folder))
        href = escape(Path(os.path.relpath(p.resolve(), base.resolve())).as_posix())
        ext = p.suffix.lower()
        if ext == ".csv":
            content = csv_table(p, f"t{i}", max_rows, latent_href)
        elif ext == ".json":
            content = json_table(p)
        elif ext in (".png", ".svg"):
            content = f'<img src="{href}" alt="Figure {escape(name)} (see the CSV/JSON beside it for the numbers)" style="max-width:100%">'
        else:
            content = f"<pre>{escape(p.read_text(encoding='utf-8', errors='replace')[:50000])}</pre>"
        toc.append(f'<li><a href="#f{i}">{escape(name)}</a></li>')
        blocks.append(f'<section id="f{i}" aria-label="{escape(name)}"><h2>{escape(name)} '
                      f'<a class="small" href="{href}">(file)</a></h2>{content}</section>')
    copy_assets(base / "assets")
    t = title or f"Results in {folder.name}"
    body = (f'<nav class="top" aria-label="Files"><strong>{escape(t)}</strong></nav><main><h1>{escape(t)}</h1>'
            f'<ul class="small">{"".join(toc)}</ul>{"".join(blocks)}</main>')
    write_text_atomic(out, page(t, body, assets="assets"))
    return out

