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

from hooks.data import iter_batches
from hooks.objectives import is_masked_lm, lm_targets, token_nll


def _scores(logits, targets, where):
    return token_nll(logits, targets)[where], logits.argmax(-1)[where]


@torch.no_grad()
def compare(model, data, interventions, *, batch_size: int = 8, seed: int = 0, text_key=None, progress=True) -> dict:
    """Run clean and intervened forwards over ``data``; return per-batch rows and a summary."""
    rows, n_tok, clean_sum, int_sum, changed = [], 0, 0.0, 0.0, 0
    mlm = is_masked_lm(model)
    for i, batch in enumerate(iter_batches(data, batch_size, text_key=text_key, progress=progress)):
        inputs, targets, where = lm_targets(model, model.prepare(batch), seed + i)
        clean = model.run(inputs).logits
        inter = model.run(inputs, interventions).logits
        c_nll, c_top = _scores(clean, targets, where)
        i_nll, i_top = _scores(inter, targets, where)
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
