"""Language-modelling objectives over a prepared batch: what "loss" means for each model.

    inputs, targets, where = lm_targets(model, model.prepare(batch), seed=0)
    logits = model.run(inputs).logits
    nll = token_nll(logits, targets)[where]

Causal LMs: next-token targets at every real position whose successor is real. Masked LMs
(ESM): a fixed random 15% of residue positions (seeded, at least one per row) replaced by
the mask token, targets = the original residues there (Devlin et al. 2019; Lin et al. 2023).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

MASKED_LM_ADAPTERS = ("esm", "fair_esm")


def is_masked_lm(model) -> bool:
    return model.adapter.name in MASKED_LM_ADAPTERS


def _ids_key(inputs: dict) -> str:
    return "input_ids" if "input_ids" in inputs else "tokens"


def mask_token_id(model) -> int:
    tok = model.tokenizer
    mid = getattr(tok, "mask_token_id", None) if tok is not None else None
    if mid is None:
        mid = getattr(getattr(model.model, "config", None), "mask_token_id", None)
    if mid is None:
        mid = model.adapter.extra.get("mask_token_id", 32)
    return int(mid)


def lm_targets(model, inputs: dict, seed: int = 0, rate: float = 0.15):
    """Return ``(inputs_to_run, targets, where)``; score ``logits`` against ``targets`` at ``where``."""
    key = _ids_key(inputs)
    ids = inputs[key]
    am = inputs.get("attention_mask")
    am = torch.ones_like(ids, dtype=torch.bool) if am is None else am.bool()
    if not is_masked_lm(model):
        targets = torch.roll(ids, -1, 1)
        where = am & torch.roll(am, -1, 1)
        where[:, -1] = False
        return inputs, targets, where
    residues = model.spans(ids, am).get("residues", am)
    g = torch.Generator().manual_seed(seed)
    pick = (torch.rand(ids.shape, generator=g) < rate).to(ids.device) & residues
    for b in range(ids.shape[0]):  # guarantee at least one masked residue per row
        if not pick[b].any() and residues[b].any():
            pick[b, residues[b].nonzero()[0]] = True
    masked = dict(inputs)
    masked[key] = ids.masked_fill(pick, mask_token_id(model))
    return masked, ids, pick


def token_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-position negative log-likelihood of ``targets`` (float32)."""
    lp = F.log_softmax(logits.float(), -1)
    return -lp.gather(-1, targets[..., None]).squeeze(-1)
