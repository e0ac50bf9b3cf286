"""SAE-steered protein generation, scored against unsteered generation from the same seed.

    import saes
    from steering.protein.steer import steer_proteins
    sae = saes.load_sae("runs/protein/sae")
    res = steer_proteins(hm, sae, {123: 6.0}, n=100, length=60, seed=0, out="runs/steer")
    res["test"]["steered_rate"], res["test"]["baseline_rate"], res["test"]["p_value"]

Steering splices the SAE into its site (``saes.splice``): the activation becomes
``x + decode(f') - decode(f)`` — the SAE's reconstruction error is kept, so only the chosen
latents move the model (Marks et al. 2024) — with ``f'`` the latents clamped to a value
(``mode="clamp"``) or multiplied (``mode="scale"``), at every residue or in a residue
``window=(start, end)``, at every unmasking step (:mod:`.generate`). Garcia & Ansuini (2025)
steer ESM-2 this way (clamping SAE latents tied to an annotation, then generating by
iterative unmasking) and score generations by motif presence; Simon & Zou (2024, InterPLM)
pick such latents by their annotation F1.

The unsteered arm uses the same templates, settings and seed; the motif rate (PROSITE pattern,
default PS00028) is compared with Fisher's exact test (one-sided: steering raises it).
Pseudo-perplexity is computed under the *unsteered* model (how natural the proteins look).
Outputs, written atomically: ``steered.fasta``, ``unsteered.fasta``, ``summary.json``.
"""
from __future__ import annotations

import re
import time
from dataclasses import replace
from pathlib import Path
from typing import Optional

import torch

from .errors import ProteinDataError
from .generate import GenerationConfig, generate
from .scoring import PS00028, compare_rates, score_sequences, write_fasta

MODES = ("clamp", "scale")


class SteeringError(ProteinDataError):
    """An SAE that does not fit the model, or steering settings that cannot work."""


def _norm_name(name) -> str:
    p = Path(str(name)).expanduser()
    return str(p.resolve()) if p.exists() else str(name)


def check_sae(model, sae, site: Optional[str] = None, *, allow_other_model: bool = False) -> str:
    """The site to steer at; raises :class:`SteeringError` when ``sae`` was trained on another
    model or site, or its width differs from the site's (compares the SAE's metadata)."""
    import saes
    from hooks import UnknownSiteError
    from saes.store import model_info

    sae_site, info = saes.site_of(sae), saes.info_of(sae)
    site = site or sae_site
    if not site:
        raise SteeringError("This SAE's files name no site; pass the site it was trained on (e.g. resid_post.2).")
    if sae_site and site != sae_site:
        raise SteeringError(f"The SAE was trained on {sae_site!r}, not {site!r}; steer at {sae_site!r} or use an SAE "
                            f"trained on {site!r}.")
    try:
        model.resolve_sites(site)
    except UnknownSiteError as e:
        raise SteeringError(f"The SAE's site {site!r} is not a site of this model: {e}") from None
    width = re.findall(r"\d+", str(model.sites.get(site, "")))
    d_in = int(sae.cfg.d_in)
    if width and int(width[-1]) != d_in:
        raise SteeringError(f"The SAE reads {d_in}-dim activations but {site} of this model is {width[-1]}-dim: it was "
                            "trained on another model.")
    trained, now = info.get("model") or {}, model_info(model)
    if trained and not allow_other_model:
        diffs = [f"{k}: {trained.get(k)!r} (SAE) vs {now.get(k)!r} (model)" for k in ("class", "n_layers")
                 if trained.get(k) is not None and trained.get(k) != now.get(k)]
        if trained.get("name") and _norm_name(trained["name"]) != _norm_name(now["name"]):
            diffs.append(f"name: {trained['name']!r} (SAE) vs {now['name']!r} (model)")
        if diffs:
            raise SteeringError("The SAE was trained on another model (" + "; ".join(diffs) + "). Load the model it "
                                "was trained on, or pass allow_other_model=True (--allow-other-model) if these are "
                                "the same weights under another name.")
    return site


def steering_interventions(sae, latents: dict, *, mode: str = "clamp", site: Optional[str] = None,
                           window: Optional[tuple] = None):
    """The splice for :func:`generate`: a list (every residue) or, with a residue ``window``
    ``(start, end)`` (0-based, end exclusive), a callable building the batch's position mask."""
    import saes

    if mode not in MODES:
        raise SteeringError(f"mode must be one of {MODES}, got {mode!r}.")
    if not latents:
        raise SteeringError("Give at least one latent to steer, e.g. {123: 6.0}.")
    kw = {"clamp": latents} if mode == "clamp" else {"scale": latents}
    if window is None:
        return [saes.splice(sae, site, positions="residues", **kw)]
    start, end = int(window[0]), int(window[1])
    if not 0 <= start < end:
        raise SteeringError(f"window must be (start, end) with 0 <= start < end, got {window}.")

    def build_mask(ids, am):
        from .align import residue_positions

        res = residue_positions(ids, am)
        rank = res.long().cumsum(1) - 1                      # residue index of each token
        return [saes.splice(sae, site, positions=res & (rank >= start) & (rank < end), **kw)]

    return build_mask


def steer_proteins(model, sae, latents: dict, *, mode: str = "clamp", n: int = 100, length: Optional[int] = 60,
                   template=None, window: Optional[tuple] = None, seed: int = 0,
                   config: Optional[GenerationConfig] = None, pattern: str = PS00028, pppl_n: Optional[int] = None,
                   out=None, site: Optional[str] = None, allow_other_model: bool = False, log=None) -> dict:
    """Generate ``n`` steered and ``n`` unsteered proteins (same seed), score and compare them.

    ``latents``: ``{latent: value}`` (clamp) or ``{latent: factor}`` (scale). ``pppl_n``: score
    pseudo-perplexity on the first ``pppl_n`` proteins of each arm (None: all; 0: none)."""
    t0 = time.time()
    site = check_sae(model, sae, site, allow_other_model=allow_other_model)
    latents = {int(k): float(v) for k, v in latents.items()}
    cfg = replace(config or GenerationConfig(), seed=seed).validate()
    ivs = steering_interventions(sae, latents, mode=mode, site=site, window=window)
    say = log or (lambda *a: None)
    say(f"generating {n} steered proteins (latents {latents}, {mode}, window {window})")
    steered = generate(model, template, n=n, length=length if template is None else None, interventions=ivs, config=cfg)
    say(f"generating {n} unsteered proteins")
    plain = generate(model, template, n=n, length=length if template is None else None, config=cfg)
    k = len(steered) if pppl_n is None else max(0, min(int(pppl_n), len(steered)))
    scores = {}
    for name, seqs in (("steered", steered), ("unsteered", plain)):
        s = score_sequences(seqs, pattern=pattern)
        if k:
            from .scoring import pseudo_perplexity

            say(f"pseudo-perplexity of {k} {name} proteins")
            pp = pseudo_perplexity(model, seqs[:k])
            for rec, v in zip(s["sequences"], pp):
                rec["pppl"] = float(v)
            s["summary"].update({"pppl_mean": float(pp.mean()), "pppl_median": float(torch.tensor(pp).median()),
                                 "pppl_n": k})
        scores[name] = s
    test = compare_rates(scores["steered"]["summary"]["motif_count"], len(steered),
                         scores["unsteered"]["summary"]["motif_count"], len(plain))
    summary = {"site": site, "latents": {str(k_): v for k_, v in latents.items()}, "mode": mode,
               "window": list(window) if window is not None else None, "n": len(steered), "length": length,
               "template": template, "seed": seed, "generation": cfg.to_dict(), "pattern": pattern,
               "steered": scores["steered"]["summary"], "unsteered": scores["unsteered"]["summary"], "test": test,
               "seconds": time.time() - t0}
    if out is not None:
        write_outputs(Path(out), summary, scores)
    summary["sequences"] = {k_: v["sequences"] for k_, v in scores.items()}
    return summary


def pilot(model, sae, candidates: list, *, n: int = 32, length: Optional[int] = 60, template=None, seed: int = 1,
          config: Optional[GenerationConfig] = None, pattern: str = PS00028, site: Optional[str] = None,
          log=None) -> list:
    """Steered motif rate of each candidate ``{"latents": {l: v}, "mode": ..., "window": ...}`` on
    ``n`` pilot proteins (steered arm only, seed ``seed``): for choosing a steering setting
    before the confirmatory run, which must use another seed."""
    from .scoring import find_motif, prosite_to_regex

    rx = prosite_to_regex(pattern)
    cfg = replace(config or GenerationConfig(), seed=seed).validate()
    out = []
    for c in candidates:
        ivs = steering_interventions(sae, c["latents"], mode=c.get("mode", "clamp"), site=site, window=c.get("window"))
        seqs = generate(model, template, n=n, length=length if template is None else None, interventions=ivs,
                        config=cfg)
        rate = sum(bool(find_motif(q, rx)) for q in seqs) / len(seqs)
        out.append({**c, "latents": {str(k): float(v) for k, v in c["latents"].items()}, "rate": rate, "n": len(seqs)})
        if log:
            log(f"pilot {c['latents']} window {c.get('window')}: motif rate {rate:.3f}")
    return out


def write_outputs(out: Path, summary: dict, scores: dict) -> None:
    """``steered.fasta``, ``unsteered.fasta`` (motif/TM/PPPL in each description) and ``summary.json``."""
    from hooks.io import write_json_atomic

    for name, s in scores.items():
        recs = s["sequences"]
        desc = [f"motifs={len(r['motifs'])} tm={len(r['tm_segments'])}"
                + (f" pppl={r['pppl']:.2f}" if "pppl" in r else "") for r in recs]
        write_fasta(out / f"{name}.fasta", [r["sequence"] for r in recs], [f"{name}_{i:04d}" for i in range(len(recs))],
                    desc)
    write_json_atomic(out / "summary.json", summary)
