"""Activation patching sweeps, many patches per forward.

    from interp.patching import activation_patching
    df = activation_patching(model, clean, corrupt, sites="head_out", by="layer,head",
                             metric="logit_diff", answers=ans, distractors=dis)
    df.columns   # site, layer, head, position, effect   (head/position empty when not swept)

Each *variant* patches one cell (a layer; a layer and head; a layer and position; or all
three) from the source run into the base run. ``k`` variants run in one forward by stacking
``k`` copies of the base batch on the batch dimension, each copy patched at its own cell
(an :class:`hooks.Edit` per site that writes source values where the variant's mask is
set); ``k`` is bounded by ``memory_budget`` bytes of estimated activations. ``effect`` is the
mean over examples of ``metric(patched) - metric(base)`` (``normalize=True``: the patched
metric rescaled so that corrupt = 0 and clean = 1, as in Wang et al. 2022 / TransformerLens's
``patching`` demos).

Reference: the per-patch loop of TransformerLens ``transformer_lens/patching.py``
(``generic_activation_patch``), which runs one forward per cell; results are equal.
"""
from __future__ import annotations

import math

import torch

from hooks import Cache, Edit
from hooks.errors import SpecError

from ..metrics import repeat_batch
from .common import Pairs, flat_cache, parse_by, prepare_pairs, site_family

COLUMNS = ["site", "layer", "head", "position", "effect"]


def activation_patching(model, clean, corrupt, *, sites="attn_out", by="layer,position", metric="logit_diff",
                        answers=None, distractors=None, direction: str = "denoising", normalize: bool = False,
                        memory_budget: float = 1 << 30, max_variants=None):
    """A tidy ``pandas.DataFrame`` of patching effects; ``df.attrs`` holds the baselines and counts."""
    pairs = prepare_pairs(model, clean, corrupt, sites=sites, metric=metric, answers=answers,
                          distractors=distractors, direction=direction)
    return sweep(pairs, by, normalize=normalize, memory_budget=memory_budget, max_variants=max_variants)


def variants(pairs: Pairs, keys: tuple, shapes: dict) -> list:
    """``(site, layer, head, position)`` cells in forward order (None where not swept)."""
    n_pos = int(pairs.rank.max()) + 1
    out = []
    for s in pairs.sites:
        shape = shapes[s]
        if "head" in keys and len(shape) != 2:
            raise SpecError(f"by=head needs a site with a head axis (head_out.L, attn_pattern.L); {s} is {tuple(shape)} "
                            "per token. Use sites='head_out'.")
        heads = range(shape[0]) if "head" in keys else [None]
        poss = range(n_pos) if "position" in keys else [None]
        out.extend((s, pairs.layers[s], h, p) for h in heads for p in poss)
    return out


def row_bytes(model, inputs) -> int:
    """Estimated activation bytes of one row's forward: every canonical site's tensor (from one
    probe row) times 3 for the temporaries between sites."""
    one = {k: v[:1] if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
    with torch.no_grad():
        res = model.run(one, [Cache(model.site_names, "all", layout="padded", device=None)])
    return 3 * sum(v.numel() * v.element_size() for v in res.cache.values() if isinstance(v, torch.Tensor))


def _variant_masks(pairs, chunk, site, am_flat_rank, shape):
    """``(k, N0, H|1, 1..)`` bool: where each variant of ``chunk`` writes source values at ``site``."""
    k, N0 = len(chunk), am_flat_rank.shape[0]
    H = shape[0] if len(shape) == 2 else 1
    m = torch.zeros(k, N0, H, dtype=torch.bool)
    for i, (s, _, h, p) in enumerate(chunk):
        if s != site:
            continue
        tok = torch.ones(N0, dtype=torch.bool) if p is None else am_flat_rank == p
        if h is None:
            m[i, tok, :] = True
        else:
            m[i, tok, h] = True
    return m.view(k, N0, H, *([1] * (len(shape) - 1)))  # broadcast over the trailing dims


def sweep(pairs: Pairs, by="layer,position", *, normalize: bool = False, memory_budget: float = 1 << 30,
          max_variants=None):
    keys = parse_by(by)
    model, B = pairs.model, pairs.n
    src = flat_cache(model, pairs.source, pairs.sites)
    shapes = {s: tuple(v.shape[1:]) for s, v in src.items()}
    cells = variants(pairs, keys, shapes)
    am = pairs.base["attention_mask"].bool().cpu()
    flat_rank = pairs.rank[am]  # real-token index of each flat row
    per_variant = B * row_bytes(model, pairs.base)
    k = max(1, int(memory_budget // max(per_variant, 1)))
    if max_variants is not None:
        k = min(k, int(max_variants))
    k = min(k, len(cells))
    has_pos = torch.zeros(int(pairs.rank.max()) + 1, B, dtype=torch.bool)
    for p in range(has_pos.shape[0]):
        has_pos[p] = (pairs.rank == p).any(1)
    last_only = _last_token_logits_ok(pairs)
    effects, forwards = [], 0
    for start in range(0, len(cells), k):
        chunk = cells[start : start + k]
        kk = len(chunk)
        stacked = {n: (v.repeat(kk, *([1] * (v.dim() - 1))) if isinstance(v, torch.Tensor) else v)
                   for n, v in pairs.base.items()}
        edits = []
        for site in dict.fromkeys(c[0] for c in chunk):
            mask = _variant_masks(pairs, chunk, site, flat_rank, shapes[site]).to(src[site].device)
            edits.append(Edit(site, "all", fn=_writer(mask, src[site], kk)))
        with torch.no_grad():
            if last_only:
                logits, mb = _last_logits(model, stacked, edits), _at_last(repeat_batch(pairs.batch, kk))
            else:
                logits, mb = model.run(stacked, edits).logits, repeat_batch(pairs.batch, kk)
        forwards += 1
        vals = pairs.metric(logits, mb).view(kk, B).cpu()
        for i, (s, L, h, p) in enumerate(chunk):
            keep = torch.ones(B, dtype=torch.bool) if p is None else has_pos[p]
            effects.append(effect_of(vals[i], pairs.rows, keep, normalize))
    return effects_frame(cells, effects, pairs, keys, normalize, forwards=forwards,
                         last_token_logits_only=last_only, variants_per_forward=k)


def effects_frame(cells: list, effects: list, pairs: Pairs, keys, normalize: bool, **attrs):
    """The tidy table (:data:`COLUMNS`) of one effect per (site, layer, head, position) cell, with the
    sweep's settings and baselines in ``df.attrs``; shared by activation and attribution patching."""
    import pandas as pd

    df = pd.DataFrame({
        "site": [site_family(c[0]) for c in cells],
        "layer": [c[1] for c in cells],
        "head": pd.array([c[2] for c in cells], dtype="Int64"),
        "position": pd.array([c[3] for c in cells], dtype="Int64"),
        "effect": effects,
    }, columns=COLUMNS)
    df.attrs.update({"metric": pairs.metric.name, "direction": pairs.direction, "normalize": normalize,
                     "by": ",".join(keys), "examples": pairs.n, "variants": len(cells), **attrs,
                     **{f"metric_{n}": v for n, v in pairs.values.items()}})
    return df


def _last_logits(model, inputs, edits) -> torch.Tensor:
    """``(N, 1, vocab)`` logits at the last real token only: the forward stops after the final
    norm and only those rows go through the unembedding (less compute, no ``N×P×vocab`` tensor)."""
    res = model.run(inputs, [*edits, Cache("final", "last", device=None)], stop_after="final")
    head = model.resolve_sites("logits")[0].module
    return head(res.cache["final"])[:, None]


def _at_last(batch: dict) -> dict:
    return {**batch, "last": torch.zeros_like(batch["last"])}


def _last_token_logits_ok(pairs: Pairs) -> bool:
    """Metrics that read only the last token can skip the other positions' unembedding, if the
    model's logits are exactly the ``logits`` module applied to ``final`` (not, e.g., soft-capped);
    checked on the base run."""
    model = pairs.model
    if pairs.metric.reads != "answer" or not {"final", "logits"} <= set(model.site_names):
        return False
    with torch.no_grad():
        full = model.run(pairs.base).logits
        ar = torch.arange(full.shape[0], device=full.device)
        want = full[ar, pairs.batch["last"].to(full.device)]
        try:
            got = _last_logits(model, pairs.base, [])[:, 0]
        except Exception:  # noqa: BLE001 - any adapter that cannot do this falls back to full logits
            return False
    return got.shape == want.shape and bool(torch.allclose(got, want, rtol=1e-5, atol=1e-6))


def _writer(mask, src, k):
    """An Edit function: flat ``(k*N0, ...)`` activations with source values where ``mask`` is set."""
    def write(acts):
        a = acts.view(k, -1, *acts.shape[1:])
        return torch.where(mask, src.to(acts.dtype)[None], a).view_as(acts)

    return write


def effect_of(patched: torch.Tensor, rows: dict, keep: torch.Tensor, normalize: bool) -> float:
    """Mean over the examples in ``keep`` (those that have the patched position) of
    ``patched - base``; normalised: ``(patched - corrupt) / (clean - corrupt)`` of those means."""
    if not bool(keep.any()):
        return math.nan
    mean = lambda v: float(v[keep].nanmean())  # noqa: E731
    if normalize:
        gap = mean(rows["clean"]) - mean(rows["corrupt"])
        return (mean(patched) - mean(rows["corrupt"])) / gap if gap else math.nan
    return float((patched - rows["base"])[keep].nanmean())
