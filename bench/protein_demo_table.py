"""Tables for bench/RESULTS_protein_demo.md from ``interp demo`` output directories.

    interp demo --out runs/demo_s0 --seed 0        # and other pipeline seeds
    interp demo --proteins /work/shared/data/tmbed/alpha.fasta --out runs/tmbed
    python bench/protein_demo_table.py runs/demo_s0 runs/demo_s2 --tmbed runs/tmbed

Prints markdown: per pipeline seed, the steering arm's per-seed table (both decodings), the
medians, the controls, the data's motif rate, F1 beside chance, coverage and timings.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def steering_tables(s: dict) -> list:
    st = s["steering"]
    L = [f"### pipeline seed {s['seed']} (latent {st['latent']}, F1 rank {st['rank']}, clamp {st['value']:.3g} = "
         f"{st['clamp_multiple']:g} × max at residue {st['window'][0] if st['window'] else 'all'})", "",
         "| decoding | steering seed | n per arm | unsteered | steered | one-sided Fisher p |", "|---|---:|---:|---:|---:|---:|"]
    for name, d in st["decodings"].items():
        for p in d["per_seed"]:
            L.append(f"| {name} | {p['seed']} | {p['n']} | {p['baseline_rate']:.2f} | {p['steered_rate']:.2f} | "
                     f"{p['p_value']:.2g} |")
    L += ["", "| decoding | median unsteered | median steered (range) | seeds p < 0.01 |", "|---|---:|---:|---:|"]
    for name, d in st["decodings"].items():
        lo, hi = d["steered_rate_range"]
        L.append(f"| {name} | {d['median_baseline_rate']:.2f} | {d['median_steered_rate']:.2f} ({lo:.2f}–{hi:.2f}) | "
                 f"{d['n_seeds_p_below_0.01']}/{d['n_seeds']} |")
    from scipy.stats import fisher_exact

    k_st = round(sum(p["steered_rate"] * p["n"] for p in st["per_seed"]))
    n_st = sum(p["n"] for p in st["per_seed"])
    L += ["", f"| control (headline decoding, pooled over seeds) | rate | range | n | p (steered {k_st}/{n_st} above) |",
          "|---|---:|---:|---:|---:|"]
    for k, c in st["controls"].items():
        kc = round(c["rate"] * c["n"])
        p = c.get("p_steered_greater", fisher_exact([[k_st, n_st - k_st], [kc, c["n"] - kc]], "greater")[1])
        L.append(f"| {k} | {c['rate']:.3f} | {c['rate_range'][0]:.2f}–{c['rate_range'][1]:.2f} | {c['n']} | {p:.2g} |")
    dm = st["data_motif_rate"]
    L += ["", f"Data's own PS00028 rate: {dm['rate']:.3f} ({dm['count']}/{dm['n']} proteins)."]
    return L


def annotation_table(s: dict) -> list:
    L = ["| annotation | best latent | test F1 | chance: always on | chance: best shuffled latent | beats chance |",
         "|---|---:|---:|---:|---:|---|"]
    for t, a in s["annotations"].items():
        L.append(f"| {t} | {a['latent']} | {a['f1']:.3f} | {a['chance_always_on_f1']:.3f} | "
                 f"{a['chance_random_latent_f1']:.3f} | {'yes' if a['beats_chance'] else '**no**'} |")
    c = s["coverage"]["test"]
    L += ["", f"Residue coverage (test): {c['scored']}/{c['residues']} = {100 * c['fraction']:.1f}% from {c['windows']} "
          f"windows over {c['proteins']} proteins (context {s.get('context_residues')} residues). "
          f"Timings (s, wall): {s['timings']}, total {s['seconds']:.0f}."]
    return L


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="*", type=Path)
    ap.add_argument("--tmbed", type=Path)
    a = ap.parse_args()
    out = []
    for r in a.runs:
        s = json.loads((r / "summary.json").read_text())
        out += steering_tables(s) + [""] + annotation_table(s) + [""]
    if a.tmbed:
        s = json.loads((a.tmbed / "summary.json").read_text())
        out += ["### TMbed", ""] + annotation_table(s)
    print("\n".join(out))


if __name__ == "__main__":
    main()
