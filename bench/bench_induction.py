#!/usr/bin/env python
"""The induction circuit of the demo-lm model over training seeds 0, 1, 2, for
``bench/RESULTS_induction.md``.

    PYTHONPATH=. OMP_NUM_THREADS=1 python bench/bench_induction.py [--seeds 0,1,2]

Per seed: train with the demo-lm defaults (:func:`interp.toy_lm.train_induction_lm`, CPU time
measured: the machine is shared), then

* attention scores (:func:`interp.head_scores.score_heads`: 64 sequences ``[bos] r r``,
  ``|r| = 10``, transformers' eager attention weights) and their chance levels;
* a head sweep by activation patching and by attribution patching (``head_out``,
  ``by="layer,head"``, logit diff, denoising) on 32 :func:`~interp.toy_lm.induction_pairs`;
* whether the top head per layer agrees between patching, attribution and the attention
  scores, and whether the heads that matter (effect > 10% of the clean-corrupt gap) are the
  heads leading the layer's attention score (:func:`~interp.head_scores.leading_heads`).

An untrained model (seed 0 initialisation) is the control row.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def measure(model, tok, rows) -> dict:
    import hooks
    from interp.head_scores import leading_heads, score_heads
    from interp.patching import activation_patching, agreement, attribution_patching
    from interp.toy_lm import INDUCTION_SYMBOLS

    sc = score_heads(model, range(3, 3 + INDUCTION_SYMBOLS), bos=1)
    hm = hooks.wrap(model, tok)
    kw = dict(sites="head_out", by="layer,head", answers=[r["answer"] for r in rows],
              distractors=[r["distractor"] for r in rows])
    clean, corrupt = [r["clean"] for r in rows], [r["corrupt"] for r in rows]
    act = activation_patching(hm, clean, corrupt, **kw)
    atp = attribution_patching(hm, clean, corrupt, **kw)
    sc["act"], sc["atp"] = act["effect"].to_numpy(), atp["effect"].to_numpy()
    gap = act.attrs["metric_clean"] - act.attrs["metric_corrupt"]
    top = lambda L, col: int(sc[sc.layer == L].sort_values(col).iloc[-1]["head"])  # noqa: E731
    matters = lambda L: {int(h) for h, v in zip(sc[sc.layer == L]["head"], sc[sc.layer == L]["act"]) if v > 0.1 * gap}  # noqa: E731
    l1 = agreement(act[act.layer == 1], atp[atp.layer == 1], k=1)
    return {
        "clean": act.attrs["metric_clean"], "corrupt": act.attrs["metric_corrupt"],
        "chance_prev": sc.attrs["chance_prev_token"], "chance_ind": sc.attrs["chance_induction"],
        "prev0": float(sc[sc.layer == 0].prev_token.max()), "ind1": float(sc[sc.layer == 1].induction.max()),
        "ind_heads1": len(leading_heads(sc, "induction", 1)) if sc[sc.layer == 1].induction.max() > 0 else 0,
        "top0": (top(0, "prev_token"), top(0, "act"), top(0, "atp")),
        "top1": (top(1, "induction"), top(1, "act"), top(1, "atp")),
        "sets": matters(0) == leading_heads(sc, "prev_token", 0) and matters(1) == leading_heads(sc, "induction", 1),
        "act_prev": float(sc[(sc.layer == 0) & (sc["head"] == top(0, "prev_token"))].act.iloc[0]) / gap if gap else float("nan"),
        "atp_prev": float(sc[(sc.layer == 0) & (sc["head"] == top(0, "prev_token"))].atp.iloc[0]) / gap if gap else float("nan"),
        "spearman": agreement(act, atp, k=1)["spearman"], "spearman_l1": l1["spearman"],
    }


def resampled(models, rows):
    """The other corruption: the whole first copy resampled (no induction answer in the corrupt
    run; distractor = the fresh token where the answer was). Top heads by |effect|, signed."""
    import hooks
    from interp.head_scores import leading_heads, score_heads
    from interp.patching import activation_patching, attribution_patching
    from interp.toy_lm import INDUCTION_SYMBOLS

    print("\n| seed (resampled first copy) | logit diff clean / corrupt | L0 top head by abs effect: head, effect / gap "
          "| = top prev-token score | L1 top head by abs effect: head, effect / gap | in the leading induction heads "
          "| attribution top head by abs effect, L0 / L1 |")
    print("|---|---|---|---|---|---|---|")
    kw = dict(sites="head_out", by="layer,head", answers=[r["answer"] for r in rows],
              distractors=[r["distractor"] for r in rows])
    clean, corrupt = [r["clean"] for r in rows], [r["corrupt"] for r in rows]
    for seed, (model, tok) in models.items():
        sc = score_heads(model, range(3, 3 + INDUCTION_SYMBOLS), bos=1)
        hm = hooks.wrap(model, tok)
        act, atp = activation_patching(hm, clean, corrupt, **kw), attribution_patching(hm, clean, corrupt, **kw)
        gap = act.attrs["metric_clean"] - act.attrs["metric_corrupt"]
        top = lambda df, L: df[df.layer == L].assign(a=lambda d: d.effect.abs()).sort_values("a").iloc[-1]  # noqa: E731
        t0, t1 = top(act, 0), top(act, 1)
        prev_top = int(sc[sc.layer == 0].sort_values("prev_token").iloc[-1]["head"])
        print(f"| {seed} | {act.attrs['metric_clean']:.2f} / {act.attrs['metric_corrupt']:.2f} "
              f"| {int(t0['head'])}, {t0.effect / gap:+.2f} | {int(t0['head']) == prev_top} "
              f"| {int(t1['head'])}, {t1.effect / gap:+.2f} | {int(t1['head']) in leading_heads(sc, 'induction', 1)} "
              f"| {int(top(atp, 0)['head'])} / {int(top(atp, 1)['head'])} |")


def main():
    from interp.toy_lm import INDUCTION_SYMBOLS, induction_pairs, make_tokenizer, toy_config, train_induction_lm

    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2")
    seeds = [int(s) for s in ap.parse_args().seeds.split(",")]
    torch.set_num_threads(1)
    rows = induction_pairs(32)
    res, models = {}, {}
    for seed in seeds:
        t0, w0 = time.process_time(), time.time()
        models[seed] = train_induction_lm(seed=seed, log=lambda *a: None)
        res[seed] = {"cpu": time.process_time() - t0, "wall": time.time() - w0, **measure(*models[seed], rows)}
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    tok = make_tokenizer(INDUCTION_SYMBOLS)
    control = {"cpu": 0.0, "wall": 0.0, **measure(LlamaForCausalLM(toy_config(len(tok))).eval(), tok, rows)}

    print("| seed | train CPU s (wall) | logit diff clean / corrupt | best L0 prev-token score | best L1 induction score "
          "| L1 heads leading | L0 top head: score / patching / attribution | L1 top head: score / patching / attribution "
          "| heads that matter = heads leading the score | prev-token head effect / gap: patching, attribution "
          "| Spearman all 8 heads (layer 1) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, r in [*res.items(), ("untrained", control)]:
        print(f"| {name} | {r['cpu']:.1f} ({r['wall']:.0f}) | {r['clean']:.2f} / {r['corrupt']:.2f} | {r['prev0']:.3f} "
              f"| {r['ind1']:.3f} | {r['ind_heads1']} | {'/'.join(map(str, r['top0']))} | {'/'.join(map(str, r['top1']))} "
              f"| {r['sets']} | {r['act_prev']:.2f}, {r['atp_prev']:.2f} | {r['spearman']:.2f} ({r['spearman_l1']:.2f}) |")
    any_r = next(iter(res.values()))
    print(f"\nchance (uniform causal attention): prev-token {any_r['chance_prev']:.3f}, induction {any_r['chance_ind']:.3f}")
    for key, label in [("prev0", "best L0 prev-token score"), ("ind1", "best L1 induction score"), ("cpu", "train CPU s"),
                       ("spearman", "Spearman, all heads"), ("spearman_l1", "Spearman, layer 1")]:
        v = [r[key] for r in res.values()]
        print(f"{label}: median {statistics.median(v):.3f} [{min(v):.3f}–{max(v):.3f}] over seeds {seeds}")
    agree = lambda k, i: sum(r[k][0] == r[k][i] for r in res.values())  # noqa: E731
    print(f"top head = top attention score: L0 patching {agree('top0', 1)}/{len(res)}, L0 attribution {agree('top0', 2)}/{len(res)}, "
          f"L1 patching {agree('top1', 1)}/{len(res)}, L1 attribution {agree('top1', 2)}/{len(res)}")
    print(f"top head patching = attribution: L0 {sum(r['top0'][1] == r['top0'][2] for r in res.values())}/{len(res)}, "
          f"L1 {sum(r['top1'][1] == r['top1'][2] for r in res.values())}/{len(res)}")
    resampled(models, induction_pairs(32, corrupt="resample"))
    print(f"torch {torch.__version__}, {__import__('transformers').__version__} transformers, 1 thread")


if __name__ == "__main__":
    main()
