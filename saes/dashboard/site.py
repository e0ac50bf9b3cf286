"""Write the dashboard site: ``index.html``, one ``latents/NNNNNN.html`` per live latent, the shipped
``assets/`` (CSS/JS) and ``data/`` (``latents.csv``, ``meta.json``, one ``latent_NNNNNN.json`` per page).

    site = SiteData(acts, summary, vocab, logits=..., best=..., labels=..., tracks=[...], info={...})
    write_site(site, "runs/dash")                  # atomic: built beside, then renamed into place
    html = render_latent(site, 12, assets=None)     # one page with CSS/JS inlined (notebooks)
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Optional

import numpy as np

from . import html as H
from .gather import LatentActivations
from .stats import Summary


class Vocab:
    """Token id -> display string (decoded one token at a time, cached; ``#id`` without a tokenizer)."""

    def __init__(self, tokenizer=None):
        self.tok, self.cache = tokenizer, {}

    def __call__(self, i: int) -> str:
        i = int(i)
        s = self.cache.get(i)
        if s is None:
            s = f"#{i}"
            if self.tok is not None:
                try:
                    s = self.tok.decode([i])
                except Exception:  # noqa: BLE001 - tokenizers raise many types for odd ids
                    conv = getattr(self.tok, "convert_ids_to_tokens", None)
                    s = str(conv(i)) if callable(conv) else s
            s = s.replace("\n", "\u21b5").replace("\t", "\u21e5") or "\u2205"
            self.cache[i] = s
        return s


@dataclass
class SiteData:
    acts: LatentActivations
    summary: Summary
    vocab: Vocab
    logits: dict = field(default_factory=dict)          # from stats.logit_effects
    best: Optional[dict] = None                          # from annotations.best_f1
    labels: Optional[np.ndarray] = None                  # (rows, tracks) bool
    tracks: list = field(default_factory=list)
    info: dict = field(default_factory=dict)             # model, sae, data, site, ...
    context: tuple = (8, 4)                              # tokens left / right of the ranked token
    n_bands: int = 5
    n_traces: int = 5                                    # top contexts drawn with their whole-sequence trace
    pages: Optional[list] = None                         # latents that get a page (default: every live one)

    def __post_init__(self):
        self.lookup = self.acts.row_lookup()
        ex = self.acts.example_of_row
        self.first_row = np.searchsorted(ex, np.arange(len(self.acts.tokens) + 1))
        live = np.flatnonzero(self.summary.count > 0)
        self.pages = sorted(set(int(f) for f in (live if self.pages is None else self.pages)) & set(live.tolist()))
        self._page_set = set(self.pages)

    # -- data of one latent (what its page shows, also written as JSON) -------------------------
    def context_of(self, row: int, f: int) -> dict:
        a = self.acts
        e, j = int(a.example_of_row[row]), int(a.token_of_row[row])
        lo, hi = max(0, j - self.context[0]), min(len(a.tokens[e]), j + self.context[1] + 1)
        vals = self.lookup.values(self.lookup.rows_of(e, lo, hi), f)
        return {"example": e, "position": int(a.ordinal_of_row[row]), "token_index": j,
                "act": float(self.lookup.values(np.array([row]), f)[0]),
                "tokens": [self.vocab(t) for t in a.tokens[e][lo:hi]],
                "acts": [None if np.isnan(v) else round(float(v), 5) for v in vals], "hit": j - lo,
                "left_truncated": lo > 0, "right_truncated": hi < len(a.tokens[e])}

    def latent_data(self, f: int) -> dict:
        s = self.summary
        groups = [{"name": f"Top {len(s.top[f])} activations", "kind": "top",
                   "contexts": [self.context_of(r, f) for r in s.top[f]]}]
        for b in s.bands[f]:
            groups.append({"name": f"Interval {H.fmt(b['lo'])}–{H.fmt(b['hi'])}", "kind": "band", "lo": b["lo"],
                           "hi": b["hi"], "count": b["count"], "share": b["count"] / max(s.n_rows, 1),
                           "contexts": [self.context_of(r, f) for r in b["rows"]]})
        d = {"latent": f, "count": int(s.count[f]), "rows": s.n_rows, "density": float(s.density[f]),
             "max": float(s.max[f]), "mean": float(s.mean[f]),
             "histogram": {"edges": s.hist_edges(f).tolist(), "counts": s.hist_counts[f].tolist()},
             "groups": groups, "n_bands": self.n_bands}
        if "top_ids" in self.logits:
            d["logits"] = {k: [[self.vocab(i), float(v)] for i, v in zip(self.logits[f"{k}_ids"][f],
                                                                           self.logits[f"{k}_vals"][f])]
                           for k in ("top", "bottom")}
        elif self.logits:
            d["logits"] = {"unavailable": self.logits.get("unavailable", "")}
        if self.best is not None:
            d["best_annotation"] = {"track": self.best["track"][f], "f1": float(self.best["f1"][f]),
                                    "threshold": float(self.best["threshold"][f]),
                                    "per_track": dict(zip(self.tracks, map(float, self.best["per_track"][f])))}
            d["traces"] = self.traces_of(s.top[f], f)
        return d

    def traces_of(self, top_rows, f: int) -> list:
        """Whole-sequence traces of the distinct examples among the top contexts (first ``n_traces``),
        each with the context windows of every top row in it."""
        by_ex: dict = {}
        for r in top_rows:
            e = int(self.acts.example_of_row[r])
            if e in by_ex or len(by_ex) < self.n_traces:
                o = int(self.acts.ordinal_of_row[r])
                by_ex.setdefault(e, []).append([max(0, o - self.context[0]), o + self.context[1] + 1])
        out = []
        for e, windows in by_ex.items():
            r0, r1 = int(self.first_row[e]), int(self.first_row[e + 1])
            out.append({"example": e, "acts": [float(f"{v:.4g}") for v in self.lookup.values(np.arange(r0, r1), f)],
                        "tracks": {t: H.runs(self.labels[r0:r1, j]) for j, t in enumerate(self.tracks)},
                        "windows": windows})
        return out


# -- pages --------------------------------------------------------------------------------------
def _stats_dl(items) -> str:
    return '<dl class="stats">' + "".join(f"<dt>{escape(k)}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def render_latent(site: SiteData, f: int, *, assets: Optional[str] = "../assets", data: Optional[dict] = None) -> str:
    d = data or site.latent_data(f)
    i = site.pages.index(f) if f in site.pages else -1
    prev = site.pages[i - 1] if i > 0 else None
    nxt = site.pages[i + 1] if 0 <= i < len(site.pages) - 1 else None
    link = lambda g, id_, txt: (f'<a id="nav-{id_}" href="{g:06d}.html" rel="{id_}">{txt}</a>'   # noqa: E731
                                if g is not None else f'<span class="muted">{txt}</span>')
    nav = (f'<nav class="top" aria-label="Latent navigation"><a id="nav-up" href="../index.html">Index</a>'
           f'{link(prev, "prev", "← previous")}{link(nxt, "next", "next →")}'
           f'<a href="../data/latent_{f:06d}.json">data (JSON)</a>'
           f'<span class="muted small">keys: [ previous, ] next, i index</span></nav>')
    items = [("density", f"{100 * d['density']:.3g}% ({d['count']:,} of {d['rows']:,} tokens)"),
             ("max activation", H.fmt(d["max"])), ("mean when firing", H.fmt(d["mean"]))]
    if "best_annotation" in d:
        b = d["best_annotation"]
        items.append(("best annotation F1", f"{b['f1']:.3f} ({escape(b['track'])}, a/max &gt; {b['threshold']:g})"))
    hist = H.histogram_svg(d["histogram"]["counts"], d["histogram"]["edges"], label=f"latent {f}")
    logits = _logits_html(d.get("logits"))
    groups = []
    for g in d["groups"]:
        head = escape(g["name"])
        if g["kind"] == "band":
            head += (f' <span class="muted small">contains {g["count"]:,} tokens ({100 * g["share"]:.3g}% of all); '
                     f'{len(g["contexts"])} shown at random</span>')
        ctx = "".join(_context_html(c, d["max"], d["n_bands"]) for c in g["contexts"]) or '<p class="muted">none</p>'
        traces = ""
        if g["kind"] == "top" and d.get("traces"):
            traces = ('<h3 id="traces">Whole-sequence traces of the top contexts, annotation tracks below</h3>'
                      '<p class="muted small">One per sequence among the top contexts; shaded: the context windows shown above.</p>'
                      + "".join(H.trace_svg(t["acts"], t["tracks"], max_act=d["max"], windows=t["windows"],
                                            label=f"Example {t['example']}")
                                for t in d["traces"]))
        groups.append(f'<section class="group" data-kind="{g["kind"]}" aria-label="{escape(g["name"])}"><h3>{head}</h3>'
                      f'<div role="list">{ctx}</div>{traces}</section>')
    body = (f"{nav}<main><h1>Latent {f}</h1>"
            f'<p class="muted small">{escape(_provenance(site.info))}</p>{_stats_dl(items)}'
            f'<div class="grid"><section aria-label="Activation histogram"><h2>Activations when firing</h2>{hist}</section>'
            f'<section aria-label="Logit effects"><h2>Logit effects (W<sub>dec</sub>·W<sub>U</sub>)</h2>{logits}</section></div>'
            f'<h2>Contexts</h2>{H.legend_html(d["max"], d["n_bands"])}<div id="contexts">{"".join(groups)}</div></main>')
    return H.page(f"Latent {f} — {site.info.get('title', 'SAE dashboard')}", body, assets=assets)


def _context_html(c: dict, max_act: float, n_bands: int) -> str:
    toks = H.tokens_html(c["tokens"], [np.nan if a is None else a for a in c["acts"]], max_act, n_bands, hit=c["hit"])
    pre = "…" if c["left_truncated"] else ""
    post = "…" if c["right_truncated"] else ""
    word = c["tokens"][c["hit"]]
    alt = f"activation {c['act']:.4g} at token {word!r}, example {c['example']} position {c['position'] + 1}"
    return (f'<div class="ctx" role="listitem" tabindex="0" aria-label="{escape(alt)}" data-example="{c["example"]}" '
            f'data-position="{c["position"]}" data-act="{c["act"]:.6g}"><span class="act">{H.fmt(c["act"])}</span>'
            f'<span class="where">#{c["example"]}:{c["position"] + 1}</span><span class="seq">{pre}{toks}{post}</span></div>')


def _logits_html(lg: Optional[dict]) -> str:
    if not lg:
        return '<p class="muted">not computed</p>'
    if "unavailable" in lg:
        return f'<p class="muted">unavailable: {escape(lg["unavailable"])}</p>'
    out = []
    for key, title in (("top", "Promoted"), ("bottom", "Suppressed")):
        rows = "".join(f'<tr><td class="tokname">{escape(t)}</td><td class="{"pos" if v > 0 else "neg"}">{v:+.3f}</td></tr>'
                       for t, v in lg[key])
        out.append(f'<table class="logits" aria-label="{title} tokens"><caption class="l">{title}</caption>'
                   f'<thead><tr><th class="l" scope="col">token</th><th scope="col">effect</th></tr></thead>'
                   f"<tbody>{rows}</tbody></table>")
    return f'<div style="display:flex;gap:24px">{"".join(out)}</div>'


def _provenance(info: dict) -> str:
    keys = ("model", "sae", "site", "data")
    return " · ".join(f"{k}: {info[k]}" for k in keys if info.get(k))


def index_rows(site: SiteData) -> list:
    s = site.summary
    rows = []
    for f in range(site.acts.n_latents):
        top_tok = []
        for r in s.top[f][:3]:
            e, j = site.acts.example_of_row[r], site.acts.token_of_row[r]
            top_tok.append(site.vocab(site.acts.tokens[e][j]))
        row = {"latent": f, "count": int(s.count[f]), "density": float(s.density[f]), "max": float(s.max[f]),
               "mean": float(s.mean[f]), "top_tokens": " ".join(dict.fromkeys(top_tok))}
        if site.best is not None:
            row["best_f1"] = float(site.best["f1"][f])
            row["best_track"] = site.best["track"][f]
        if "top_ids" in site.logits:
            row["promoted"] = " ".join(site.vocab(i) for i in site.logits["top_ids"][f][:3])
        row["page"] = f"latents/{f:06d}.html" if f in site._page_set else ""
        rows.append(row)
    return rows


def render_index(site: SiteData, rows: list, *, assets: Optional[str] = "assets") -> str:
    ann = site.best is not None
    cols = [("latent", "Latent", "num"), ("density", "Density", "num"), ("max", "Max act.", "num"),
            ("mean", "Mean act.", "num")]
    if ann:
        cols += [("best_f1", "Best annotation F1", "num"), ("best_track", "Annotation", "text")]
    cols += [("top_tokens", "Top tokens", "text")]
    if "top_ids" in site.logits:
        cols += [("promoted", "Promoted", "text")]
    head = "".join(f'<th scope="col" data-key="{k}" data-type="{t}" aria-sort="none"'
                   f'{" class=l" if t == "text" else ""}><button type="button">{n}</button></th>' for k, n, t in cols)
    body = []
    for r in rows:
        f = r["latent"]
        attrs = " ".join(f'data-{k}="{escape(str(r[k]))}"' for k, _, _ in cols)
        cell = (f'<a href="{r["page"]}">{f}</a>' if r["page"] else f'<span>{f}</span>')
        tds = [f"<td>{cell}</td>", f'<td>{100 * r["density"]:.3g}%</td>', f'<td>{H.fmt(r["max"])}</td>',
               f'<td>{H.fmt(r["mean"])}</td>']
        if ann:
            tds += [f'<td>{r["best_f1"]:.3f}</td>', f'<td class="l">{escape(r["best_track"])}</td>']
        tds.append(f'<td class="l mono">{escape(r["top_tokens"])}</td>')
        if "promoted" in r:
            tds.append(f'<td class="l mono">{escape(r["promoted"])}</td>')
        search = f'latent {f} {r["top_tokens"]} {r.get("best_track", "")}'
        dead = ' class="dead"' if r["count"] == 0 else ""
        body.append(f'<tr{dead} data-i="{f}" {attrs} data-search="{escape(search)}">{"".join(tds)}</tr>')
    m = site.acts.meta
    n_dead = int((site.summary.count == 0).sum())
    notes = [f'{m["rows"]:,} tokens from {m["examples_read"]:,} examples at <code>{escape(m["site"])}</code>',
             f'{site.acts.n_latents:,} latents, {n_dead:,} never fired here (listed, no page)',
             f'{len(site.pages):,} latent pages']
    if m.get("stopped_at_max_tokens"):
        notes.append(f'<strong>stopped at max_tokens={m["max_tokens"]:,}</strong>: the rest of the data was not read')
    skipped = len(set(np.flatnonzero(site.summary.count > 0).tolist()) - site._page_set)
    if skipped:
        notes.append(f"{skipped:,} live latents without a page (not asked for)")
    if ann:
        notes.append("best annotation F1: InterPLM's F1 (precision vs per-domain recall), best over tracks and "
                     "thresholds of a/max, measured on these data (in-sample)")
    body_html = (f'<nav class="top" aria-label="Site"><strong>{escape(site.info.get("title", "SAE dashboard"))}</strong>'
                 f'<a href="data/latents.csv">latents.csv</a><a href="data/meta.json">meta.json</a></nav><main>'
                 f'<h1>Latents</h1><p class="muted small">{escape(_provenance(site.info))}</p>'
                 f'<ul class="small">{"".join(f"<li>{n}</li>" for n in notes)}</ul>'
                 f'<div class="filter"><label for="filter">Filter (latent, token, track): </label>'
                 f'<input id="filter" type="search" autocomplete="off"> <span id="filter-count" class="muted small" aria-live="polite"></span></div>'
                 f'<p class="muted small">Click a column header to sort. Arrow keys (or j/k) move between rows. '
                 f'<span id="sort-status" aria-live="polite"></span></p>'
                 f'<table id="latents" class="sortable" aria-label="Latents of the SAE"><thead><tr>{head}</tr></thead>'
                 f'<tbody>{"".join(body)}</tbody></table></main>')
    return H.page(site.info.get("title", "SAE dashboard"), body_html, assets=assets)


def write_site(site: SiteData, out, *, progress: bool = True) -> Path:
    """Write the whole site into ``out`` atomically (built in a temp folder beside it, then renamed)."""
    from hooks.io import csv_text
    from hooks.loading import atomic_directory

    rows = index_rows(site)
    with atomic_directory(out) as tmp:
        tmp = Path(tmp)
        (tmp / "assets").mkdir()
        (tmp / "data").mkdir()
        (tmp / "latents").mkdir()
        for name in H.ASSETS:
            (tmp / "assets" / name).write_text(H.asset_text(name), encoding="utf-8")
        (tmp / "index.html").write_text(render_index(site, rows), encoding="utf-8")
        (tmp / "data" / "latents.csv").write_text(csv_text(rows), encoding="utf-8")
        meta = {**site.info, **site.acts.meta, "n_pages": len(site.pages), "tracks": site.tracks,
                "context": list(site.context), "n_bands": site.n_bands}
        (tmp / "data" / "meta.json").write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
        from hooks.progress import track

        for f in track(site.pages, "latent pages", unit="page", enabled=progress):
            d = site.latent_data(f)
            (tmp / "data" / f"latent_{f:06d}.json").write_text(json.dumps(d, separators=(",", ":")), encoding="utf-8")
            (tmp / "latents" / f"{f:06d}.html").write_text(render_latent(site, f, data=d), encoding="utf-8")
    return Path(out)


def copy_assets(dest) -> None:
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for name in H.ASSETS:
        (dest / name).write_text(H.asset_text(name), encoding="utf-8")


__all__ = ["SiteData", "Vocab", "write_site", "render_index", "render_latent", "index_rows", "copy_assets"]
