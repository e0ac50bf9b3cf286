#!/usr/bin/env python
"""Table 1 of Serra et al. 2025 on real checkpoints, printed beside the paper's numbers.

    PYTHONPATH=. python bench/narrow_gate_real.py                                   # every model found locally
    PYTHONPATH=. python bench/narrow_gate_real.py --models chameleon-7b pixtral-12b --n 2000 --out runs/table1

Runs when a GPU and the weights are present (``hooks.load`` from the local HF cache or a
directory; ``HF_HUB_OFFLINE=1`` honoured); models whose weights are missing are reported and
skipped, and without a GPU the script says so and stops (``--allow-cpu`` to force). Per model:
the attention flow and its gate (:func:`steering.narrow_gate.attention_flow`), then the
knockout table (none / ``[EOI]`` — ``last image`` for models without one — / ``img→text`` /
``random``, mean of 5 draws) on VQAv2 (VQA accuracy) and COCO-Karpathy (CIDEr), with the
authors' prompts and generation lengths (:mod:`steering.narrow_gate.tasks`). Everything goes
through :func:`run_model`, which the tests call on tiny random models with the same code.

Paper numbers (arXiv 2412.06646, Table 1): Chameleon-7B VQAv2 0.51 → 0.25 and COCO CIDEr
0.35 → 0.03 under ``[EOI]``; Pixtral-12B VQAv2 0.79, unchanged under ``[EOI]``, 0.37 under
``img→text``. Native per the paper's latest version: Chameleon, Emu3; not: LLaVA, Pixtral, Janus.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

# alias -> (HF id, native per arXiv 2412.06646v4)
MODELS = {
    "chameleon-7b": ("facebook/chameleon-7b", True),
    "emu3": ("BAAI/Emu3-Chat-hf", True),
    "janus": ("deepseek-community/Janus-Pro-1B", False),
    "llava": ("llava-hf/llava-1.5-7b-hf", False),
    "pixtral-12b": ("mistral-community/pixtral-12b", False),
}
DATASETS = {"VQAv2": ("vqav2", "vqa"), "COCO": ("coco-karpathy", "caption")}
# (alias, dataset, ablation label) -> the paper's value
PAPER = {
    ("chameleon-7b", "VQAv2", "none"): 0.51, ("chameleon-7b", "VQAv2", "[EOI]"): 0.25,
    ("chameleon-7b", "COCO", "none"): 0.35, ("chameleon-7b", "COCO", "[EOI]"): 0.03,
    ("pixtral-12b", "VQAv2", "none"): 0.79, ("pixtral-12b", "VQAv2", "[EOI]"): 0.79,  # "unchanged"
    ("pixtral-12b", "VQAv2", "img→text"): 0.37,
}


def run_model(alias: str, hm, data: dict, *, batch_size: int = 8, flow_n: int = 200, n_draws: int = 5,
              seed: int = 42) -> dict:
    """Flow gate + knockout table of one loaded model. ``data``: ``{column: (examples, task)}``.

    Returns ``{"gate": GateReport dict, "table": DataFrame, "comparison": DataFrame}``; the
    comparison has one row per (dataset, ablation): ours, the paper's value (NaN when the paper
    has none) and the difference.
    """
    import pandas as pd

    from steering.narrow_gate import ablation_table, attention_flow, standard_ablations
    from steering.narrow_gate.tasks import check_ready

    for examples, task in data.values():
        check_ready(task, examples)  # CIDEr's package etc.: before any model work
    first, task0 = next(iter(data.values()))
    flow = attention_flow(hm, first[:flow_n], batch_size=batch_size, task=task0)
    table = ablation_table(hm, data, standard_ablations(hm.n_layers, seed=seed, n_draws=n_draws),
                           batch_size=batch_size)
    rows = []
    for label, row in table.iterrows():
        for col, (_, task) in data.items():
            metric = {"vqa": "vqa_accuracy", "caption": "cider", "classify": "accuracy"}[task]
            name = f"{col} {metric}" if len(data) > 1 or col else metric
            ours = float(row[name])
            paper = PAPER.get((alias, col, label), float("nan"))
            rows.append({"model": alias, "dataset": col, "ablation": label, "ours": ours, "paper": paper,
                         "diff": ours - paper})
    return {"gate": flow.gate().to_dict(), "table": table, "comparison": pd.DataFrame(rows)}


def _default_load_model(model_id: str, dtype: str, device: str):
    import hooks

    return hooks.load(model_id, dtype=dtype, device=device)


def _default_load_data(spec: str, n: int, seed: int, task: str):
    from steering.narrow_gate.data import load_data

    return load_data(spec, n=n, seed=seed, task=task)[0]


def run(models, *, n: int = 2000, seed: int = 42, batch_size: int = 8, dtype: str = "bfloat16", device: str = "cuda",
        datasets=None, out=None, load_model=_default_load_model, load_data=_default_load_data, log=print,
        n_draws: int = 5) -> dict:
    """Every model in ``models`` (aliases of :data:`MODELS` or ``alias=path``); skips what cannot load."""
    import pandas as pd

    datasets = datasets or DATASETS
    data = {}
    for col, (spec, task) in datasets.items():
        try:
            data[col] = (load_data(spec, n, seed, task), task)
        except Exception as e:  # noqa: BLE001 - report and go on without this dataset
            log(f"dataset {col} ({spec}) not available: {e}")
    if not data:
        raise SystemExit("No dataset could be loaded (put VQAv2 / COCO-Karpathy in the HF cache).")
    results, skipped = {}, {}
    for m in models:
        alias, _, path = m.partition("=")
        model_id = path or MODELS.get(alias, (alias, None))[0]
        try:
            hm = load_model(model_id, dtype, device)
        except Exception as e:  # noqa: BLE001 - missing weights: report, skip
            skipped[alias] = str(e).splitlines()[0][:200]
            log(f"{alias}: weights not available ({skipped[alias]}); skipped")
            continue
        log(f"{alias}: {model_id}, {hm.n_layers} layers")
        results[alias] = run_model(alias, hm, data, batch_size=batch_size, seed=seed, n_draws=n_draws)
        g = results[alias]["gate"]
        log(f"{alias}: gate {g['key']} carries {g['share']:.1%} of the text→image flow "
            f"({'narrow' if g['narrow'] else 'not narrow'})")
        log(results[alias]["comparison"].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        del hm
    comp = pd.concat([r["comparison"] for r in results.values()]) if results else pd.DataFrame()
    if out is not None and results:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / f".table1.csv.tmp{os.getpid()}"
        comp.to_csv(tmp, index=False)
        os.replace(tmp, out / "table1.csv")
        tmp = out / f".gates.json.tmp{os.getpid()}"
        tmp.write_text(json.dumps({a: r["gate"] for a, r in results.items()} | {"skipped": skipped}, indent=1))
        os.replace(tmp, out / "gates.json")
    return {"results": results, "skipped": skipped, "comparison": comp}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), help=f"aliases {list(MODELS)} or alias=path")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--allow-cpu", action="store_true", help="run even without a GPU (slow)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    import torch

    if a.device.startswith("cuda") and not torch.cuda.is_available() and not a.allow_cpu:
        print("No GPU here: the real-model Table 1 needs one (7-12B models). Nothing run; --allow-cpu to force.")
        return 0
    run(a.models, n=a.n, seed=a.seed, batch_size=a.batch_size, dtype=a.dtype,
        device=a.device if torch.cuda.is_available() else "cpu", out=a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
