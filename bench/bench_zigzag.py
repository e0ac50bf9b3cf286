"""Benchmark interp.topology against the authors' direct dionysus pipeline (dense kNN graph).

    python bench/bench_zigzag.py                          # paper protocol + N = 4,000, writes RESULTS_zigzag.md
    python bench/bench_zigzag.py --reps 1 --big 0 --out /tmp/r.md

Paper protocol (Gardinazzi et al. 2025): 16 disjoint subsets x 500 points x 33 layers, k = 5,
m = 4. The reference is ``bench/zigzag_reference.py`` (sklearn ``kneighbors_graph().toarray()``,
gudhi simplex trees, dense appearance matrix, ``dionysus.zigzag_homology_persistence``, as in
YuriGardinazzi/conferenceProject ``src/zigzag/zigzag_DL.py``). Per-subset timings of the two
sides alternate (order flipped every repetition) and medians are reported; every compared pair
of bar multisets is checked to be identical. Data: synthetic layer clouds (below), since no
33-layer LLM is available offline; the consecutive-layer kNN-edge Jaccard is reported so the
churn can be compared with real representations. One torch thread.
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402

from interp.topology.pipeline import layer_complexes, run_zigzag  # noqa: E402
from interp.topology.zigzag import zigzag_bars  # noqa: E402
from zigzag_reference import authors_bars  # noqa: E402


def layers_like(n, n_layers=33, dim=256, step=0.2, noise=0.03, seed=0):
    """Residual-stream-like clouds: a 6-dimensional latent pushed through tanh features, then
    one small random nonlinear update per layer (x <- x + step * tanh(x A) + noise)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 6))
    x = np.tanh(z @ rng.normal(size=(6, dim))) + 0.1 * rng.normal(size=(n, dim))
    out = []
    for _ in range(n_layers):
        x = x + step * np.tanh(x @ (rng.normal(size=(dim, dim)) / np.sqrt(dim))) + noise * rng.normal(size=x.shape)
        out.append(x.astype(np.float32))
    return out


def cpu_now():
    """CPU seconds of this process and its reaped children (robust to a shared, loaded machine)."""
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + ch.ru_utime + ch.ru_stime


def ours_one(clouds, k, m):
    t0 = time.perf_counter()
    cx = layer_complexes(clouds, k, m)
    t1 = time.perf_counter()
    b = zigzag_bars(cx)
    t2 = time.perf_counter()
    return b, t1 - t0, t2 - t1, cx


def edge_jaccard(cx):
    e = [set(map(tuple, c[1].tolist())) for c in cx]
    return float(np.mean([len(a & b) / len(a | b) for a, b in zip(e, e[1:])]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3, help="repetitions of the per-subset comparison")
    ap.add_argument("--subsets", type=int, default=16)
    ap.add_argument("--subset-size", type=int, default=500)
    ap.add_argument("--layers", type=int, default=33)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--max-dim", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--big", type=int, default=4000, help="one zigzag of this many points (0: skip)")
    ap.add_argument("--big-authors", action="store_true", help="also run the reference at --big (slow)")
    ap.add_argument("--step", type=float, default=0.2, help="per-layer update size of the synthetic clouds (churn)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS_zigzag.md")
    a = ap.parse_args()
    torch.set_num_threads(1)
    load0 = os.getloadavg()[0]
    k, m, L = a.k, a.max_dim, a.layers
    n_total = a.subsets * a.subset_size
    clouds = layers_like(n_total, L, step=a.step)
    idx = np.random.default_rng(0).permutation(n_total)
    lines = []
    say = (lambda s: (print(s, flush=True), lines.append(s)))

    warm = [c[:80] for c in clouds[:3]]  # imports and first calls out of the timings
    ours_one(warm, k, m)
    authors_bars(warm, knn=k, dim=m)

    # 1. one subset, both sides, interleaved
    ours_t, ours_cx_t, ours_zz_t, ref_t, identical = [], [], [], [], True
    ours_cpu, ref_cpu = [], []
    for r in range(a.reps):
        sub = [c[np.sort(idx[r * a.subset_size:(r + 1) * a.subset_size])] for c in clouds]
        order = ["ours", "ref"] if r % 2 == 0 else ["ref", "ours"]
        got = {}
        for side in order:
            c0 = cpu_now()
            if side == "ours":
                b, tc, tz, cx = ours_one(sub, k, m)
                ours_cpu.append(cpu_now() - c0)
                ours_t.append(tc + tz)
                ours_cx_t.append(tc)
                ours_zz_t.append(tz)
                got["ours"] = Counter(zip(b.dim.tolist(), b.birth.tolist(), b.death.tolist()))
                jac = edge_jaccard(cx)
            else:
                t0 = time.perf_counter()
                got["ref"] = Counter(authors_bars(sub, knn=k, dim=m))
                ref_t.append(time.perf_counter() - t0)
                ref_cpu.append(cpu_now() - c0)
        identical &= got["ours"] == got["ref"]
    med = statistics.median
    say(f"| one subset ({a.subset_size} x {L}, k={k}, m={m}) | {med(ours_t):.2f} s (complexes {med(ours_cx_t):.2f}, "
        f"zigzag {med(ours_zz_t):.2f}); CPU {med(ours_cpu):.2f} s | {med(ref_t):.2f} s; CPU {med(ref_cpu):.2f} s | "
        f"{med(ref_t) / med(ours_t):.2f}x (CPU {med(ref_cpu) / med(ours_cpu):.2f}x) | "
        f"{'identical' if identical else 'DIFFERENT'} bars ({a.reps} subsets; edge Jaccard {jac:.2f}) |")

    # 2. the whole protocol, ours, subsets in parallel
    full, full_cpu = [], []
    for r in range(max(1, a.reps - 1)):
        t0, c0 = time.perf_counter(), cpu_now()
        res = run_zigzag({f"l{i}": c for i, c in enumerate(clouds)}, k=k, max_dim=m, n_subsets=a.subsets,
                         subset_size=a.subset_size, seed=r, workers=a.workers)
        full.append(time.perf_counter() - t0)
        full_cpu.append(cpu_now() - c0)
    ref_est = a.subsets * med(ref_t)
    say(f"| protocol {a.subsets} x {a.subset_size} x {L} ({a.workers} workers) | {med(full):.1f} s "
        f"(runs: {', '.join(f'{x:.1f}' for x in full)}); CPU {med(full_cpu):.1f} s | {ref_est:.1f} s; CPU {a.subsets * med(ref_cpu):.1f} s ({a.subsets} x the per-subset median; serial, "
        f"as their script) | {ref_est / med(full):.1f}x | median beta_1 of layer {L // 2}: "
        f"{np.median(res.betti[:, 1, L // 2]):.0f} (range {res.betti[:, 1, L // 2].min()}-{res.betti[:, 1, L // 2].max()}) |")

    # 3. one large zigzag
    if a.big:
        big = layers_like(a.big, L, step=a.step, seed=1)
        c0 = cpu_now()
        b, tc, tz, cx = ours_one(big, k, m)
        row = (f"| one zigzag {a.big} x {L} | {tc + tz:.1f} s, CPU {cpu_now() - c0:.1f} s (complexes {tc:.1f}, zigzag {tz:.1f}; "
               f"{b.n_simplices} simplices, {len(b)} bars; edge Jaccard {edge_jaccard(cx):.2f}) |")
        if a.big_authors:
            t0 = time.perf_counter()
            same = Counter(authors_bars(big, knn=k, dim=m)) == Counter(zip(b.dim.tolist(), b.birth.tolist(),
                                                                             b.death.tolist()))
            tr = time.perf_counter() - t0
            row += f" {tr:.1f} s | {tr / (tc + tz):.2f}x | {'identical' if same else 'DIFFERENT'} bars |"
        else:
            row += " not run (use --big-authors) | | |"
        say(row)

    import dionysus
    import gudhi
    import sklearn

    head = (f"Machine: {platform.machine()} {os.cpu_count()} CPUs, load average {load0:.1f} at the start, "
            f"{os.getloadavg()[0]:.1f} at the end (shared machine: wall times are noisy, CPU times less so); "
            f"Python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}, "
            f"data step {a.step}; dionysus {dionysus.__version__}, gudhi {gudhi.__version__}, scikit-learn {sklearn.__version__}; "
            f"1 torch thread.")
    table = "| case | interp.topology | authors' pipeline | ratio | check |\n|---|---|---|---|---|\n" + "\n".join(lines)
    text = a.out.read_text() if a.out.exists() else "# interp.topology vs the authors' zigzag pipeline\n\n"
    marker = "## Last run"
    text = text.split(marker)[0].rstrip() + f"\n\n{marker}\n\n{head}\n\n{table}\n"
    tmp = a.out.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(a.out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
