#!/usr/bin/env python
"""Peak memory and time of the narrow-gate attention flow: materialising ``attn_pattern.L`` vs
summing inside the attention function (``steering.narrow_gate.flow_attention``, chunked over queries).

    PYTHONPATH=. python bench/bench_narrow_gate_flow.py                 # CPU: toy model + tiny 4k-token model
    PYTHONPATH=. python bench/bench_narrow_gate_flow.py --device cuda --tokens 4096 8192 --batch 4

Two workloads, random or shipped weights, no downloads:

* ``toy``: the shipped gated toy model (Chameleon class, 4 layers, width 48, 4 heads), 160
  examples of 38 tokens in one batch;
* ``tiny@N``: a tiny Chameleon-class model (4 layers, width 64, 4 heads, random weights) on
  one prompt of N tokens (``<s> <racm3:break>`` + N−7 image codes + ``<eoss> what class ?``).

CPU: every measurement runs in a fresh subprocess; peak memory is the growth of the process's
peak RSS (``ru_maxrss``) over the flow call, after model and inputs are built and one warm-up
call of the *other* kind has not run (so each number is that variant alone). CUDA: in-process,
``torch.cuda.max_memory_allocated`` growth over the call. Variants interleave, ``--repeats``
times; medians are reported, with the ratio materialise / stream. Both variants' flows are
checked equal (max |Δ share| printed).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path


def _build(workload: str, device: str):
    import torch

    from steering.narrow_gate.toy import load_toy_model, make_examples

    if workload == "toy":
        hm = load_toy_model("gated")
        if device != "cpu":
            hm.model.to(device)
        return hm, make_examples(160, seed=0)
    n = int(workload.split("@")[1])
    import hooks
    from transformers import ChameleonForConditionalGeneration

    from steering.narrow_gate.toy import world as W

    torch.manual_seed(0)
    cfg = W.toy_config(hidden_size=64, layers=4, heads=4)
    cfg.max_position_embeddings = n + 16
    model = ChameleonForConditionalGeneration(cfg).eval().to(device)
    hm = hooks.wrap(model, W.make_tokenizer())
    codes = [i % W.N_CODES for i in range(n - 7)]
    return hm, [{"text": W.prompt(codes, "class")}]


def measure(workload: str, backend: str, device: str, batch: int, chunk: int) -> dict:
    import torch

    from steering.narrow_gate.flow import attention_flow

    torch.set_num_threads(1)
    hm, exs = _build(workload, device)
    exs = exs * batch if workload != "toy" else exs
    bs = len(exs)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    res = attention_flow(hm, exs, task="classify", batch_size=bs, backend=backend, chunk=chunk)
    if device == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t
    if device == "cuda":
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024  # KiB -> MiB (Linux)
    return {"peak_mib": peak, "seconds": dt, "shares": res.per_key.tolist(), "tokens": res.meta.get("n_layers")}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tokens", type=int, nargs="+", default=[4096])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--chunk", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=None)
    ap.add_argument("--_one", nargs=4, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a._one:
        w, b, dev, bt = a._one
        print(json.dumps(measure(w, b, dev, int(bt), a.chunk)))
        return
    import torch
    import transformers

    workloads = ["toy"] + [f"tiny@{n}" for n in a.tokens]
    rows = []
    for w in workloads:
        runs = {"materialize": [], "stream": []}
        shares = {}
        for r in range(a.repeats):
            order = ["materialize", "stream"] if r % 2 == 0 else ["stream", "materialize"]
            for b in order:
                if a.device == "cpu":
                    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
                    out = subprocess.run([sys.executable, __file__, "--chunk", str(a.chunk), "--_one", w, b, a.device,
                                          str(a.batch)], capture_output=True, text=True, env=env, check=True)
                    m = json.loads(out.stdout.strip().splitlines()[-1])
                else:
                    m = measure(w, b, a.device, a.batch, a.chunk)
                runs[b].append(m)
                shares[b] = m["shares"]
        import numpy as np

        diff = float(np.abs(np.array(shares["materialize"]) - np.array(shares["stream"])).max())
        med = {b: (statistics.median(x["peak_mib"] for x in v), statistics.median(x["seconds"] for x in v))
               for b, v in runs.items()}
        rows.append((w, med, diff))
        print(w, med, f"max|Δshare|={diff:.2e}", flush=True)
    lines = [
        "| workload | batch | materialise peak MiB | stream peak MiB | ratio | materialise s | stream s | max abs Δ share |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for w, med, diff in rows:
        bt = "160" if w == "toy" else str(a.batch)
        (pm, ts), (ps, tss) = med["materialize"], med["stream"]
        lines.append(f"| {w} | {bt} | {pm:.1f} | {ps:.1f} | {pm / max(ps, 1e-9):.1f}× | {ts:.2f} | {tss:.2f} | {diff:.1e} |")
    env = (f"{platform.platform()}, {platform.processor() or platform.machine()}, python {platform.python_version()}, "
           f"torch {torch.__version__}, transformers {transformers.__version__}, device {a.device}"
           + (f" ({torch.cuda.get_device_name()})" if a.device == "cuda" else "") +
           f", chunk {a.chunk}, {a.repeats} repeats (medians), 1 torch thread")
    text = "\n".join(lines) + f"\n\n{env}\n"
    print(text)
    if a.out:
        p = Path(a.out)
        tmp = p.with_suffix(p.suffix + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, p)


if __name__ == "__main__":
    main()
