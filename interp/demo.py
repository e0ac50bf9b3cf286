"""``interp demo-lm``: an offline shell-ablation job on a tiny induction LM.

(``interp demo`` itself is the protein job: :func:`steering.protein.pipeline.run_protein_pipeline`.)

1. trains the tiny induction LM of :mod:`interp.toy_lm` (or reuses ``OUT/model``),
2. writes an intervention spec (zero-ablate layer-1 attention; knock out attention from
   the second half to the first half; a control knockout of the BOS key),
3. runs clean vs intervened over held-out sequences and writes ``results.json``/``.csv``.
"""
from __future__ import annotations

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
    from .io import write_json_atomic, write_text_atomic
    from .toy_lm import build_toy_lm, sample_texts

    log = console.print if console else print
    t0 = time.time()
    out = Path(out)
    model_dir = out / "model"
    if not (model_dir / "config.json").exists():
        log("training the toy induction model (one-off, saved to %s)" % model_dir)
        build_toy_lm(model_dir, seed=seed, log=log)
    hm = hooks.load(model_dir)
    data = sample_texts(64, seed=10_000 + seed)
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
    summary = {"model": str(model_dir), "examples": len(data), "results": results, "seconds": time.time() - t0}
    write_json_atomic(out / "results.json", summary)
    lines = ["# interp demo: induction toy model", "", "| intervention | clean loss | intervened loss | Δ | top-1 changed |",
             "|---|---|---|---|---|"]
    for k, s in results.items():
        lines.append(f"| {k} | {s['clean_loss']:.3f} | {s['intervened_loss']:.3f} | {s['delta_loss']:+.3f} | {100 * s['top1_changed']:.1f}% |")
    write_text_atomic(out / "report.md", "\n".join(lines) + "\n")
    log(f"wrote {out / 'results.json'} and {out / 'report.md'} in {summary['seconds']:.1f}s")
    return summary
