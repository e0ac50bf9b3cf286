"""What every patching method shares: clean/corrupt pairs as one padded batch, site lists,
real-token layouts and metric baselines.

Activations are handled *flat*: the real tokens of a ``(B, P, ...)`` activation, row-major,
``(N, ...)``: exactly what an :class:`hooks.Edit` function receives with ``positions="all"``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from hooks.errors import SpecError

from ..metrics import get_metric, masked_like, metric_batch

SWEEP_KEYS = ("layer", "head", "position")


@dataclass
class Pairs:
    """Clean and corrupt inputs padded together, the metric batch and the sites to patch."""

    model: object
    base: dict  # inputs of the run that is patched
    source: dict  # inputs whose activations are written in
    batch: dict  # metric batch (of the base inputs; clean logits for kl)
    metric: object
    sites: list  # canonical site names, forward order
    layers: dict  # site -> layer
    rank: torch.Tensor  # (B, P) real-token index, -1 on padding
    direction: str
    values: dict = field(default_factory=dict)  # metric means: clean, corrupt, base
    rows: dict = field(default_factory=dict)  # per-example metric values (CPU (B,)): clean, corrupt, base
    base_logits: object = None  # logits of the unpatched base run

    @property
    def n(self) -> int:
        return self.base["attention_mask"].shape[0]


def parse_by(by) -> tuple:
    keys = tuple(k.strip() for k in (by.split(",") if isinstance(by, str) else by) if k.strip())
    if not keys or keys[0] != "layer" or any(k not in SWEEP_KEYS for k in keys) or len(set(keys)) != len(keys):
        raise SpecError(f"by must be 'layer' followed by head and/or position (e.g. 'layer,head'), got {by!r}.")
    return keys


def site_list(model, sites) -> tuple:
    """``"attn_out"`` -> every ``attn_out.L``; wildcards, lists and exact names work too."""
    names = [sites] if isinstance(sites, str) else list(sites)
    names = [f"{s}.*" if "." not in s and not any(c in s for c in "*?[") else s for s in names]
    bindings = model.resolve_sites(names)
    layers = {}
    for b in bindings:
        if b.layer is None:
            raise SpecError(f"Sweeps patch per-layer sites (resid_pre, attn_out, mlp_out, head_out, ...); {b.name} has no layer.")
        layers[b.name] = b.layer
    return [b.name for b in bindings], layers


def prepare_pairs(model, clean, corrupt, *, sites, metric="logit_diff", answers=None, distractors=None,
                  direction: str = "denoising") -> Pairs:
    """Tokenize clean and corrupt together and compute the metric baselines.

    ``denoising`` (default) patches clean activations into the corrupt run; ``noising``
    patches corrupt activations into the clean run (Heimersheim & Nanda 2024, "How to use
    and interpret activation patching").
    """
    if direction not in ("denoising", "noising"):
        raise SpecError(f"direction must be 'denoising' or 'noising', got {direction!r}.")
    if len(clean) != len(corrupt) or not clean:
        raise SpecError(f"Need as many corrupt as clean inputs (got {len(clean)} and {len(corrupt)}).")
    both = model.prepare(list(clean) + list(corrupt))
    B = len(clean)
    c_in = {k: v[:B] if isinstance(v, torch.Tensor) else v for k, v in both.items()}
    x_in = {k: v[B:] if isinstance(v, torch.Tensor) else v for k, v in both.items()}
    am_c, am_x = c_in["attention_mask"].bool(), x_in["attention_mask"].bool()
    if not torch.equal(am_c, am_x):
        bad = int((am_c != am_x).any(1).nonzero()[0])
        raise SpecError(f"Row {bad}: clean and corrupt have {int(am_c[bad].sum())} and {int(am_x[bad].sum())} tokens; "
                        "patching needs each pair to tokenize to the same length (pad the prompts or reword them).")
    names, layers = site_list(model, sites)
    m = get_metric(metric)
    mb = metric_batch(model, x_in if direction == "denoising" else c_in, answers=answers, distractors=distractors)
    if m.reads == "targets":  # masked LMs: the same masked positions in clean, corrupt and every patched run
        c_in, x_in = masked_like(model, mb, c_in), masked_like(model, mb, x_in)
    with torch.no_grad():
        clean_logits = model.run(c_in).logits
        corrupt_logits = model.run(x_in).logits
    base, source = (x_in, c_in) if direction == "denoising" else (c_in, x_in)
    mb["clean_logits"] = clean_logits
    rank = torch.where(am_c, am_c.long().cumsum(1) - 1, torch.full_like(am_c, -1, dtype=torch.long)).cpu()
    pairs = Pairs(model, base, source, mb, m, names, layers, rank, direction)
    pairs.rows = {"clean": m(clean_logits, mb).cpu(), "corrupt": m(corrupt_logits, mb).cpu()}
    pairs.rows["base"] = pairs.rows["corrupt" if direction == "denoising" else "clean"]
    pairs.base_logits = corrupt_logits if direction == "denoising" else clean_logits
    pairs.values = {k: float(v.nanmean()) for k, v in pairs.rows.items()}
    return pairs


def flat_cache(model, inputs, sites, *, grad: bool = False) -> dict:
    """``{site: (N, ...)}`` activations at the real tokens (canonical layout; attention sites
    as ``(N, H, K)``)."""
    from hooks import Cache
    from hooks.ops import to_canon

    ctx = torch.enable_grad() if grad else torch.no_grad()
    with ctx:
        res = model.run(inputs, [Cache(sites, "all", layout="padded", device=None)])
    am = inputs["attention_mask"].bool()
    attn = {b.name for b in model.resolve_sites(sites) if b.layout == "attn"}
    out = {}
    for s in sites:
        t = res.cache[s]
        if s in attn:
            t = to_canon(t, "attn")
        out[s] = t[am.to(t.device)]
    return out


def take_rows(batch: dict, rows: torch.Tensor) -> dict:
    """``batch`` at rows ``rows`` (repeats allowed): every tensor is gathered on its first
    (batch) dimension, nested dicts too; anything else is kept as is."""
    def take(v):
        if isinstance(v, torch.Tensor) and v.dim() >= 1:
            return v.index_select(0, rows.to(v.device))
        if isinstance(v, dict):
            return {k: take(x) for k, x in v.items()}
        return v
    return {k: take(v) for k, v in batch.items()}


def site_family(name: str) -> str:
    return name.rsplit(".", 1)[0]


def str_tokens(model, ids) -> list:
    """``to_str_tokens``: the tokens of one row as strings (ids when there is no tokenizer)."""
    ids = [int(i) for i in (ids.tolist() if isinstance(ids, torch.Tensor) else ids)]
    tok = getattr(model, "tokenizer", None)
    if tok is None:
        return [str(i) for i in ids]
    return [tok.decode([i]) for i in ids]
