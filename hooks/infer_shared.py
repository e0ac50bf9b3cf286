"""Structural inference for a **shared block**: one layer module that runs once per layer.

ALBERT (Lan et al. 2020, §3.1 cross-layer parameter sharing; google-research/albert ``modeling.py``
``transformer_model``; transformers ``models/albert/modeling_albert.py`` ``AlbertTransformer.forward``,
which calls ``albert_layer_groups[group_idx]`` ``num_hidden_layers`` times) has no ``ModuleList``
of ``num_hidden_layers`` blocks: :func:`hooks.infer.find_blocks` fails, and the block is found in
the recording forward instead, as the module that

* runs exactly ``n`` times (the config's layer count) — or, with several groups of shared layers,
  the children of a ``ModuleList`` run in turn, ``n`` calls in all,
* maps a ``(B, P, D)`` tensor to one of the same shape, and
* chains: its first call's output is its second call's input.

Layer ``L``'s sites are then the sites of the block's first call (:func:`hooks.infer.analyse_block`
reads them) bound to the ``L``-th call of each module (``Site.call``; hooks fire only during that
call, :mod:`hooks.calls`), counted within each forward of the nearest enclosing module that runs
once per forward (the ``scope``: ALBERT's encoder)::

    layers, blocks = find_shared_blocks(recs, n=12, emb_path="albert.embeddings.word_embeddings")
    plans = per_call_plans([(analyse_block(p, recs, nh), k) for p, k in blocks], recs, scope_of(blocks[0][0], recs))
"""
from __future__ import annotations

from dataclasses import replace
from typing import Optional

from .infer_stack import _common, _depth, close


def _chains(r) -> bool:
    """A module whose first call's output is its second call's input (or that runs once)."""
    return r.calls == 1 or close(r.out, r.inp_next)


def find_shared_blocks(recs: dict, n: int, emb_path: Optional[str]) -> Optional[tuple]:
    """``(layers_path, [(block path, calls), ...])``: the blocks in run order whose calls, ``n`` in all,
    are the layers, each call feeding the next (see the module docstring), nearest the input
    embeddings, outermost first; else None. Either one module run ``n`` times (ALBERT: the layer
    group, which holds the layer) or the children of a ``ModuleList`` run in turn, each several
    times (ALBERT with ``num_hidden_groups > 1``: layers ``0..n/g-1`` are group 0's calls)."""
    if n < 2:
        return None

    def ok(r):
        return (r is not None and r.calls >= 1 and r.inp is not None and r.out is not None and r.inp.dim() == 3
                and r.inp.shape == r.out.shape and _chains(r))

    cands = [(p, [(p, n)]) for p, r in recs.items() if p and r.calls == n and ok(r)]
    parents = {p.rpartition(".")[0] for p in recs if p.rpartition(".")[2].isdigit()}
    for q in parents:
        kids, i = [], 0
        while f"{q}.{i}" in recs:
            kids.append(recs[f"{q}.{i}"])
            i += 1
        if len(kids) < 2 or not all(ok(r) for r in kids) or sum(r.calls for r in kids) != n:
            continue
        kids.sort(key=lambda r: r.start)
        prev_out = [r.out_last if r.out_last is not None else r.out for r in kids]
        if all(close(prev_out[j], kids[j + 1].inp) for j in range(len(kids) - 1)):
            cands.append((q, [(r.path, r.calls) for r in kids]))
    if not cands:
        return None
    cands.sort(key=lambda c: (-_common(c[0], emb_path or ""), _depth(c[0])))
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


def per_call_plans(blocks: list, recs: dict, scope: str) -> list:
    """One plan per layer from ``[(plan of a block's first call, its calls), ...]`` (run order): every
    site bound to its module's call in that layer (a module run ``k`` times per block call: call
    ``c·k`` in the block's call ``c``, its first call there)."""
    out = []
    for plan, calls in blocks:
        for c in range(calls):
            sites = {}
            for kind, site in plan.sites.items():
                r = recs.get(site.path)
                k = max(1, (r.calls if r is not None else calls) // calls)
                sites[kind] = replace(site, call=c * k, scope=scope)
            out.append(replace(plan, sites=sites, absent=dict(plan.absent)))
    return out


def last_call(rec):
    """The block's record as its last call left it (its output is the last layer's output)."""
    return replace(rec, out=rec.out_last if rec.out_last is not None else rec.out)
