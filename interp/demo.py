"""``interp demo-lm``: an offline shell-ablation job on a tiny induction LM.

(``interp demo`` itself is the protein job: :func:`steering.protein.pipeline.run_protein_pipeline`.)

1. trains the tiny induction LM of :mod:`interp.toy_lm` (or reuses ``OUT/model``): random
   tokens with a repeated segment, where only an induction circuit (a previous-token head in
   layer 0, induction heads in layer 1) predicts the repeat,
2. writes intervention specs (zero-ablate layer-1 attention, where the induction heads are;
   knock out every query's attention to the BOS key; zero-ablate layer-0's tiny MLP),
3. writes held-out induction prompts ``pairs.jsonl`` (``clean``, ``corrupt``, ``answer``,
   ``distractor``: :func:`interp.toy_lm.induction_pairs`), ready for ``interp run --data`` and
   ``interp sweep --data``,
4. runs clean vs intervened over the clean prompts and writes ``results.json``/``report.md``.
   The answer metrics (``logit_diff``: answer vs the corrupt prompt's answer) are the ones to
   read: the model was trained with the loss on the repeat only, so its next-token loss on
   the random prefix and first copy is high and meaningless.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

SPECS = {
    "ablate_attn_out_1": [{"type": "ablate", "sites": "attn_out.1", "positions": "all", "how": "zero"}],
    "knockout_bos_key": [{"type": "knockout", "layers": "all", "queries": "all", "keys": 0, "mode": "mask"}],
    "ablate_mlp_out_0": [{"type": "ablate", "sites": "mlp_out.0", "positions": "all", "how": "zero"}],
}


def run_demo(out: Path, *, seed: int = 0, console=None) -> dict:
    import hooks

    from .evaluate import compare
    from hooks.io import write_json_atomic, write_text_atomic
    from .toy_lm import build_toy_lm, induction_pairs

    log = console.print if console else print
    t0 = time.time()
    out = Path(out)
    model_dir = out / "model"
    if not (model_dir / "config.json").exists():
        log("training the toy induction model (one-off, saved to %s)" % model_dir)
        build_toy_lm(model_dir, seed=seed, log=log)
    else:
        log(f"reusing the toy induction model in {model_dir}: an earlier run trained it "
            f"(delete {model_dir} to retrain)")
    hm = hooks.load(model_dir)
    data = out / "pairs.jsonl"
    keep = ("clean", "corrupt", "answer", "distractor")
    write_text_atomic(data, "".join(json.dumps({k: r[k] for k in keep}) + "\n"
                                    for r in induction_pairs(64, seed=10_000 + seed)))
    results = {}
    for name, spec in SPECS.items():
        ivs = hooks.load_spec(spec)
        hooks.save_spec(ivs, out / f"{name}.yaml")
        res = compare(hm, data, ivs, batch_size=16, progress=False)
        results[name] = res["summary"]
        if console:
            from .cli_tables import print_summary

            print_summary(res["summary"], name)
        else:
            log(name, res["summary"])
    summary = {"model": str(model_dir), "data": str(data), "examples": res["summary"]["examples"], "results": results,
               "seconds": time.time() - t0}
    write_json_atomic(out / "results.json", summary)
    lines = ["# interp demo: induction toy model", "", "| intervention | logit diff clean | intervened | Δ | "
             "clean loss | intervened loss | Δ | top-1 changed |", "|---|---|---|---|---|---|---|---|"]
    for k, s in results.items():
        ld = s["metrics"]["logit_diff"]
        lines.append(f"| {k} | {ld['clean']:.2f} | {ld['intervened']:.2f} | {ld['delta']:+.2f} | {s['clean_loss']:.3f} | "
                     f"{s['intervened_loss']:.3f} | {s['delta_loss']:+.3f} | {100 * s['top1_changed']:.1f}% |")
    write_text_atomic(out / "report.md", "\n".join(lines) + "\n")
    log(f"wrote {out / 'results.json'} and {out / 'report.md'} in {summary['seconds']:.1f}s; next: interp sweep "
        f"--model {model_dir} --data {data} --sites head_out --by layer,head --out {out / 'sweep'}")
    return summary
