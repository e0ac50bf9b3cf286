"""Structural inference for a **shared block**: one layer module that runs once per layer.

ALBERT (Lan et al. 2020, §3.1 cross-layer parameter sharing; google-research/albert ``modeling.py``
``transformer_model``; transformers ``models/albert/modeling_albert.py`` ``AlbertTransformer.forward``,
which calls ``albert_layer_groups[group_idx]`` ``num_hidden_layers`` times) has no ``ModuleList``
of ``num_hidden_layers`` blocks: :func:`hooks.infer.find_blocks` fails, and the block is found in
the recording forward instead, as the module that

* runs exactly ``n`` times (the config's layer count),
* maps a ``(B, P, D)`` tensor to one of the same shape, and
* chains: its first call's output is its second call's input.

Layer ``L``'s sites are then the sites of the block's first call (:func:`hooks.infer.analyse_block`
reads them) bound to the ``L``-th call of each module (``Site.call``; hooks fire only during that
call, :mod:`hooks.calls`), counted within each forward of the nearest enclosing module that runs
once per forward (the ``scope``: ALBERT's encoder)::

    path = find_shared_block(model, recs, n=12, emb_path="albert.embeddings.word_embeddings")
    plans = per_call_plans(analyse_block(path, recs, nh), recs, n, scope_of(path, recs))
"""
from __future__ import annotations

from dataclasses import replace
from typing import Optional

from .infer_stack import _common, _depth, close


def find_shared_block(recs: dict, n: int, emb_path: Optional[str]) -> Optional[str]:
    """Path of the module that runs ``n`` times and feeds itself (see the module docstring), nearest
    the input embeddings, outermost first (ALBERT: the layer group, which holds the layer); else None."""
    if n < 2:
        return None
    cands = [p for p, r in recs.items()
             if p and r.calls == n and r.inp is not None and r.out is not None and r.inp.dim() == 3
             and r.inp.shape == r.out.shape and close(r.out, r.inp_next)]
    if not cands:
        return None
    cands.sort(key=lambda p: (-_common(p, emb_path or ""), _depth(p)))
    return cands[0]


def scope_of(block_path: str, recs: dict) -> str:
    """The nearest ancestor of the block that runs once per forward ("" the root)."""
    path = block_path.rpartition(".")[0]
    while path:
        r = recs.get(path)
        if r is not None and r.calls == 1:
            return path
        path = path.rpartition(".")[0]
    return ""


def per_call_plans(plan, recs: dict, n: int, scope: str) -> list:
    """One plan per layer from the shared block's plan: every site bound to its module's call in layer
    ``L`` (a module that runs ``k`` times per layer: call ``L·k``, its first call in that layer)."""
    out = []
    for L in range(n):
        sites = {}
        for kind, site in plan.sites.items():
            r = recs.get(site.path)
            k = max(1, (r.calls if r is not None else n) // n)
            sites[kind] = replace(site, call=L * k, scope=scope)
        out.append(replace(plan, sites=sites, absent=dict(plan.absent)))
    return out


def last_call(rec):
    """The block's record as its last call left it (its output is the last layer's output)."""
    return replace(rec, out=rec.out_last if rec.out_last is not None else rec.out)
