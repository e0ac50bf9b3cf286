"""Clean-vs-intervened evaluation over a dataset (what ``interp run`` prints).

    from interp.evaluate import compare
    table = compare(model, "rows.jsonl", interventions, metrics=["logit_diff", "loss"])
    table["summary"]    # clean_loss, intervened_loss, delta_loss, top1_changed, tokens, objective,
                        # metrics: {name: {clean, intervened, delta, n}}, warnings: [...]
    table["examples"]   # one row per example: <metric>_clean, <metric>_intervened, <metric>_delta

``clean_loss``/``delta_loss`` are token-weighted over the whole dataset (causal LMs:
next-token cross-entropy; masked LMs: a fixed seeded 15% of the real tokens masked,
:func:`interp.metrics.mlm_targets`). ``metrics`` are
per-example scores (:mod:`interp.metrics`) averaged over examples. Rows with ``answer``
and ``distractor`` fields enable ``logit_diff``/``answer_logprob``. A warning names every
intervention that cannot change a metric (it acts only at positions the metric never reads).
"""
from __future__ import annotations

import math

import torch

from hooks.errors import SpecError
from hooks.objectives import token_nll

from .metrics import default_metrics, describe, get_metric, masked_lm, metric_batch, unaffected_by
from .rows import read_rows, split_rows


@torch.no_grad()
def compare(model, data, interventions, *, batch_size: int = 8, seed: int = 0, text_key=None, progress=True,
            metrics=None) -> dict:
    """Run clean and intervened forwards over ``data``; return per-example rows, per-batch rows and a summary."""
    from hooks.model import as_interventions

    ivs = as_interventions(interventions)
    texts, answers, distractors = split_rows(read_rows(data, text_key), text_key)
    names = list(metrics) if metrics else default_metrics(answers is not None, distractors is not None)
    ms = [get_metric(m) for m in names]
    batches, examples, n_tok, clean_sum, int_sum, changed = [], [], 0, 0.0, 0.0, 0
    can_move = {m.name: set() for m in ms}  # interventions seen to be able to move each metric
    from hooks.progress import track

    starts = track(range(0, len(texts), batch_size), "clean vs intervened", total=len(texts), unit="ex",
                   step=lambda s: len(texts[s : s + batch_size]), enabled=bool(progress))
    for i, s in enumerate(starts):
        sl = slice(s, s + batch_size)
        inputs = model.prepare(texts[sl])
        mb = metric_batch(model, inputs, answers=None if answers is None else answers[sl],
                          distractors=None if distractors is None else distractors[sl], seed=seed)
        if mb["mlm_error"]:  # a masked LM without a mask token: no masked-LM loss to report
            raise SpecError(mb["mlm_error"])
        run_inputs, targets, where = mb["run_inputs"], mb["targets"], mb["where"]
        clean = model.run(run_inputs).logits
        inter = model.run(run_inputs, ivs).logits
        mb["clean_logits"] = clean
        c_nll, i_nll = token_nll(clean, targets)[where], token_nll(inter, targets)[where]
        c_top, i_top = clean.argmax(-1)[where], inter.argmax(-1)[where]
        n = int(where.sum())
        batches.append({"batch": i, "tokens": n, "clean_loss": float(c_nll.mean()) if n else math.nan,
                        "intervened_loss": float(i_nll.mean()) if n else math.nan,
                        "top1_changed": float((c_top != i_top).float().mean()) if n else 0.0})
        n_tok += n
        clean_sum += float(c_nll.sum())
        int_sum += float(i_nll.sum())
        changed += int((c_top != i_top).sum())
        rows = [{"example": s + b, "tokens": int(where[b].sum())} for b in range(clean.shape[0])]
        for m in ms:
            c, v = m(clean, mb).cpu(), m(inter, mb).cpu()
            for b, r in enumerate(rows):
                r[f"{m.name}_clean"], r[f"{m.name}_intervened"], r[f"{m.name}_delta"] = float(c[b]), float(v[b]), float(v[b] - c[b])
            blocked = set(unaffected_by(model, ivs, m, mb))
            can_move[m.name] |= {j for j in range(len(ivs)) if j not in blocked}
        examples.extend(rows)
    if n_tok == 0 and any(m.name == "loss" for m in ms):
        raise ValueError("No tokens to score: every example is shorter than two tokens (or has no residues).")
    summary = {
        "objective": "masked_lm_ce" if masked_lm(model) else "next_token_ce",
        "tokens": n_tok,
        "examples": len(examples),
        "clean_loss": clean_sum / n_tok if n_tok else math.nan,
        "intervened_loss": int_sum / n_tok if n_tok else math.nan,
        "delta_loss": (int_sum - clean_sum) / n_tok if n_tok else math.nan,
        "top1_changed": changed / n_tok if n_tok else math.nan,
        "metrics": {m.name: _means(examples, m.name) for m in ms},
        "warnings": _warnings(ivs, can_move),
    }
    return {"summary": summary, "examples": examples, "batches": batches}


def _means(rows, name):
    def mean(key):
        v = [r[key] for r in rows if not math.isnan(r[key])]
        return sum(v) / len(v) if v else math.nan

    n = sum(1 for r in rows if not math.isnan(r[f"{name}_delta"]))
    return {"clean": mean(f"{name}_clean"), "intervened": mean(f"{name}_intervened"), "delta": mean(f"{name}_delta"),
            "n": n, "skipped": len(rows) - n}


def _warnings(ivs, can_move) -> list:
    out = []
    acting = [j for j, iv in enumerate(ivs) if type(iv).__name__ != "Cache"]
    for name, movers in can_move.items():
        idle = [j for j in acting if j not in movers]
        if not idle:
            continue
        what = "; ".join(describe(ivs[j]) for j in idle)
        if len(idle) == len(acting):
            out.append(f"metric {name!r} cannot change: every intervention acts only at positions after all the "
                       f"positions it reads ({what}). E.g. next-token loss never reads the last position "
                       "(it has no next token); use logit_diff/answer_logprob (rows with answer/distractor) or kl.")
        else:
            out.append(f"metric {name!r} cannot be changed by {what}: it acts only after every position the metric reads.")
    return out
