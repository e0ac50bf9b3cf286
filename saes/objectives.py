"""What "loss" means for a model: next-token CE (causal LMs) or masked-token CE (ESM).

    run_inputs, targets, where = lm_targets(model, model.prepare(batch), seed=0)
    nll = token_nll(model.run(run_inputs).logits, targets)[where]

Masked LMs: a fixed random 15% of residue positions (seeded, at least one per row) are
replaced by the mask token and scored there (Devlin et al. 2019; Lin et al. 2023, ESM-2).
Uses :mod:`hooks.objectives` when the registry provides it; this module's fallback exists
only until it does (the same rule, so ``interp run`` and ``interp sae eval`` agree).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

try:  # pragma: no cover - depends on the registry version
    from hooks.objectives import is_masked_lm, lm_targets, token_nll  # noqa: F401
except ImportError:
    MASKED_LM_ADAPTERS = ("esm", "fair_esm")

    def is_masked_lm(model) -> bool:
        return model.adapter.name in MASKED_LM_ADAPTERS

    def _mask_id(model) -> int:
        tok = model.tokenizer
        mid = getattr(tok, "mask_token_id", None) if tok is not None else None
        if mid is None:
            mid = getattr(getattr(model.model, "config", None), "mask_token_id", None)
        if mid is None:
            mid = model.adapter.extra.get("mask_token_id", 32)
        return int(mid)

    def lm_targets(model, inputs: dict, seed: int = 0, rate: float = 0.15):
        """``(inputs_to_run, targets, where)``: score logits against targets at ``where``."""
        key = "input_ids" if "input_ids" in inputs else "tokens"
        ids = inputs[key]
        am = inputs.get("attention_mask")
        am = torch.ones_like(ids, dtype=torch.bool) if am is None else am.bool()
        if not is_masked_lm(model):
            where = am & torch.roll(am, -1, 1)
            where[:, -1] = False
            return inputs, torch.roll(ids, -1, 1), where
        residues = model.spans(ids, am).get("residues", am)
        g = torch.Generator().manual_seed(seed)
        pick = (torch.rand(ids.shape, generator=g) < rate).to(ids.device) & residues
        for b in range(ids.shape[0]):
            if not pick[b].any() and residues[b].any():
                pick[b, residues[b].nonzero()[0]] = True
        masked = dict(inputs)
        masked[key] = ids.masked_fill(pick, _mask_id(model))
        return masked, ids, pick

    def token_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return -F.log_softmax(logits.float(), -1).gather(-1, targets[..., None]).squeeze(-1)
