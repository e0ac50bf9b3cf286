"""Path patching: the effect of sender heads on the metric *through* chosen receivers only.

    from interp.patching import path_patching
    df = path_patching(model, clean, corrupt, senders="all", receivers=["head_out.1:0", "head_out.1:2"],
                       answers=ans, distractors=dis)        # one row per sender head
    df = path_patching(model, clean, corrupt, senders=[(0, 3)], receivers="resid_pre.1", ...)

The three-step algorithm of Wang et al. 2022 (IOI, arXiv:2211.00593, Appendix B; the
authors' code: ``path_patching`` in redwoodresearch/Easy-Transformer
``easy_transformer/ioi_utils.py``), as Goldowsky-Dill et al. 2023 describe it:

1. cache the base and the source runs;
2. run the base input with the sender head's output taken from the source run and every
   other attention head *frozen* at its base value (``freeze_mlps=True`` freezes the MLPs
   too), except the receivers, which recompute; record the receivers' activations;
3. run the base input with only the receivers set to the step-2 values; read the metric.

Receivers are head outputs (``"head_out.L:h"``: the head recomputed from the patched
residual, i.e. through its queries, keys and values together) or whole residual sites
(``"resid_pre.L"``, ``"resid_mid.L"``, ``"resid_post.L"``). Senders are stacked on the batch
dimension (``k`` copies of the base batch, copy ``i`` carrying sender ``i``; ``k`` bounded by
``memory_budget`` bytes of estimated activations), so ``k`` senders cost two forwards; with
``fast=True`` (default) step 2 skips the modules that return before the senders' layer's
``head_out`` site and step 3 those before the first receiver, replaying the base run's outputs
(exact: nothing before those sites differs from the base run; :mod:`interp.patching.replay`).
Output: the sweep schema, one row per sender head.
"""
from __future__ import annotations

import contextlib

import torch

from hooks import Cache, Edit
from hooks.errors import SpecError

from .common import flat_cache, prepare_pairs, take_rows
from .sweep import COLUMNS, base_replay, effect_of, row_bytes


def _parse_receivers(model, receivers):
    out = []
    for r in [receivers] if isinstance(receivers, str) else receivers:
        site, _, head = r.partition(":")
        if not model.resolve_sites(site) or model.resolve_sites(site)[0].name != site:
            raise SpecError(f"Receiver {r!r}: give one site (e.g. 'head_out.1:2' or 'resid_pre.1').")
        if head:
            if not site.startswith("head_out."):
                raise SpecError(f"Receiver {r!r}: ':head' only applies to head_out.L sites.")
            out.append((site, int(head)))
        else:
            if not site.startswith(("resid_pre.", "resid_mid.", "resid_post.")):
                raise SpecError(f"Receiver {r!r}: use head_out.L:h or a residual site (resid_pre/mid/post.L).")
            out.append((site, None))
    return out


def path_patching(model, clean, corrupt, *, senders="all", receivers, metric="logit_diff", answers=None,
                  distractors=None, direction: str = "denoising", normalize: bool = False, freeze_mlps: bool = False,
                  memory_budget: float = 1 << 30, fast: bool = True):
    """A DataFrame (site, layer, head, position, effect) with one row per sender head; senders
    are stacked on the batch dimension, as many per forward as ``memory_budget`` bytes allow."""
    import pandas as pd

    n = model.n_layers
    heads_sites = [f"head_out.{L}" for L in range(n)]
    pairs = prepare_pairs(model, clean, corrupt, sites=heads_sites, metric=metric, answers=answers,
                          distractors=distractors, direction=direction)
    recv = _parse_receivers(model, receivers)
    mlp_sites = [f"mlp_out.{L}" for L in range(n)] if freeze_mlps else []
    src = flat_cache(model, pairs.source, heads_sites)
    H = src[heads_sites[0]].shape[1]
    recv_layer = {s: model.resolve_sites(s)[0].layer for s, _ in recv}

    def upstream(L):
        return all(L < recv_layer[s] if (hh is not None or s.startswith("resid_pre")) else L <= recv_layer[s]
                   for s, hh in recv)

    if isinstance(senders, str) and senders == "all":  # every head upstream of all receivers
        senders = [(L, h) for L in range(n) if upstream(L) for h in range(H)]
    senders = [tuple(int(x) for x in s) for s in senders]
    if not senders:
        raise SpecError(f"No sender head is upstream of every receiver {receivers!r}.")
    for L, h in senders:
        if not upstream(L):
            raise SpecError(f"Sender head {L}.{h} is not upstream of every receiver {receivers!r}.")
    B = pairs.n
    rsites = list(dict.fromkeys(s for s, _ in recv))
    first_recv = min(rsites, key=model.site_names.index)  # step 3 changes nothing before this site
    if fast:  # skip what cannot change: step 2 starts at the sender's layer, step 3 at the first receiver
        use = {f"head_out.{L}" for L, _ in senders} | {first_recv}
        rep, why, base = base_replay(pairs, False, heads_sites + mlp_sites + rsites, use)
    else:
        rep, why, base = None, "fast=False", flat_cache(model, pairs.base, heads_sites + mlp_sites)
    am = pairs.base["attention_mask"].bool()
    per_sender = B * row_bytes(model, pairs.base) + sum(base[s].numel() * base[s].element_size()
                                                        for s in heads_sites + mlp_sites)
    k = max(1, min(len(senders), int(memory_budget // max(per_sender, 1))))
    groups: dict = {}  # fast: one sender layer per forward, so that step 2 can start at that layer
    for i, (L, _) in enumerate(senders):
        groups.setdefault(L if fast else None, []).append(i)
    chunks = [g[j : j + k] for g in groups.values() for j in range(0, len(g), k)]
    effects, forwards = [None] * len(senders), 0
    for idx in chunks:
        chunk = [senders[i] for i in idx]
        kk = len(chunk)
        rows = torch.arange(B).repeat(kk)
        stacked = take_rows(pairs.base, rows)
        # step 2: each stacked copy takes its sender from the source run, every other head (and the MLPs)
        # frozen at base, the receivers recompute
        edits = []
        for l in range(n):
            site = heads_sites[l]
            frozen = base[site].repeat(kk, *([1] * (base[site].dim() - 1)))
            N0 = base[site].shape[0]
            for i, (L, h) in enumerate(chunk):
                if L == l:
                    frozen[i * N0 : (i + 1) * N0, h] = src[site][:, h]
            keep = torch.zeros(H, dtype=torch.bool)
            for s, hh in recv:
                if s == site and hh is not None:
                    keep[hh] = True
            edits.append(Edit(site, "all", fn=_freeze(frozen, keep)))
        for site in mlp_sites:
            edits.append(Edit(site, "all", fn=_freeze(base[site].repeat(kk, *([1] * (base[site].dim() - 1))), None)))
        with torch.no_grad(), _replaying(rep, f"head_out.{chunk[0][0]}", rows):
            res = model.run(stacked, edits + [Cache(rsites, "all", layout="padded", device=None)])
        sam = am.repeat(kk, 1)
        step2 = {s: res.cache[s][sam.to(res.cache[s].device)] for s in rsites}
        # step 3: only the receivers take the step-2 values
        patch = []
        for s in rsites:
            hs = [hh for ss, hh in recv if ss == s]
            if hs[0] is not None:
                keep = torch.zeros(H, dtype=torch.bool)
                keep[hs] = True
                patch.append(Edit(s, "all", fn=_select(step2[s], keep)))
            else:
                patch.append(Edit(s, "all", fn=_freeze(step2[s], None)))
        with torch.no_grad(), _replaying(rep, first_recv, rows):
            logits = model.run(stacked, patch).logits
        forwards += 2
        vals = pairs.metric(logits, take_rows(pairs.batch, rows)).view(kk, B).cpu()
        for i, v in zip(idx, vals):
            effects[i] = effect_of(v, pairs.rows, torch.ones(B, dtype=torch.bool), normalize)
    df = pd.DataFrame({"site": "head_out", "layer": [s[0] for s in senders],
                       "head": pd.array([s[1] for s in senders], dtype="Int64"),
                       "position": pd.array([None] * len(senders), dtype="Int64"), "effect": effects}, columns=COLUMNS)
    df.attrs.update({"metric": pairs.metric.name, "direction": direction, "normalize": normalize,
                     "receivers": [f"{s}:{h}" if h is not None else s for s, h in recv], "freeze_mlps": freeze_mlps,
                     "examples": B, "forwards": forwards, "senders_per_forward": k, "fast": fast,
                     "replayed_modules": {s: len(rep.plan(s)) for s in sorted(rep.plans)} if rep is not None else {},
                     "replay_off": why or (dict(rep.reasons) if rep is not None else {}), **{f"metric_{k}": v for k, v in pairs.values.items()}})
    return df


def _replaying(rep, site, rows):
    return rep.replaying(site, rows) if rep is not None and rep.plan(site) else contextlib.nullcontext()


def _freeze(frozen, keep):
    """Edit fn: the frozen values, except heads in ``keep`` which keep their computed values."""
    def fn(acts):
        if keep is None or not bool(keep.any()):
            return frozen.to(acts.dtype)
        return torch.where(keep.to(acts.device)[None, :, None], acts, frozen.to(acts.dtype))

    return fn


def _select(values, keep):
    """Edit fn: ``values`` on the heads in ``keep``, the computed activations elsewhere."""
    def fn(acts):
        return torch.where(keep.to(acts.device)[None, :, None], values.to(acts.dtype), acts)

    return fn
