"""DADApy side of bench/bench_geometry.py (runs inside bench/.dadapy-venv).

    python run_bench.py X.npy labels.npy out_prefix

Times the same stages as the torch side and writes ``out_prefix.json``
(timings, IDs, overlaps) and ``out_prefix.adp.npy`` / ``out_prefix.nn.npy``
(ADP labels and neighbour indices, to check the results are identical).
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
from dadapy import Data


def main():
    X = np.load(sys.argv[1])
    labels = np.load(sys.argv[2])
    prefix = sys.argv[3]
    t = {}
    t0 = time.perf_counter()
    d = Data(coordinates=X, maxk=100, verbose=False)
    d.compute_distances(maxk=100)
    t["knn"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    ids, errs, _ = d.return_id_scaling_gride(range_max=64)
    t["gride"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    twonn = d.compute_id_2NN()[0]
    d.compute_density_kNN(k=10)
    t["density"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    adp = d.compute_clustering_ADP(Z=1.65)
    t["adp"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    lo = float(d.return_label_overlap(labels, k=30))
    t["label_overlap"] = time.perf_counter() - t0
    t["total"] = sum(t.values())

    np.save(prefix + ".adp.npy", np.asarray(adp, dtype=np.int64))
    np.save(prefix + ".nn.npy", d.dist_indices.astype(np.int32))
    with open(prefix + ".json", "w") as fh:
        json.dump({"times": t, "gride_ids": np.asarray(ids).tolist(), "twonn": float(twonn),
                   "n_clusters": int(d.N_clusters), "label_overlap": lo}, fh)


if __name__ == "__main__":
    main()
