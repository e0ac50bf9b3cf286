#!/usr/bin/env python
"""Known answers and attribution-vs-activation agreement on the demo-lm induction model, over
three training seeds (each ~10 s to train), for ``bench/RESULTS_attribution.md``.

    PYTHONPATH=. OMP_NUM_THREADS=1 python bench/patching_agreement.py

Per seed: 16 clean/corrupt pairs (the corrupt prompt changes the symbol the answer copies);
head sweep by activation patching and by attribution patching; the two heads with the most
attention from the last token to the answer's first occurrence (transformers' eager
attention weights, independent of our hooks); agreement (Pearson, Spearman, top-3 overlap)
for layer×head, layer×position (resid_pre) and layer×head×position sweeps, for plain AtP
(signed, and as |AtP| against |effect|) and for AtP + GradDrop (Kramár et al. 2024; unsigned,
against |effect|); and on attention-score sites plain AtP vs AtP with the QK fix (signed).
"""
from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def answer_attention(path, rows) -> dict:
    """Independent of our hooks: transformers' eager attention weights from the last token to the
    position holding the answer's first occurrence, per layer and head."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager").eval()
    tok = AutoTokenizer.from_pretrained(path)
    enc = tok([r["clean"] for r in rows], return_tensors="pt", padding=True)
    with torch.no_grad():
        att = model(**enc, output_attentions=True).attentions
    last = enc["attention_mask"].sum(1) - 1
    src = torch.tensor([r["src"] for r in rows])
    ar = torch.arange(len(rows))
    return {(L, h): float(a[ar, h, last, src].mean()) for L, a in enumerate(att) for h in range(a.shape[1])}


def main():
    import hooks
    from interp.patching import activation_patching, agreement, attribution_patching
    from interp.toy_lm import build_toy_lm
    from interp.toy_lm import induction_pairs

    torch.set_num_threads(1)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in (0, 1, 2):
            path = Path(tmp) / f"seed{seed}"
            build_toy_lm(path, seed=seed, log=lambda *a: None)
            hm = hooks.load(path)
            rows = induction_pairs(16, seed=91 + seed)
            kw = dict(answers=[r["answer"] for r in rows], distractors=[r["distractor"] for r in rows])
            c, x = [r["clean"] for r in rows], [r["corrupt"] for r in rows]
            for by, sites in [("layer,head", "head_out"), ("layer,position", "resid_pre"), ("layer,head,position", "head_out"),
                              ("layer,head", "attn_scores"), ("layer,head,position", "attn_scores")]:
                a = activation_patching(hm, c, x, sites=sites, by=by, **kw)
                if sites == "attn_scores":  # the QK fix only changes score sites
                    for name in ("atp", "qk"):
                        est = attribution_patching(hm, c, x, sites=sites, by=by, method=name, **kw)
                        out.setdefault((f"{sites} {by}", name), []).append(agreement(a, est))
                    continue
                b = attribution_patching(hm, c, x, sites=sites, by=by, **kw)
                gd = attribution_patching(hm, c, x, sites=sites, by=by, method="graddrop", **kw)
                b_abs = b.assign(effect=b["effect"].abs())
                b_abs.attrs = {**b.attrs, "signed": False}
                for name, est in (("atp", b), ("|atp|", b_abs), ("graddrop", gd)):
                    out.setdefault((by, name), []).append(agreement(a, est))
                if by == "layer,head":
                    s = answer_attention(path, rows)
                    top = lambda df: sorted((int(r.layer), int(r.head)) for r in df.sort_values("effect").tail(2).itertuples())  # noqa: E731
                    print(f"seed {seed}: logit diff clean {a.attrs['metric_clean']:.2f} corrupt {a.attrs['metric_corrupt']:.2f}; "
                          f"top-2 heads: patching {top(a)}, attribution {top(b)}, graddrop {top(gd)}, attention to "
                          f"the answer {sorted(sorted(s, key=s.get)[-2:])}")
    print("| sweep | estimate | compared with | cells | Pearson | Spearman | top-3 overlap |\n|---|---|---|---|---|---|---|")
    for (by, name), ags in out.items():
        cells = " | ".join(f"{statistics.median(v):.3f} [{min(v):.3f}–{max(v):.3f}]"
                           for v in ([g[k] for g in ags] for k in ("pearson", "spearman", "top_k_overlap")))
        print(f"| {by} | {name} | {ags[0]['compared']} | {ags[0]['cells']} | {cells} |")


if __name__ == "__main__":
    main()
