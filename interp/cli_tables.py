"""The rich tables the ``interp`` commands print (kept apart from ``interp.cli`` so that modules
such as ``interp.demo`` can print them without importing the CLI).

    from interp.cli_tables import print_summary
    print_summary(res["summary"], "gpt2 · ablate.yaml")
"""
from __future__ import annotations

from pathlib import Path

from steering.cli_common import console


def print_summary(s: dict, title: str):
    """The clean-vs-intervened table of ``interp run`` (and ``interp demo-lm``), then the metrics."""
    from rich.table import Table

    t = Table(title=title)
    for col in ("objective", "tokens", "clean loss", "intervened loss", "Δ loss", "top-1 changed"):
        t.add_column(col, justify="right")
    t.add_row(s["objective"], str(s["tokens"]), f"{s['clean_loss']:.4f}", f"{s['intervened_loss']:.4f}",
              f"{s['delta_loss']:+.4f}", f"{100 * s['top1_changed']:.1f}%")
    console().print(t)
    if s.get("metrics"):
        m = Table(title=f"per-example metrics (mean over {s.get('examples', '?')} examples)")
        for col in ("metric", "clean", "intervened", "Δ", "n"):
            m.add_column(col, justify="right")
        for name, v in s["metrics"].items():
            m.add_row(name, f"{v['clean']:.4f}", f"{v['intervened']:.4f}", f"{v['delta']:+.4f}", str(v["n"]))
        console().print(m)
    for w in s.get("warnings", []):
        console().print(f"[yellow]warning:[/yellow] {w}")


def print_demo(summary: dict, out: Path):
    """The annotation → latent table and the steering headline of ``interp demo``."""
    from rich.table import Table

    from hooks.formatting import format_q

    t = Table(title="Annotations → best SAE latent (test split)")
    for c in ("annotation", "latent", "F1", "chance F1", "FDR q"):
        t.add_column(c, justify="right")
    for name, a in summary.get("annotations", {}).items():
        t.add_row(name, str(a["latent"]), f"{a['f1']:.3f}", f"{a.get('chance_f1', float('nan')):.3f}"
                  + ("" if a.get("beats_chance", True) else " (not beaten)"), format_q(a["fdr_q"]))
    console().print(t)
    if "residue_coverage" in summary:
        console().print(f"test residues scored: {100 * summary['residue_coverage']:.1f}%")
    st = summary.get("steering") or {}
    if st:
        lo, hi = st["steered_rate_range"]
        console().print(f"steering latent {st['latent']}: PS00028 motif rate, median over {st['n_seeds']} seeds "
                         f"({st['headline_decoding']}): {st['median_baseline_rate']:.2f} → "
                         f"{st['median_steered_rate']:.2f} (steered range {lo:.2f}–{hi:.2f}, n={st['n']} per arm "
                         f"and seed, {st['n_seeds_p_below_0.01']}/{st['n_seeds']} seeds p < 0.01)")
    console().print(f"{summary.get('seconds', 0):.1f}s — wrote {out / 'report.md'} and {out / 'summary.json'}")
