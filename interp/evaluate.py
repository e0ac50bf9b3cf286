"""Clean-vs-intervened evaluation over a dataset (what ``interp run`` prints).

    from interp.evaluate import compare
    table = compare(model, ["some text", ...], interventions, batch_size=8)
    table["summary"]   # {"clean_loss", "intervened_loss", "delta_loss", "top1_changed", "tokens", "objective"}

Causal LMs are scored by mean next-token cross-entropy over real tokens; masked LMs
(ESM) by masked-token cross-entropy on a fixed random 15% of residue positions (seeded,
identical in both runs).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from hooks.data import iter_batches


def _is_masked_lm(model) -> bool:
    return model.adapter.name in ("esm", "fair_esm")


def _mask_batch(model, inputs: dict, seed: int, rate: float = 0.15):
    """Replace a fixed random subset of residue positions by the mask token."""
    key = "input_ids" if "input_ids" in inputs else "tokens"
    ids = inputs[key]
    am = inputs.get("attention_mask", torch.ones_like(ids)).bool()
    spans = model.spans(ids, am)
    residues = spans.get("residues", am)
    g = torch.Generator().manual_seed(seed)
    pick = (torch.rand(ids.shape, generator=g) < rate).to(ids.device) & residues
    # guarantee at least one masked residue per row
    for b in range(ids.shape[0]):
        if not pick[b].any() and residues[b].any():
            pick[b, residues[b].nonzero()[0]] = True
    tok = model.tokenizer
    mask_id = getattr(tok, "mask_token_id", None)
    if mask_id is None:
        mask_id = getattr(getattr(model.model, "config", None), "mask_token_id", None)
    if mask_id is None:
        mask_id = model.adapter.extra.get("mask_token_id", 32)
    masked = dict(inputs)
    masked[key] = ids.masked_fill(pick, int(mask_id))
    return masked, ids, pick


def _scores(model, logits, targets, where):
    lp = F.log_softmax(logits.float(), -1)
    nll = -lp.gather(-1, targets[..., None]).squeeze(-1)
    return nll[where], logits.argmax(-1)[where]


@torch.no_grad()
def compare(model, data, interventions, *, batch_size: int = 8, seed: int = 0, text_key=None, progress=True) -> dict:
    """Run clean and intervened forwards over ``data``; return per-batch rows and a summary."""
    rows, n_tok, clean_sum, int_sum, changed = [], 0, 0.0, 0.0, 0
    mlm = _is_masked_lm(model)
    for i, batch in enumerate(iter_batches(data, batch_size, text_key=text_key, progress=progress)):
        inputs = model.prepare(batch)
        if mlm:
            inputs, targets, where = _mask_batch(model, inputs, seed + i)
        else:
            key = "input_ids" if "input_ids" in inputs else "tokens"
            ids = inputs[key]
            am = inputs.get("attention_mask", torch.ones_like(ids)).bool()
            targets = torch.roll(ids, -1, 1)
            where = am & torch.roll(am, -1, 1)
            where[:, -1] = False
        clean = model.run(inputs).logits
        inter = model.run(inputs, interventions).logits
        c_nll, c_top = _scores(model, clean, targets, where)
        i_nll, i_top = _scores(model, inter, targets, where)
        n = int(where.sum())
        rows.append({"batch": i, "tokens": n, "clean_loss": float(c_nll.mean()), "intervened_loss": float(i_nll.mean()),
                     "top1_changed": float((c_top != i_top).float().mean()) if n else 0.0})
        n_tok += n
        clean_sum += float(c_nll.sum())
        int_sum += float(i_nll.sum())
        changed += int((c_top != i_top).sum())
    if n_tok == 0:
        raise ValueError("No tokens to score: every example is shorter than two tokens (or has no residues).")
    summary = {
        "objective": "masked_lm_ce" if mlm else "next_token_ce",
        "tokens": n_tok,
        "clean_loss": clean_sum / n_tok,
        "intervened_loss": int_sum / n_tok,
        "delta_loss": (int_sum - clean_sum) / n_tok,
        "top1_changed": changed / n_tok,
    }
    return {"summary": summary, "batches": rows}
