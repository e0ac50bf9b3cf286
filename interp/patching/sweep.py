"""Activation patching sweeps, many patches per forward.

    from interp.patching import activation_patching
    df = activation_patching(model, clean, corrupt, sites="head_out", by="layer,head",
                             metric="logit_diff", answers=ans, distractors=dis)
    df.columns   # site, layer, head, position, effect   (head/position empty when not swept)

Each *variant* patches one cell (a layer; a layer and head; a layer and position; or all
three) from the source run into the base run. Variants run in one forward by stacking
copies of the base rows on the batch dimension, each copy patched at its own cell (an
:class:`hooks.Edit` per site that writes source values where the variant's cell is); the
stacked rows per forward are bounded by ``memory_budget`` bytes of estimated activations
(and ``max_variants`` variants). ``effect`` is the
mean over examples of ``metric(patched) - metric(base)`` (``normalize=True``: the patched
metric rescaled so that corrupt = 0 and clean = 1, as in Wang et al. 2022 / TransformerLens's
``patching`` demos).

Only what a patch can change is computed (``fast=True``, the default; exact, generic):

* a row whose source values equal the base run's at the variant's cell (e.g. positions
  before the corrupted token of a causal model) is not run: patching writes what is already
  there, so its metric is the base run's (:func:`first_changed`);
* in a causal model whose KV cache is found and checked on the base run
  (:mod:`interp.patching.prefix`; ``prefix=True``), a stacked row runs only the columns from
  the first one its patch changes, on the base run's cached keys/values of the columns before
  (they are the base run's at every layer); rows are grouped by that cut, adjacent cuts
  merged where one forward costs less than two (:func:`~interp.patching.batching.merge_cuts`), and the blocks below the
  patched layer return their recorded base outputs at the suffix's columns where that is
  checked to reproduce the base run (``df.attrs["prefix_with_replay"]``);
* otherwise variants run grouped by site, and the modules that returned before the site's
  hook fired in the base run (the blocks below its layer; inside its block, e.g. the
  attention module for ``attn_out.L``) return their recorded base outputs instead of
  computing (:mod:`interp.patching.replay`), where the model's structure allows it;
  elsewhere every block runs (``df.attrs["replay_off"]`` says why);
* metrics that read only the last token unembed only that token.

``fast=False`` is the reference: every variant's full batch through the whole model.
``df.attrs``: ``forwards``, ``rows_run`` / ``rows_total`` / ``rows_equal_to_base``,
``padded_tokens_run`` (stacked rows × columns computed), ``prefix`` (the cache mechanism
used) or ``prefix_off`` (why none), and, per site, ``replayed_modules`` (planned).
Not done: dropping the columns after the last one the metric reads (it saves nothing for
last-token metrics, and a metric over all positions reads them all).

Reference: the per-patch loop of TransformerLens ``transformer_lens/patching.py``
(``generic_activation_patch``), which runs one forward per cell; results are equal.
"""
from __future__ import annotations

import contextlib
import math

import torch

from hooks import Cache, Edit
from hooks.errors import HookError, SpecError

from .common import Pairs, flat_cache, parse_by, prepare_pairs, site_family, take_rows
from .batching import chunks, fast_batches
from .prefix import find
from .replay import blocks_of, record

COLUMNS = ["site", "layer", "head", "position", "effect"]


def activation_patching(model, clean, corrupt, *, sites="attn_out", by="layer,position", metric="logit_diff",
                        answers=None, distractors=None, direction: str = "denoising", normalize: bool = False,
                        memory_budget: float = 1 << 30, max_variants=None, fast: bool = True, prefix: bool = True):
    """A tidy ``pandas.DataFrame`` of patching effects; ``df.attrs`` holds the baselines and counts."""
    pairs = prepare_pairs(model, clean, corrupt, sites=sites, metric=metric, answers=answers,
                          distractors=distractors, direction=direction)
    return sweep(pairs, by, normalize=normalize, memory_budget=memory_budget, max_variants=max_variants, fast=fast,
                 prefix=prefix)


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


class _Layout:
    """Where the real tokens of each base row sit in the flat ``(N0, ...)`` layout."""

    def __init__(self, pairs: Pairs):
        am = pairs.base["attention_mask"].bool().cpu()
        self.B, self.n_pos = am.shape[0], int(pairs.rank.max()) + 1
        self.rank = pairs.rank[am]  # real-token index of each flat row
        self.row = torch.arange(self.B)[:, None].expand_as(am)[am]  # base row of each flat row
        self.lengths = am.sum(1)
        self.starts = self.lengths.cumsum(0) - self.lengths
        self.width = am.shape[1]
        self.fcol = am.nonzero()[:, 1]  # padded column of each flat row
        self.col = torch.full((self.B, self.n_pos), self.width, dtype=torch.long)  # padded column of each rank
        self.col[self.row, self.rank] = am.nonzero()[:, 1]

    def tokens(self, rows: torch.Tensor, cut: int = 0) -> tuple:
        """Flat indices of the real tokens of ``rows`` (stacked in that order) at padded columns
        ``>= cut``, and how many each row has."""
        n = self.lengths[rows]
        within = torch.arange(int(n.sum())) - torch.repeat_interleave(n.cumsum(0) - n, n)
        tok = torch.repeat_interleave(self.starts[rows], n) + within
        if not cut:
            return tok, n
        keep = self.fcol[tok] >= cut
        return tok[keep], torch.bincount(torch.repeat_interleave(torch.arange(len(rows)), n)[keep], minlength=len(rows))

    def has_pos(self) -> torch.Tensor:
        """``(n_pos, B)``: which rows have a real token at each position."""
        out = torch.zeros(self.n_pos, self.B, dtype=torch.bool)
        out[self.rank, self.row] = True
        return out


def _heads(shape) -> int:
    return shape[0] if len(shape) == 2 else 1


def first_changed(cells: list, src: dict, base: dict, lay: _Layout) -> torch.Tensor:
    """``(n_cells, B)`` long: the first padded column where patching a cell changes a row (its
    source values differ from the base run's there); the padded width where it changes nothing.
    Every column before it is, in a causal model, the base run's at every layer."""
    per_site = {}
    for s in dict.fromkeys(c[0] for c in cells):
        H = _heads(src[s].shape[1:])
        d = (src[s] != base[s]).reshape(src[s].shape[0], H, -1).any(-1).cpu()
        t = torch.zeros(lay.B, lay.n_pos, H, dtype=torch.bool)
        t[lay.row, lay.rank] = d
        per_site[s] = t
    none = lay.width
    out = torch.full((len(cells), lay.B), none, dtype=torch.long)
    for i, (s, _, h, p) in enumerate(cells):
        t = per_site[s]
        t = t.any(-1) if h is None else t[..., h]  # (B, n_pos)
        if p is not None:
            t = torch.zeros_like(t).index_fill_(1, torch.tensor([p]), True) & t
        out[i] = torch.where(t, lay.col, none).min(1).values
    return out


def sweep(pairs: Pairs, by="layer,position", *, normalize: bool = False, memory_budget: float = 1 << 30,
          max_variants=None, fast: bool = True, prefix: bool = True):
    """Run every cell of the sweep, ``memory_budget`` bytes of activations per forward.

    ``fast=True`` (default) computes only what a patch can change, exactly: rows whose source
    values equal the base run's at the patched cell are not run (their metric is the base
    run's); in a causal model with a usable KV cache (``prefix=True``, checked on the base run:
    :mod:`interp.patching.prefix`) only the columns from the first one a patch changes are run,
    on the base run's cached prefix; elsewhere each site's variants skip the modules that
    return before the site's hook (blocks below its layer; see :mod:`interp.patching.replay`),
    where the model allows it. ``fast=False`` runs every variant's full batch through the
    whole model (the reference)."""
    keys = parse_by(by)
    model, B = pairs.model, pairs.n
    lay = _Layout(pairs)
    last_only = _last_token_logits_ok(pairs)
    src = flat_cache(model, pairs.source, pairs.sites)
    rep, why, base = base_replay(pairs, last_only, check=False) if fast else (None, "fast=False", None)
    shapes = {s: tuple(v.shape[1:]) for s, v in src.items()}
    cells = variants(pairs, keys, shapes)
    first = first_changed(cells, src, base, lay) if fast else torch.zeros(len(cells), B, dtype=torch.long)
    active = first < lay.width
    pre, pre_why = None, "fast=False" if not fast else "prefix=False"
    if fast and prefix:
        pre, pre_why = find_prefix(pairs, [int(c) for c in first[active & (first > 0)].unique()], last_only)
    both = _replay_with_prefix(pairs, rep, pre, first[active & (first > 0)], last_only) if pre is not None else set()
    cut = first if pre is not None else torch.zeros_like(first)
    whole = [s for s in pairs.sites if bool((active & (cut == 0))[[i for i, c in enumerate(cells) if c[0] == s]].any())]
    check_replay(pairs, rep, whole, last_only)  # replay at full width only where some forward runs whole rows
    max_rows = max(1, int(memory_budget // max(row_bytes(model, pairs.base), 1)))
    kmax = len(cells) if max_variants is None else max(1, int(max_variants))
    if fast:
        batches = fast_batches(cells, active, cut, max_rows, kmax, lay.width)
    else:
        batches = ((torch.cat([torch.full((B,), i) for i in chunk]), torch.arange(B).repeat(len(chunk)), 0)
                   for chunk in chunks(list(range(len(cells))), lambda i: B, B * max(1, max_rows // B), kmax))
    vals = pairs.rows["base"][None].repeat(len(cells), 1)  # (cells, B): unchanged rows keep the base metric
    tables = {s: _cell_table(cells, s) for s in pairs.sites}
    forwards = tokens = 0
    for cell_of, rows, c in batches:
        tok, n = lay.tokens(rows, c)
        edits = [Edit(s, "all", fn=_writer(s, tables[s], cell_of, n, tok, lay, src[s])) for s in
                 dict.fromkeys(cells[int(i)][0] for i in cell_of.unique())]
        site = cells[int(cell_of[0])][0]
        if c > 0:
            inputs, kw = pre.suffix(rows, c)
            ctx = rep.replaying(site, rows, c) if site in both else contextlib.nullcontext()
        else:
            inputs, kw = take_rows(pairs.base, rows), {}
            ctx = rep.replaying(site, rows) if rep is not None and site in whole and rep.plan(site) else \
                contextlib.nullcontext()
        vals[cell_of, rows] = _metric_rows(pairs, rows, inputs, kw, edits, ctx, last_only, c)
        forwards += 1
        tokens += len(rows) * (lay.width - c)
    has_pos = lay.has_pos()
    effects = [effect_of(vals[i], pairs.rows, torch.ones(B, dtype=torch.bool) if p is None else has_pos[p], normalize)
               for i, (s, L, h, p) in enumerate(cells)]
    attrs = {"forwards": forwards, "last_token_logits_only": last_only, "fast": fast,
             "rows_run": int(active.sum()), "rows_total": len(cells) * B, "padded_tokens_run": tokens}
    if fast:
        attrs["rows_equal_to_base"] = attrs["rows_total"] - attrs["rows_run"]
        attrs["replayed_modules"] = {s: len(rep.plan(s)) for s in pairs.sites} if rep is not None else {}  # planned
        attrs["replay_off"] = why or (dict(rep.reasons) if rep is not None else {})
        attrs["prefix"] = pre.describe() if pre is not None else ""
        attrs["prefix_with_replay"] = sorted(both)
        attrs["prefix_off"] = pre_why
    return effects_frame(cells, effects, pairs, keys, normalize, **attrs)


def _replay_with_prefix(pairs: Pairs, rep, pre, cuts: torch.Tensor, last_only: bool) -> set:
    """The sites whose blocks below may be replayed (at the suffix's columns) on top of prefix
    reuse: checked per site at the smallest and largest cut against the base run."""
    if rep is None or not len(cuts):
        return set()
    want = _base_logits(pairs, last_only)
    am = pairs.base["attention_mask"].bool().cpu()
    ok, blocks = set(), set(blocks_of(pairs.model))
    for s in [s for s in pairs.sites if any(m in blocks for m in rep.plan(s))]:
        good = True
        for c in [int(cuts.min())]:
            rows = am[:, c:].any(1).nonzero()[:, 0].flip(0)
            inputs, kw = pre.suffix(rows, c)
            try:
                got = _logits(pairs.model, inputs, [], last_only, rep.replaying(s, rows, c), kw)
            except Exception:  # noqa: BLE001 - any failure: no replay with the prefix at this site
                good = False
                break
            good = good and _matches(got, want, rows, c, last_only)
        if good:
            ok.add(s)
    return ok


def find_prefix(pairs: Pairs, cuts: list, last_only: bool):
    """A checked :class:`~interp.patching.prefix.Prefix` for the base run, or ``(None, why)``."""
    want = _base_logits(pairs, last_only)

    def check(inputs, kw, rows, c):
        return _matches(_logits(pairs.model, inputs, [], last_only, None, kw), want, rows, c, last_only)

    return find(pairs.model, pairs.base, check, cuts)


def _matches(got, want, rows, cut: int, last_only: bool) -> bool:
    """Do suffix logits (from padded column ``cut`` on) of base rows ``rows`` equal the base run's?"""
    ref = want.index_select(0, rows.to(want.device))
    ref = ref if last_only else ref[:, cut:]
    return got.shape == ref.shape and bool(torch.allclose(got, ref, rtol=1e-4, atol=1e-5, equal_nan=True))


def base_replay(pairs: Pairs, last_only: bool, sites=None, use=None, check: bool = True):
    """Record the base run for replay (and cache its activations at ``sites``, default the
    pairs' sites), then (``check``) check the replay of each site in ``use`` (default: all)
    against the base run, dropping any that differ: ``(Replay or None, why not, base activations)``."""
    model = pairs.model
    sites = list(pairs.sites if sites is None else sites)
    rep, why, base = record(model, pairs.base, sites, lambda: flat_cache(model, pairs.base, sites))
    if rep is not None:
        for s in [s for s in rep.plans if use is not None and s not in use]:
            rep.plans.pop(s)
    if check:
        check_replay(pairs, rep, list(rep.plans) if rep is not None else [], last_only)
    return rep, why, base


def check_replay(pairs: Pairs, rep, sites, last_only: bool) -> None:
    """Check the full-width replay of ``sites`` against the base run (dropping any that differ)."""
    if rep is None or not any(rep.plan(s) for s in sites):
        return
    want = _base_logits(pairs, last_only)
    for s in [s for s in sites if rep.plan(s)]:
        rep.check(s, lambda rows, ctx: _logits(pairs.model, take_rows(pairs.base, rows), [], last_only, ctx),
                  lambda rows: want.index_select(0, rows.to(want.device)))


def _logits(model, inputs, edits, last_only: bool, ctx=None, kw=None):
    kw = kw or {}
    with torch.no_grad(), (ctx or contextlib.nullcontext()):
        return _last_logits(model, inputs, edits, **kw) if last_only else model.run(inputs, edits, **kw).logits


def _metric_rows(pairs: Pairs, rows: torch.Tensor, inputs: dict, kw: dict, edits: list, ctx, last_only: bool,
                 cut: int = 0) -> torch.Tensor:
    """The metric of the base rows ``rows`` (stacked, one per patched variant) under ``edits``;
    ``inputs`` start at padded column ``cut`` (the columns before it are the base run's)."""
    mb = take_rows(pairs.batch, rows)
    logits = _logits(pairs.model, inputs, edits, last_only, ctx, kw)
    if cut and not last_only:
        before = _base_logits(pairs, False).index_select(0, rows.to(logits.device))[:, :cut]
        logits = torch.cat([before.to(logits.dtype), logits], 1)
    return pairs.metric(logits, _at_last(mb) if last_only else mb).cpu()


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


def _last_logits(model, inputs, edits, **kw) -> torch.Tensor:
    """``(N, 1, vocab)`` logits at the last real token only: the forward stops after the final
    norm and only those rows go through the unembedding (less compute, no ``N×P×vocab`` tensor)."""
    res = model.run(inputs, [*edits, Cache("final", "last", device=None)], stop_after="final", **kw)
    head = model.resolve_sites("logits")[0].module
    return head(res.cache["final"])[:, None]


def _base_logits(pairs: Pairs, last_only: bool) -> torch.Tensor:
    """The base run's logits (``(B, 1, vocab)`` at the last real token when ``last_only``)."""
    full = pairs.base_logits
    if full is None:
        with torch.no_grad():
            full = pairs.model.run(pairs.base).logits
    if not last_only:
        return full
    return full[torch.arange(full.shape[0], device=full.device), pairs.batch["last"].to(full.device)][:, None]


def _at_last(batch: dict) -> dict:
    return {**batch, "last": torch.zeros_like(batch["last"])}


def _last_token_logits_ok(pairs: Pairs) -> bool:
    """Metrics that read only the last token can skip the other positions' unembedding, if the
    model's logits are exactly the ``logits`` module applied to ``final`` (not, e.g., soft-capped);
    checked on the base run."""
    model = pairs.model
    if pairs.metric.reads != "answer" or not {"final", "logits"} <= set(model.site_names):
        return False
    want = _base_logits(pairs, True)[:, 0]
    with torch.no_grad():
        try:
            got = _last_logits(model, pairs.base, [])[:, 0]
        except Exception:  # noqa: BLE001 - any adapter that cannot do this falls back to full logits
            return False
    return got.shape == want.shape and bool(torch.allclose(got, want, rtol=1e-5, atol=1e-6))


def _cell_table(cells: list, site: str) -> torch.Tensor:
    """``(n_cells, 3)``: is the cell at ``site``, its position, its head (-1 where not swept)."""
    return torch.tensor([[c[0] == site, -1 if c[3] is None else c[3], -1 if c[2] is None else c[2]] for c in cells])


def _writer(site, table, cell_of, n, tok, lay: _Layout, src):
    """An Edit function for ``site``: each stacked row (a base row copied for one cell) takes the
    source values at its cell (its head and/or position), if the cell is at ``site``; ``n``:
    the real tokens each stacked row has in the forward, ``tok``: their flat indices."""
    H = _heads(src.shape[1:])
    per_row = table[cell_of]  # (M, 3): at this site, position, head (``table``: :func:`_cell_table`)
    on, pos, head = (torch.repeat_interleave(per_row[:, j], n) for j in range(3))
    at = on.bool() & ((pos < 0) | (lay.rank[tok] == pos))
    mask = at[:, None] & ((head[:, None] < 0) | (torch.arange(H)[None] == head[:, None]))
    mask = mask.view(len(tok), H, *([1] * (src.dim() - 2))).to(src.device)
    values = src.index_select(0, tok.to(src.device))

    def write(acts):
        if acts.shape[0] != values.shape[0]:
            raise HookError(f"Patching {site}: expected {values.shape[0]} real tokens in the stacked batch, got "
                            f"{acts.shape[0]}.")
        return torch.where(mask, values.to(acts.dtype), acts)

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
