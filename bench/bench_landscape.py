#!/usr/bin/env python
"""Per-layer landscape time, ``interp.landscape`` vs DADApy 0.3.4 (the paper's own tool).

One "layer" = the analysis Doimo et al. (NeurIPS 2024) run per layer and condition: remove
identical points, neighbours up to maxk = 1000, Gride ID at the scale of the 16th/32nd neighbour,
kNN density (k = 16), ADP (Z = 1.6) with and without halo, ARI with subjects and letters,
label overlaps (class_fraction = 0.3). Default size: N = 10,000 points x D = 4,096 dims
(a Llama-3-8B residual stream at the MMLU scale of the paper).

    PYTHONPATH=. python bench/bench_landscape.py                       # CPU, N=10k, D=4096
    PYTHONPATH=. python bench/bench_landscape.py --quick               # N=2k, D=1024 (smoke test)
    PYTHONPATH=. python bench/bench_landscape.py --device cuda --out bench/RESULTS_landscape_cuda.md

DADApy runs in its own virtual environment (``bench/dadapy_reference/make_venv.sh``; numpy<2
pins that cannot live in the project's environment) through a subprocess on the same data and
thread count; its time excludes interpreter start-up and data loading. ``--skip-dadapy`` or a
missing venv (``--make-venv`` creates it) times ours only. Both are checked for agreement (ID,
clusters, ARIs, overlaps, core fraction) so the timing compares the same computation.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DADAPY_SCRIPT = r'''
import json, math, sys, time
import numpy as np
from dadapy import Data
from sklearn.metrics import adjusted_rand_score
X = np.load(sys.argv[1]).astype(np.float64)
lab = np.load(sys.argv[2])
subj, lett = lab["subjects"], lab["letters"]
maxk, k, Z, cf = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
t = {}
t0 = time.perf_counter()
_, idx = np.unique(X, axis=0, return_index=True)       # the paper's duplicate removal
idx = np.sort(idx); X, subj, lett = X[idx], subj[idx], lett[idx]
t["dedup"] = time.perf_counter() - t0
s = time.perf_counter()
d = Data(coordinates=X, maxk=min(maxk, len(X) - 1), verbose=False)
d.compute_distances(maxk=min(maxk, len(X) - 1))
t["neighbours"] = time.perf_counter() - s
s = time.perf_counter()
ids, errs, _ = d.return_id_scaling_gride(range_max=maxk)
d.set_id(ids[int(math.log2(k))])
t["gride"] = time.perf_counter() - s
s = time.perf_counter()
d.compute_density_kNN(k=k)
t["density"] = time.perf_counter() - s
s = time.perf_counter()
labels = d.compute_clustering_ADP(Z=Z, halo=False)
n_clusters = int(d.N_clusters)
t["adp"] = time.perf_counter() - s
out = {"id": float(ids[int(math.log2(k))]), "n_clusters": n_clusters,
       "ari_subjects": float(adjusted_rand_score(subj, labels)), "ari_letters": float(adjusted_rand_score(lett, labels))}
s = time.perf_counter()
core = d.compute_clustering_ADP(Z=Z, halo=True)
out["core_fraction"] = float(np.mean(core != -1))
t["adp_halo"] = time.perf_counter() - s
s = time.perf_counter()
out["overlap_subjects"] = float(d.return_label_overlap(subj, class_fraction=cf))
out["overlap_letters"] = float(d.return_label_overlap(lett, class_fraction=cf))
t["overlaps"] = time.perf_counter() - s
t["total"] = time.perf_counter() - t0
out["n_points"] = int(len(X))
out["seconds"] = t
print("RESULT " + json.dumps(out))
'''


def make_data(n: int, dim: int, seed: int = 0):
    """Subject clusters (50 subjects) on a 16-d latent space, mapped non-linearly into ``dim``
    dims, plus a weaker answer-letter offset: an LLM-like layer with known labels."""
    rng = np.random.default_rng(seed)
    subjects = rng.integers(0, 50, n)
    letters = rng.integers(0, 4, n)
    z = rng.standard_normal((50, 16))[subjects] * 2.5 + rng.standard_normal((n, 16))
    z[:, :4] += np.eye(4)[letters] * 1.5
    h = np.tanh(z @ rng.standard_normal((16, 256)) / 4.0)
    X = h @ rng.standard_normal((256, dim)) / 16.0 + 0.01 * rng.standard_normal((n, dim))
    return X.astype(np.float32), subjects, letters


def run_ours(X, subjects, letters, device: str, reps: int, maxk: int):
    from interp.landscape.analysis import LandscapeConfig, layer_landscape
    from interp.landscape.neighbors import neighbor_table

    cfg = LandscapeConfig(maxk=maxk, device=device)
    # warm-up (imports, kernels, allocator) on a small slice
    layer_landscape(X[:600], subjects[:600], letters[:600], LandscapeConfig(maxk=100, device=device))
    Xt = torch.from_numpy(X)
    times, res = [], None
    for _ in range(reps):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        res = layer_landscape(Xt, subjects, letters, cfg)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    neighbor_table(Xt.to(device, torch.float64), min(maxk, len(X) - 1), device=device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    knn_s = time.perf_counter() - t0
    res.pop("seconds", None)
    return times, knn_s, res


def dadapy_python(make: bool) -> Path | None:
    py = ROOT / "bench" / ".dadapy-venv" / "bin" / "python"
    if not py.exists() and make:
        subprocess.check_call(["bash", str(ROOT / "bench" / "dadapy_reference" / "make_venv.sh")])
    return py if py.exists() else None


def run_dadapy(py: Path, X, subjects, letters, maxk: int, k: int, Z: float, cf: float, threads: int):
    with tempfile.TemporaryDirectory() as d:
        np.save(f"{d}/X.npy", X)
        np.savez(f"{d}/labels.npz", subjects=subjects, letters=letters)
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
                   MKL_NUM_THREADS=str(threads), PYTHONPATH="")
        p = subprocess.run([str(py), "-c", DADAPY_SCRIPT, f"{d}/X.npy", f"{d}/labels.npz", str(maxk), str(k),
                            str(Z), str(cf)], capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"DADApy run failed:\n{p.stderr[-3000:]}")
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def machine(device: str) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for ln in open("/proc/cpuinfo"):
            if ln.startswith("model name"):
                cpu = ln.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    s = f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads)"
    if device.startswith("cuda"):
        s += f", GPU {torch.cuda.get_device_name(0)}"
    return s


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--dim", type=int, default=4096)
    ap.add_argument("--maxk", type=int, default=1000)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None, help="intra-op threads for both (default: torch's)")
    ap.add_argument("--quick", action="store_true", help="N=2000, D=1024")
    ap.add_argument("--skip-dadapy", action="store_true")
    ap.add_argument("--make-venv", action="store_true", help="create the DADApy venv when missing")
    ap.add_argument("--out", type=Path, default=None, help="append the markdown table to this file")
    a = ap.parse_args(argv)
    if a.quick:
        a.n, a.dim = 2000, 1024
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error("--device cuda but CUDA is not available")
    X, subjects, letters = make_data(a.n, a.dim)
    k, Z, cf = 16, 1.6, 0.3
    times, knn_s, ours = run_ours(X, subjects, letters, a.device, a.reps, a.maxk)
    ref = None
    py = None if a.skip_dadapy else dadapy_python(a.make_venv)
    if py is not None:
        ref = run_dadapy(py, X, subjects, letters, a.maxk, k, Z, cf, torch.get_num_threads())
    lines = [f"### Per-layer landscape, N = {a.n:,} x D = {a.dim:,}, maxk = {a.maxk}, k = {k}, Z = {Z} "
             f"(device {a.device})", "", f"Machine: {machine(a.device)}", "",
             "| implementation | seconds per layer | speed-up |", "|---|---:|---:|"]
    ours_s = float(np.median(times))
    if ref is not None:
        lines.append(f"| DADApy 0.3.4 (CPU, {torch.get_num_threads()} threads) | {ref['seconds']['total']:.1f} | 1.0x |")
        lines.append(f"| interp.landscape ({a.device}) | {ours_s:.1f} | {ref['seconds']['total'] / ours_s:.1f}x |")
    else:
        lines.append(f"| interp.landscape ({a.device}) | {ours_s:.1f} | - |")
    lines += ["", f"Ours: neighbour table alone (exact blocked float64, maxk = {a.maxk}) {knn_s:.1f} s of the "
              f"{ours_s:.1f} s."]
    if ref is not None:
        lines.append("DADApy phases (s): " + ", ".join(f"{p} {v:.1f}" for p, v in ref["seconds"].items()))
        lines += ["", "| metric | DADApy | ours |", "|---|---:|---:|"]
        for m in ("n_points", "id", "n_clusters", "ari_subjects", "ari_letters", "core_fraction",
                  "overlap_subjects", "overlap_letters"):
            lines.append(f"| {m} | {ref[m]:.4f} | {ours[m]:.4f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out is not None:
        with open(a.out, "a") as fh:
            fh.write("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
