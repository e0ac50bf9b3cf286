"""Markdown summary of a toy-model training log (``bench/RESULTS_protein_model.md``).

    write_results_md("bench/RESULTS_protein_model.md", json.load(open(".../training_log.json")), model_dir)

The summary goes between ``<!-- run:cpu -->`` / ``<!-- /run:cpu -->`` markers (``cuda`` for GPU
runs): re-running replaces that block only, so hand-written notes and the other device's
block are kept.
"""
from __future__ import annotations

from pathlib import Path


def render(result: dict, model_dir=None) -> str:
    c, ev = result["config"], result["final_eval"]
    lines = [
        f"## Run on {result['device']} ({result.get('device_name', '')})", "",
        f"Model: ESM-2 architecture (EsmForMaskedLM, rotary), {c['layers']} layers, d={c['d_model']}, "
        f"{c['heads']} heads, FFN {c['ffn']}; {result['n_params'] / 1e6:.2f}M parameters."
        + (f" Weights: `{model_dir}`." if model_dir else ""),
        f"Training: {result['steps']} steps × {c['batch_size']} proteins (≈{result['tokens_per_step']:.0f} residues/step), "
        f"mask rate {c['mask_rate']}, AdamW lr {c['lr']} (warm-up {c['warmup']}, cosine to 10%), seed {c['seed']}, "
        f"{c['n_train']} training proteins; {result['train_seconds'] / 60:.1f} min on {result['device']} "
        f"({result['threads']} CPU threads), torch {result['torch']}."
        + (" **Stopped early by the time budget.**" if result.get("stopped_early") else ""), "",
        f"Reproduce: `interp toy train-protein-model --device {result['device'].split(':')[0]} --steps {result['steps']} "
        f"--batch-size {c['batch_size']} --n-train {c['n_train']} --n-eval {c['n_eval']} --lr {c['lr']} --seed {c['seed']} --layers {c['layers']} "
        f"--d-model {c['d_model']} --heads {c['heads']} --ffn {c['ffn']} --mask-rate {c['mask_rate']} --warmup {c['warmup']}"
        + (f" --threads {result['threads']}" if result["device"] == "cpu" else "") + "`", "",
        f"### Held-out masked-LM evaluation ({c['n_eval']} proteins from a disjoint seed, 15% of residues → <mask>)", "",
        f"Loss {ev['loss']:.3f} nats (background composition alone: {ev['background_entropy']:.3f}); "
        f"accuracy {ev['accuracy']:.3f} over {ev['n_masked']} masked residues.", "",
        "| region | masked residues | loss (nats) | accuracy |", "|---|---:|---:|---:|",
    ]
    for k, v in ev["regions"].items():
        lines.append(f"| {k} | {v['n']} | {v['loss']:.3f} | {v['accuracy']:.3f} |")
    if result.get("probe"):
        pr = result["probe"]
        lines += ["", f"### Linear probe F1 per feature and layer (held-out: {pr['n_test_proteins']} proteins, "
                      f"{pr['n_test_residues']} residues)", "",
                  "| feature | " + " | ".join(pr["sites"]) + " |", "|---|" + "---:|" * len(pr["sites"])]
        for feat, per in pr["f1"].items():
            lines.append(f"| {feat} | " + " | ".join(f"{per[s]:.3f}" for s in pr["sites"]) + " |")
    lines += ["", "### Loss curve (training batches, running mean)", "", "| step | loss | lr | seconds |",
              "|---:|---:|---:|---:|"]
    curve = result["loss_curve"]
    stride = max(1, len(curve) // 20)
    for p in curve[::stride] + ([curve[-1]] if curve and (len(curve) - 1) % stride else []):
        lines.append(f"| {p['step']} | {p['loss']:.4f} | {p['lr']:.2e} | {p['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def write_results_md(path, result: dict, model_dir=None) -> Path:
    import re

    from hooks.io import write_text_atomic

    path = Path(path)
    kind = result["device"].split(":")[0]
    begin, end = f"<!-- run:{kind} -->", f"<!-- /run:{kind} -->"
    block = f"{begin}\n{render(result, model_dir)}{end}\n"
    old = path.read_text() if path.exists() else "# Toy protein model: training and convergence\n\n"
    pat = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.S)
    text = pat.sub(lambda _: block, old) if pat.search(old) else old.rstrip("\n") + "\n\n" + block
    return write_text_atomic(path, text)
