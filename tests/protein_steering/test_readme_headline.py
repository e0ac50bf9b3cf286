"""The README's protein headline is the recorded median over steering seeds (bench/RESULTS_protein_demo.json),
not a best seed."""
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def test_readme_headline_is_the_recorded_median():
    rec = json.loads((ROOT / "bench" / "RESULTS_protein_demo.json").read_text())["0"]
    head = rec["decodings"]["confidence_t0.5"]
    steered = [p["steered_rate"] for p in head["per_seed"]]
    assert len(steered) >= 5 and head["median_steered_rate"] == np.median(steered)
    lo, hi = head["steered_rate_range"]
    other = rec["decodings"]["random_t1"]
    want = (f"PS00028 {100 * head['median_baseline_rate']:.0f}% → {100 * head['median_steered_rate']:.0f}% steered "
            f"(range {100 * lo:.0f}–{100 * hi:.0f}%, {head['n_seeds_p_below_0.01']}/{len(steered)} seeds p < 0.01)")
    readme = (ROOT / "README.md").read_text()
    assert want in readme
    assert (f"{100 * other['median_baseline_rate']:.0f}% → {100 * other['median_steered_rate']:.0f}% with random "
            "order") in readme
    assert f"{100 * rec['data_motif_rate']['rate']:.0f}% of proteins" in readme
