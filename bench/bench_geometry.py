"""Benchmark geometry (formerly interp.geometry) against DADApy 0.3.4 on the same data and machine.

    python bench/bench_geometry.py                       # CPU, with DADApy (needs make_venv.sh)
    python bench/bench_geometry.py --device cuda --skip-dadapy
    python bench/bench_geometry.py --sizes 5000x128 --reps 1 --out /tmp/r.md

Stages (both sides): k-NN (maxk = 100), Gride scan (range_max = 64), TwoNN +
kNN density (k = 10), ADP (Z = 1.65), label overlap (k = 30). DADApy runs in
its own venv through a subprocess (bench/dadapy_reference/run_bench.py);
repetitions of the two sides are interleaved and medians reported. The
results are checked to be identical (neighbour indices, ADP labels, IDs,
overlap). The script also measures the float32 (and bf16) GEMM rate of the
device in the k-NN's own shape and reports the k-NN's rate as a fraction.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench" / "dadapy_reference"))

from datasets import bench_dataset  # noqa: E402

import geometry as geo  # noqa: E402

STAGES = ["knn", "gride", "density", "adp", "label_overlap"]


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def gemm_rate(dev, dtype, N=20000, D=1024, rows=2048, reps=3):
    """GFLOP/s of a (rows x D) @ (D x N) product, the k-NN's block shape."""
    a = torch.randn(rows, D, device=dev).to(dtype)
    b = torch.randn(N, D, device=dev).to(dtype)
    out = torch.empty(rows, N, device=dev, dtype=dtype)
    torch.mm(a, b.T, out=out)
    sync(dev)
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.mm(a, b.T, out=out)
        sync(dev)
        ts.append(time.perf_counter() - t0)
    return 2 * rows * N * D / statistics.median(ts) / 1e9


def run_ours(X, labels, dev, precision):
    t = {}
    sync(dev)
    t0 = time.perf_counter()
    nb = geo.knn(X, 100, precision=precision, device=dev)
    sync(dev)
    t["knn"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    gride = geo.return_id_scaling_gride(nb, range_max=64)
    sync(dev)
    t["gride"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    twonn = geo.compute_id_2nn(nb).id
    dens = geo.compute_density_knn(nb, k=10, intrinsic_dim=twonn)
    sync(dev)
    t["density"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    adp = geo.compute_clustering_adp(nb, dens, Z=1.65)
    sync(dev)
    t["adp"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    lo = geo.label_overlap(nb, labels, k=30)
    sync(dev)
    t["label_overlap"] = time.perf_counter() - t0
    t["total"] = sum(t.values())
    res = {"gride_ids": gride.ids.tolist(), "twonn": twonn, "n_clusters": adp.n_clusters, "label_overlap": lo,
           "adp": adp.labels.cpu().numpy(), "nn": nb.indices.cpu().numpy(), "stats": nb.stats}
    return t, res


def run_dadapy(py, xfile, yfile, tmp, tag):
    prefix = str(Path(tmp) / f"dadapy_{tag}")
    env = dict(os.environ, PIP_CONSTRAINT="")
    subprocess.run([py, str(ROOT / "bench" / "dadapy_reference" / "run_bench.py"), xfile, yfile, prefix],
                   check=True, env=env)
    with open(prefix + ".json") as fh:
        out = json.load(fh)
    out["adp"] = np.load(prefix + ".adp.npy")
    out["nn"] = np.load(prefix + ".nn.npy")
    return out["times"], out


def same_results(ours, ref):
    from sklearn.metrics import adjusted_rand_score

    checks = {
        "neighbours": bool(np.array_equal(ours["nn"], ref["nn"])),
        "gride_ids_rel": float(np.max(np.abs(np.array(ours["gride_ids"]) / np.array(ref["gride_ids"]) - 1))),
        "twonn_rel": abs(ours["twonn"] / ref["twonn"] - 1),
        "adp_ari": float(adjusted_rand_score(ref["adp"], ours["adp"])),
        "n_clusters": (ours["n_clusters"], ref["n_clusters"]),
        "label_overlap_diff": abs(ours["label_overlap"] - ref["label_overlap"]),
    }
    checks["identical"] = (checks["neighbours"] and checks["gride_ids_rel"] < 1e-4 and checks["twonn_rel"] < 1e-4
                           and checks["adp_ari"] == 1.0 and checks["label_overlap_diff"] < 1e-12)
    return checks


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto", help="k-NN candidate precision (auto/bf16/float32/float64)")
    ap.add_argument("--sizes", default="5000x128,5000x1024,20000x128,20000x1024")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--skip-dadapy", action="store_true")
    ap.add_argument("--dadapy-python", default=str(ROOT / "bench" / ".dadapy-venv" / "bin" / "python"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "RESULTS_geometry.md"))
    args = ap.parse_args()

    dev = torch.device("cuda" if (args.device == "auto" and torch.cuda.is_available()) else
                       ("cpu" if args.device == "auto" else args.device))
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    use_dadapy = not args.skip_dadapy
    if use_dadapy and not Path(args.dadapy_python).exists():
        sys.exit(f"DADApy venv not found at {args.dadapy_python}: run bench/dadapy_reference/make_venv.sh "
                 f"or pass --skip-dadapy")

    gemm = {"float32": [], "bf16": []}
    print(f"device {dev}, torch threads {torch.get_num_threads()}", flush=True)
    ours_t = {s: [] for s in sizes}
    ref_t = {s: [] for s in sizes}
    checks, stats = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for N, D in sizes:
            X, y = bench_dataset(N, D, seed=0)
            xf, yf = str(Path(tmp) / f"X_{N}_{D}.npy"), str(Path(tmp) / f"y_{N}_{D}.npy")
            np.save(xf, X)
            np.save(yf, y)
            files[(N, D)] = (X, y, xf, yf)
        geo.knn(files[sizes[0]][0][:500], 10, device=dev)  # warm-up
        for rep in range(args.reps):
            for dt, name in ((torch.float32, "float32"), (torch.bfloat16, "bf16")):  # GEMM rate, also interleaved
                gemm[name].append(gemm_rate(dev, dt))
            print(f"rep {rep}: GEMM GFLOP/s float32 {gemm['float32'][-1]:.0f}, bf16 {gemm['bf16'][-1]:.0f}", flush=True)
            for s in sizes:
                X, y, xf, yf = files[s]
                order = ["ours", "dadapy"] if rep % 2 == 0 else ["dadapy", "ours"]
                for side in order:
                    if side == "ours":
                        t, res = run_ours(X, y, dev, args.precision)
                        ours_t[s].append(t)
                        stats[s] = res["stats"]
                        mine = res
                    elif use_dadapy:
                        t, ref = run_dadapy(args.dadapy_python, xf, yf, tmp, f"{s[0]}_{s[1]}")
                        ref_t[s].append(t)
                print(f"rep {rep} {s}: ours {ours_t[s][-1]['total']:.2f}s"
                      + (f", dadapy {ref_t[s][-1]['total']:.2f}s" if use_dadapy else ""), flush=True)
                if use_dadapy and rep == 0:
                    checks[s] = same_results(mine, ref)
                    print("  identical results:", checks[s], flush=True)
    rates = {k: statistics.median(v) for k, v in gemm.items()}
    write_report(args, dev, rates, sizes, ours_t, ref_t, checks, stats, use_dadapy)


def med(runs, stage):
    return statistics.median(r[stage] for r in runs)


def write_report(args, dev, rates, sizes, ours_t, ref_t, checks, stats, use_dadapy):
    lines = ["# geometry vs DADApy 0.3.4", ""]
    cpu = platform.processor() or platform.machine()
    lines.append(f"Machine: {dev} ({cpu}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, "
                 f"{torch.get_num_threads()} torch threads); DADApy 0.3.4 in its own venv (numpy 1.26, "
                 f"scikit-learn brute force, n_jobs = all cores). Median of {args.reps} interleaved repetitions.")
    lines.append(f"Measured GEMM rate on this device ((2048 x 1024) @ (1024 x 20000), torch, all threads; median "
                 f"over the repetitions): float32 {rates['float32']:.0f} GFLOP/s, bf16 {rates['bf16']:.0f} GFLOP/s. "
                 f"k-NN precision: {args.precision}.")
    lines.append("")
    head = "| N x D | stage | ours (s) |" + (" DADApy (s) | speed-up |" if use_dadapy else "")
    lines += [head, "|---|---|---:|" + ("---:|---:|" if use_dadapy else "")]
    for s in sizes:
        for st in STAGES + ["total"]:
            o = med(ours_t[s], st)
            row = f"| {s[0]}x{s[1]} | {st} | {o:.3f} |"
            if use_dadapy:
                r = med(ref_t[s], st)
                row += f" {r:.3f} | {r / o:.1f}x |"
            lines.append(row)
    lines += ["", "k-NN rate: 2 N^2 D / (k-NN time), i.e. the brute-force distance flops per second of the whole",
              "k-NN (product, selection, float64 re-ranking, certification), as a fraction of the measured GEMM rates:", ""]
    for s in sizes:
        N, D = s
        eff = 2 * N * N * D / med(ours_t[s], "knn") / 1e9
        lines.append(f"- {N}x{D}: {eff:.0f} GFLOP/s effective = {eff / rates['float32']:.0%} of float32 GEMM, "
                     f"{eff / rates['bf16']:.0%} of bf16 GEMM; rows certified per precision: {stats.get(s)}")
    if use_dadapy:
        lines += ["", "Identical results (first repetition): neighbour indices equal, Gride/TwoNN IDs within 1e-4,",
                  "ADP labels ARI = 1, label overlap equal:", ""]
        for s in sizes:
            lines.append(f"- {s[0]}x{s[1]}: {checks[s]}")
    out = Path(args.out)
    marker = "## Last run"
    text = "\n".join(lines) + "\n"
    if out.exists() and marker in out.read_text():  # keep the hand-written notes above the marker
        head = out.read_text().split(marker)[0]
        text = head + f"{marker} (`python bench/bench_geometry.py`, {time.strftime('%Y-%m-%d')})\n\n" + "\n".join(lines[2:]) + "\n"
    out.write_text(text)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
