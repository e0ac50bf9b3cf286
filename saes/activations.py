"""One batch of a site's activations at chosen positions, through the hook registry.

    acts, mask = collect(model, ["MKTAYIAKQR", "GSHM"], "resid_post.3", "residues")
    acts.shape        # (residues in the batch, d_model), row-major over the batch
    mask.shape        # (B, P): which padded positions the rows came from

``positions="auto"`` is the rule SAEs are trained with unless told otherwise:

* ESM (adapters with a ``"residues"`` span): residues only — no CLS, EOS or padding;
* VLMs (a ``"text"`` span): text positions that are not special tokens (image positions
  are left out; pass ``positions="all"`` or ``"image"`` to include them);
* everything else: real tokens that are not special tokens (BOS, EOS, PAD, ... from the
  tokenizer's ``all_special_ids``, else the model config's ``*_token_id`` fields), i.e. LLM
  tokens without BOS and without padding.

Any :mod:`hooks.positions` selector works too (``"all"``, ``"1:"``, ``"residues"``, ...).
The forward stops right after the site (the rest of the model is skipped).
"""
from __future__ import annotations

import threading
import weakref

import torch

from hooks import Cache, Edit
from hooks.positions import normalize, to_json

from .errors import ActivationError, ConfigError

AUTO = "auto"
_TOKEN_FIELDS = ("bos_token_id", "eos_token_id", "pad_token_id", "cls_token_id", "sep_token_id", "mask_token_id",
                 "image_token_id", "image_token_index")


_LOCKS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(model) -> threading.RLock:
    """One lock per wrapped model: a ``HookedModel`` keeps per-forward state (the batch
    context), so forwards from a prefetching store thread and the main thread must not overlap."""
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock


class _StopForward(Exception):
    """Raised after the site has been read, to skip the rest of the forward."""


def _stop(acts):
    raise _StopForward


def check_site(model, site: str) -> str:
    """The one site ``site`` resolves to (``UnknownSiteError`` lists close names otherwise)."""
    if not isinstance(site, str) or not site:
        raise ConfigError(f"site must be a site name such as 'resid_post.3', got {site!r}.")
    bindings = model.resolve_sites(site)
    if len(bindings) != 1:
        raise ConfigError(f"An SAE reads one site, but {site!r} matches {len(bindings)} ({[b.name for b in bindings][:5]}...).")
    return bindings[0].name


def special_ids(model) -> list:
    tok = model.tokenizer
    ids = set()
    if tok is not None and getattr(tok, "all_special_ids", None):
        ids.update(int(i) for i in tok.all_special_ids if i is not None)
    else:
        cfg = getattr(model.model, "config", None)
        cfgs = [cfg, getattr(cfg, "text_config", None)] if cfg is not None else []
        for c in cfgs:
            for f in _TOKEN_FIELDS:
                v = getattr(c, f, None) if c is not None else None
                if isinstance(v, int):
                    ids.add(v)
    return sorted(ids)


def describe_positions(model, positions) -> dict:
    """JSON description of a position rule, as written to SAE metadata."""
    if isinstance(positions, torch.Tensor):
        raise ConfigError("A mask tensor cannot be an SAE's position rule; use 'auto', 'all', a span or a slice.")
    positions = normalize(positions)
    if positions != AUTO:
        return {"rule": to_json(positions)}
    spans = model.spans(torch.ones(1, 1, dtype=torch.long), torch.ones(1, 1, dtype=torch.bool)) \
        if model.adapter.spans is not None else {}
    base = "residues" if "residues" in spans else "text" if "text" in spans else "all"
    out = {"rule": AUTO, "base": base}
    if base != "residues":
        out["exclude_token_ids"] = special_ids(model)
    return out


def resolve_positions(model, inputs: dict, positions, described: dict):
    """The selector to hand to the registry for this prepared batch ("auto" → a mask)."""
    if described.get("rule") != AUTO:
        return positions
    ids = inputs.get("input_ids", inputs.get("tokens"))
    if ids is None:
        return "all"
    am = inputs.get("attention_mask")
    am = torch.ones_like(ids, dtype=torch.bool) if am is None else am.bool()
    if described["base"] != "all":
        return described["base"]
    mask = am.clone()
    excl = described.get("exclude_token_ids") or []
    if excl:
        mask &= ~torch.isin(ids, torch.tensor(excl, device=ids.device))
    return mask


def collect(model, batch, site: str, positions=AUTO, *, described=None, dtype=torch.float32, stop_early: bool = True):
    """Run one batch; return ``(acts (N, d) on the model's device, mask (B, P))``.

    Multi-dimensional activations (``head_out``: N×H×D) are flattened to (N, H·D).
    """
    described = described or describe_positions(model, positions)
    inputs = model.prepare(batch)
    sel = resolve_positions(model, inputs, positions, described)
    with model_lock(model), torch.no_grad(), model.trace() as tr:
        res = tr.add(Cache(site, sel, device=None, dtype=dtype, layout="flat"))
        if stop_early:
            tr.add(Edit(site, sel, _stop))
        try:
            tr.run(inputs)
        except _StopForward:
            pass
    if not res:  # no position selected in this batch
        am = inputs.get("attention_mask")
        B, P = (am.shape if am is not None else inputs.get("input_ids", inputs.get("tokens")).shape)
        return None, torch.zeros(B, P, dtype=torch.bool)
    name = next(iter(res))
    acts = res[name]
    acts = acts.reshape(acts.shape[0], -1)
    return acts, res.masks[name]


def check_finite(acts: torch.Tensor, site: str, where: str) -> None:
    if not bool(torch.isfinite(acts).all()):
        bad = int((~torch.isfinite(acts)).any(-1).sum())
        raise ActivationError(
            f"{site} produced NaN/inf activations in {bad} of {acts.shape[0]} rows ({where}). An SAE cannot train on "
            "them: load the model in float32 or bfloat16 instead of float16, or check the inputs."
        )
