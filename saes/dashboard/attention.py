"""Attention patterns of chosen layers and heads for a few prompts, as one static HTML page.

    view = attention_view(model, ["The cat sat on the mat"], layers=[0, 1], heads=None, out="runs/attn")
    view.path / "index.html"      # thumbnails per head + a token view per head; data/attention.json
    view                           # in a notebook: the page, inline

Patterns are read through the hook registry's ``attn_pattern.L`` sites (post-softmax weights,
captured with transformers' ``AttentionInterface``: :mod:`hooks.attention`), one forward for
all prompts. Like circuitsvis's ``attention_heads`` view: a heat map per head (rows = query
tokens, columns = key tokens) and a token view in which choosing a query token (click or
keyboard focus) colours every token by how much the query attends to it. Only real tokens
are shown (padding removed); prompts longer than ``max_tokens`` are refused, not cut.
"""
from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Optional

import numpy as np

from . import html as H


def attention_patterns(model, prompts, layers, heads=None, *, max_tokens: int = 128) -> dict:
    """``{"tokens": [[str]], "patterns": {layer: [array (H_sel, P_b, P_b) per prompt]}, "heads": [...]}``."""
    import torch

    import hooks

    from ..errors import ConfigError
    from .site import Vocab

    if isinstance(prompts, str):
        prompts = [prompts]
    prompts = list(prompts)
    if not prompts:
        raise ConfigError("No prompts given; pass at least one prompt.")
    layers = [int(L) for L in layers]
    bad = [L for L in layers if not 0 <= L < model.n_layers]
    if bad:
        raise ConfigError(f"Layers {bad} do not exist; the model has layers 0..{model.n_layers - 1}.")
    with torch.no_grad():
        res = model.run(prompts, [hooks.Cache(f"attn_pattern.{L}") for L in layers])
    ids = res.inputs.get("input_ids", res.inputs.get("tokens"))
    am = res.inputs.get("attention_mask")
    am = torch.ones_like(ids, dtype=torch.bool) if am is None else am.bool()
    long = [i for i in range(len(prompts)) if int(am[i].sum()) > max_tokens]
    if long:
        raise ConfigError(f"Prompts {long} have more than max_tokens={max_tokens} tokens; shorten them or raise "
                          "max_tokens (the page holds P² weights per head).")
    vocab = Vocab(model.tokenizer)
    tokens = [[vocab(t) for t in ids[i][am[i]].tolist()] for i in range(len(prompts))]
    out = {"tokens": tokens, "patterns": {}, "heads": None}
    for L in layers:
        pat = res.cache[f"attn_pattern.{L}"].float().cpu()          # (B, H, Q, K)
        n_heads = pat.shape[1]
        sel = list(range(n_heads)) if heads is None else [int(h) for h in heads]
        badh = [h for h in sel if not 0 <= h < n_heads]
        if badh:
            raise ConfigError(f"Heads {badh} do not exist; layer {L} has heads 0..{n_heads - 1}.")
        out["heads"] = sel
        per = []
        for i in range(len(prompts)):
            m = am[i].cpu()
            per.append(pat[i][sel][:, m][:, :, m].numpy())
        out["patterns"][L] = per
    return out


def _heatmap_svg(w: np.ndarray, toks: list, *, title: str, cell: int) -> str:
    P = w.shape[0]
    lab = 70
    size = lab + P * cell + 4
    rects = []
    for q in range(P):
        for k in range(P):
            v = float(w[q, k])
            if v <= 0.005:
                continue
            rects.append(f'<rect x="{lab + k * cell}" y="{lab + q * cell}" width="{cell}" height="{cell}" '
                         f'fill="rgb(11,87,208)" fill-opacity="{v:.3f}"/>')
    labels = []
    if cell >= 8:
        for i, t in enumerate(toks):
            t = escape(t[:10])
            labels.append(f'<text x="{lab - 3}" y="{lab + i * cell + cell * 0.75:.1f}" text-anchor="end">{t}</text>')
            labels.append(f'<text transform="translate({lab + i * cell + cell * 0.75:.1f},{lab - 3}) rotate(-90)">{t}</text>')
    flat = np.argsort(-w, axis=None)[:3]
    strongest = "; ".join(f"{toks[q]!r}→{toks[k]!r} {w[q, k]:.2f}" for q, k in zip(*np.unravel_index(flat, w.shape)))
    alt = f"{title}: attention of {P} query tokens (rows) to {P} key tokens (columns); strongest {strongest}."
    return (f'<svg role="img" aria-label="{escape(alt)}" width="{size}" height="{size}" viewBox="0 0 {size} {size}">'
            f'<title>{escape(alt)}</title><rect x="{lab}" y="{lab}" width="{P * cell}" height="{P * cell}" fill="none" '
            f'stroke="#ccc"/>{"".join(labels)}{"".join(rects)}</svg>')


def render_attention(data: dict, *, assets: Optional[str] = "assets", title: str = "Attention patterns",
                     info: Optional[dict] = None) -> str:
    parts = [f'<nav class="top" aria-label="Site"><strong>{escape(title)}</strong>'
             f'<a href="data/attention.json">attention.json</a></nav><main><h1>{escape(title)}</h1>']
    if info:
        parts.append(f'<p class="muted small">{escape(" · ".join(f"{k}: {v}" for k, v in info.items()))}</p>')
    parts.append('<p class="muted small">Heat maps: rows are query tokens, columns key tokens, darker = more attention. '
                 'Token views: click or tab to a token to see where it attends.</p>')
    for i, toks in enumerate(data["tokens"]):
        parts.append(f'<section class="prompt" aria-label="Prompt {i}"><h2>Prompt {i}: '
                     f'<span class="mono">{escape("".join(toks)[:200])}</span></h2>')
        cell = max(4, min(18, 360 // max(len(toks), 1)))
        for L, per in data["patterns"].items():
            w = per[i]
            parts.append(f'<h3>Layer {L}</h3><div style="display:flex;flex-wrap:wrap;gap:14px">')
            for j, h in enumerate(data["heads"]):
                parts.append(f'<figure class="head" data-layer="{L}" data-head="{h}" style="margin:0">'
                             f'{_heatmap_svg(w[j], toks, title=f"Layer {L} head {h}", cell=cell)}'
                             f'<figcaption class="small">L{L} H{h}</figcaption></figure>')
            parts.append("</div>")
            for j, h in enumerate(data["heads"]):
                weights = json.dumps(np.round(w[j], 3).tolist(), separators=(",", ":"))
                btns = "".join(f'<button type="button" class="tok" aria-pressed="false">{escape(t)}</button>' for t in toks)
                parts.append(f'<div class="small"><span class="muted">L{L} H{h} token view:</span> '
                             f'<span class="attn-tokens" data-layer="{L}" data-head="{h}" data-weights="{escape(weights)}" '
                             f'role="group" aria-label="Layer {L} head {h} token view">{btns}</span> '
                             f'<span class="attn-status sr-only" aria-live="polite"></span></div>')
        parts.append("</section>")
    parts.append("</main>")
    return H.page(title, "".join(parts), assets=assets)


class AttentionView:
    def __init__(self, path: Path, data: dict, html: str):
        self.path, self.data, self.html = Path(path), data, html

    def _repr_html_(self) -> str:
        from .view import HTMLView

        return HTMLView(render_attention(self.data, assets=None))._repr_html_()


def attention_view(model, prompts, layers, heads=None, *, out, max_tokens: int = 128,
                   info: Optional[dict] = None) -> AttentionView:
    """Write ``out/index.html`` (+ ``assets/``, ``data/attention.json``) atomically; see module doc."""
    from hooks.loading import atomic_directory

    from .site import copy_assets

    data = attention_patterns(model, prompts, layers, heads, max_tokens=max_tokens)
    html = render_attention(data, info=info)
    with atomic_directory(out) as tmp:
        tmp = Path(tmp)
        copy_assets(tmp / "assets")
        (tmp / "data").mkdir()
        js = {"tokens": data["tokens"], "heads": data["heads"],
              "patterns": {str(L): [w.tolist() for w in per] for L, per in data["patterns"].items()}}
        (tmp / "data" / "attention.json").write_text(json.dumps(js), encoding="utf-8")
        (tmp / "index.html").write_text(html, encoding="utf-8")
    return AttentionView(Path(out), data, html)
