"""Latent pages for the protein pipeline's report: the dashboard of :mod:`saes.dashboard` for the
latents the report names (best per annotation, steered latent), on the test proteins.

    info = write_latent_pages(out, hm, sae, ds_te, tracks, latents=[222, 509], context=126)
    info["index"]            # "dashboard/index.html" (relative to out)
    info["proteins"]         # test proteins shown ...
    info["skipped_long"]     # ... and those longer than the model's context, left out (counted)

The dashboard reads each protein in one forward, so proteins longer than the model's context are
left out and counted (the report's statistics use sliding windows and cover every residue).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional


def latent_page(f: int) -> str:
    """Path of latent ``f``'s page relative to the pipeline's output folder."""
    return f"dashboard/latents/{int(f):06d}.html"


def write_latent_pages(out, hm, sae, ds, tracks: list, latents: list, *, context: Optional[int] = None,
                       log=print) -> dict:
    import saes

    from .schema import masks_of

    seqs = list(ds["sequence"])
    keep = [i for i, s in enumerate(seqs) if context is None or len(s) <= context]
    info = {"index": "dashboard/index.html", "proteins": len(keep), "skipped_long": len(seqs) - len(keep),
            "latents": sorted({int(f) for f in latents})}
    if not keep:
        log(f"latent pages skipped: none of the {len(seqs)} test proteins fits the model's context ({context})")
        return {**info, "index": None}
    sub = ds.select(keep) if len(keep) < len(seqs) else ds
    ann = {t: masks_of(sub, t) for t in tracks}
    saes.dashboard(sae, hm, list(sub["sequence"]), Path(out) / "dashboard", annotations=ann,
                   latents=info["latents"], progress=False,
                   info={"title": "Protein pipeline: latents of the report"})
    if info["skipped_long"]:
        log(f"latent pages: {info['skipped_long']} of {len(seqs)} test proteins are longer than the context "
            f"({context} residues) and are not shown")
    return info
