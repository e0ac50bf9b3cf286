"""Small HTML/SVG building blocks of the dashboard pages (escaped strings, no template engine).

    page("Latent 12", body, assets="../assets")         # links the shipped CSS/JS
    page("Latent 12", body, assets=None)                # inlines them (notebooks, single files)
    histogram_svg(counts, edges, label="latent 12")     # labelled inline SVG with a text alternative
    tokens_html(strings, acts, max_act, n_bands, hit=3) # tokens coloured by activation band
"""
from __future__ import annotations

import math
from html import escape
from importlib import resources

import numpy as np

ASSETS = ("dashboard.css", "dashboard.js")


def asset_text(name: str) -> str:
    return resources.files(__package__).joinpath("assets", name).read_text(encoding="utf-8")


def page(title: str, body: str, *, assets: str | None = "assets", lang: str = "en") -> str:
    """A complete HTML document. ``assets``: folder (relative URL) holding the CSS/JS, or None to inline them."""
    if assets is None:
        head = f"<style>{asset_text('dashboard.css')}</style>"
        tail = f"<script>{asset_text('dashboard.js')}</script>"
    else:
        head = f'<link rel="stylesheet" href="{escape(assets)}/dashboard.css">'
        tail = f'<script src="{escape(assets)}/dashboard.js"></script>'
    return (f'<!DOCTYPE html>\n<html lang="{lang}"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title>{head}</head>\n<body>\n{body}\n{tail}\n</body></html>\n")


def fmt(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    x = float(x)
    if x == 0:
        return "0"
    if abs(x) >= 1000 or abs(x) < 1e-3:
        return f"{x:.{digits - 1}e}"
    return f"{x:.{digits}g}"


def band_of(act: float, max_act: float, n_bands: int) -> int:
    """0 when not firing; else 1..n_bands by equal intervals of (0, max] (the page's quantile bands)."""
    if not (act > 0) or max_act <= 0:
        return 0
    return int(min(max(math.ceil(act / max_act * n_bands), 1), n_bands))


def band_class(band: int, n_bands: int) -> str:
    """CSS colour class b1..b5 for band 1..n_bands (bands spread over the 5 shades)."""
    if band <= 0:
        return "b0"
    return f"b{1 + int((band - 1) * 5 // n_bands)}"


def tokens_html(strings, acts, max_act: float, n_bands: int, hit: int | None = None) -> str:
    out = []
    for j, (s, a) in enumerate(zip(strings, acts)):
        a = float(a)
        if math.isnan(a):
            out.append(f'<span class="tok na" title="{escape(s)}: not read by the SAE">{escape(s)}</span>')
            continue
        b = band_of(a, max_act, n_bands)
        cls = f"tok {band_class(b, n_bands)}" + (" hit" if j == hit else "")
        out.append(f'<span class="{cls}" data-band="{b}" data-act="{a:.4g}">{escape(s)}</span>')
    return "".join(out)


def legend_html(max_act: float, n_bands: int) -> str:
    items = []
    for b in range(1, n_bands + 1):
        lo, hi = max_act * (b - 1) / n_bands, max_act * b / n_bands
        items.append(f'<span class="tok {band_class(b, n_bands)}" data-band="{b}">{fmt(lo)}–{fmt(hi)}</span>')
    return (f'<div class="legend" aria-label="Colour key: activation bands of this latent"><span class="muted small">'
            f"colour = activation band (of max {fmt(max_act)}):</span>{''.join(items)}"
            f'<span class="tok na">not read</span><span class="tok hit">token ranked</span></div>')


def histogram_svg(counts, edges, *, label: str, width: int = 400, height: int = 170, log: bool = False) -> str:
    """Bar chart of ``counts`` over bins ``edges`` with labelled axes and a text alternative."""
    counts = np.asarray(counts, dtype=float)
    n = len(counts)
    ml, mr, mt, mb = 44, 8, 8, 34
    w, h = width - ml - mr, height - mt - mb
    top = counts.max() if n and counts.max() > 0 else 1.0
    bw = w / max(n, 1)
    bars = []
    for i, c in enumerate(counts):
        bh = 0 if c <= 0 else max(1.0, h * c / top)
        bars.append(f'<rect x="{ml + i * bw:.1f}" y="{mt + h - bh:.1f}" width="{max(bw - 1, 0.5):.1f}" height="{bh:.1f}" '
                    f'fill="#ef6c1a"><title>{fmt(edges[i])}–{fmt(edges[i + 1])}: {int(c)}</title></rect>')
    ticks = []
    for frac in (0, 0.5, 1):
        x = ml + frac * w
        anchor = {0: "start", 1: "end"}.get(frac, "middle")
        ticks.append(f'<text x="{x:.1f}" y="{mt + h + 14}" text-anchor="{anchor}">{fmt(edges[0] + frac * (edges[-1] - edges[0]))}</text>')
    desc = (f"Histogram of {label}: {int(counts.sum())} firing tokens in {n} bins from {fmt(edges[0])} to "
            f"{fmt(edges[-1])}; the fullest bin ({fmt(edges[int(counts.argmax())])}–{fmt(edges[int(counts.argmax()) + 1])}) "
            f"holds {int(top)}." if n else f"Histogram of {label}: no firing tokens.")
    return (f'<svg role="img" aria-labelledby="ht dh" width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
            f'<title id="ht">Activation histogram</title><desc id="dh">{escape(desc)}</desc>'
            f'<line x1="{ml}" y1="{mt + h}" x2="{ml + w}" y2="{mt + h}" stroke="#888"/>'
            f'<line x1="{ml}" y1="{mt}" x2="{ml}" y2="{mt + h}" stroke="#888"/>'
            f'<text x="{ml - 4}" y="{mt + 9}" text-anchor="end">{int(top)}</text>'
            f'<text x="{ml - 4}" y="{mt + h}" text-anchor="end">0</text>'
            f'<text x="12" y="{mt + h / 2:.0f}" text-anchor="middle" transform="rotate(-90 12 {mt + h / 2:.0f})">tokens</text>'
            f'{"".join(ticks)}<text x="{ml + w / 2:.0f}" y="{height - 4}" text-anchor="middle">activation</text>'
            f'{"".join(bars)}</svg>')


TRACK_COLOURS = ("#0b57d0", "#1a7f37", "#8250df", "#b42318", "#9a6700", "#0e7490", "#be185d", "#4d7c0f")


def trace_svg(acts, tracks: dict, *, max_act: float, windows: list, label: str, width: int = 980,
              max_points: int = 400) -> str:
    """Activation along a whole sequence (line) with annotation tracks aligned under it (bars),
    the shown context windows shaded. ``tracks``: {name: [[start, end), ...] runs}. Sequences
    longer than ``max_points`` are drawn with the maximum of each bin (peaks are kept)."""
    acts = np.nan_to_num(np.asarray(acts, dtype=float), nan=0.0)
    L = len(acts)
    shown = [(j, k, v) for j, (k, v) in enumerate(tracks.items()) if len(v)]   # colour by track, not by row
    ml, th, ah = 90, 12, 40
    height = ah + 8 + th * len(shown) + 14
    w = width - ml - 4
    sx = w / max(L, 1)
    top = max_act if max_act > 0 else 1.0
    if L > max_points:
        edges = np.linspace(0, L, max_points + 1).astype(int)
        ys = np.maximum.reduceat(acts, edges[:-1])
        xs = (edges[:-1] + edges[1:]) / 2
    else:
        ys, xs = acts, np.arange(L) + 0.5
    pts = " ".join(f"{ml + x * sx:.0f},{ah - ah * y / top:.0f}" for x, y in zip(xs, ys))
    parts = [f'<rect x="{ml + a * sx:.0f}" y="0" width="{max((min(b, L) - a) * sx, 1):.0f}" height="{ah}" '
             f'fill="#fde7c8"/>' for a, b in windows]
    parts += [f'<polyline points="{pts}" fill="none" stroke="#c24100" stroke-width="1.2"/>',
             f'<line x1="{ml}" y1="{ah}" x2="{ml + w}" y2="{ah}" stroke="#888"/>',
             f'<text x="{ml - 4}" y="{ah - 2}" text-anchor="end">activation</text>']
    y = ah + 8
    desc = []
    for j, name, spans in shown:
        col = TRACK_COLOURS[j % len(TRACK_COLOURS)]
        parts.append(f'<text x="{ml - 4}" y="{y + th - 3}" text-anchor="end">{escape(name)}</text>')
        for s, e in spans:
            parts.append(f'<rect x="{ml + s * sx:.0f}" y="{y}" width="{max((e - s) * sx, 1):.0f}" height="{th - 3}" '
                         f'fill="{col}"><title>{escape(name)} {s + 1}–{e}</title></rect>')
        desc.append(f"{name} at {', '.join(f'{s + 1}-{e}' for s, e in spans[:6])}{' ...' if len(spans) > 6 else ''}")
        y += th
    parts.append(f'<text x="{ml}" y="{height - 2}">1</text><text x="{ml + w}" y="{height - 2}" text-anchor="end">{L}</text>')
    peak = int(np.argmax(acts)) + 1 if L else 0
    alt = (f"{label}: activation along {L} positions, peak {fmt(float(acts.max()) if L else 0)} at {peak}; "
           + ("; ".join(desc) if desc else "no annotated tracks in this sequence") + ".")
    return (f'<svg class="trace" role="img" aria-label="{escape(alt)}" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}">{"".join(parts)}</svg>')


def runs(m) -> list:
    """``[[start, end), ...]`` of the True runs of a boolean array."""
    m = np.asarray(m, bool)
    if not m.any():
        return []
    d = np.diff(np.concatenate([[0], m.astype(np.int8), [0]]))
    return [[int(a), int(b)] for a, b in zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1))]
