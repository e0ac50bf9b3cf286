"""The pipeline's steering arm: pilot, then the confirmatory run over several seeds, two decoding
settings and two controls — what a user of ``interp demo`` will get, not the best seed.

    from steering.protein.steer_arm import steering_arm
    st = steering_arm(hm, sae, site, candidates, out="runs/demo/steering", seeds=range(5), n=100)
    st["median_steered_rate"], st["per_seed"]      # [{"seed", "baseline_rate", "steered_rate", "p_value"}]
    st["decodings"]["random_t1"]["median_steered_rate"]
    st["controls"]["fixed_residue"]["rate"], st["controls"]["random_latents"]["rate"]

1. **Pilot** (seed ``pilot_seed``, steered arm only): every candidate ``{latent: value}`` at its
   window; the highest PS00028 rate wins (ties: better F1 rank, then smaller value). The
   pilot's proteins are never reused.
2. **Confirmatory run** for each seed of ``seeds`` and each decoding setting of ``decodings``
   (the first is the headline): ``n`` steered and ``n`` unsteered proteins from the same seed,
   PS00028 rates, one-sided Fisher's exact test (:func:`.scoring.compare_rates`). The summary
   is the median and range over seeds and the number of seeds with p < 0.01 — a single seed's
   rate varies a lot (0.06-0.44 over 8 seeds on the shipped toy model).
3. **Controls** (headline decoding, every seed, ``n_control`` proteins each; each compared with
   the pooled steered proteins by a one-sided Fisher test, ``p_steered_greater``): *fixed residue* —
   no SAE; the clamped residue is fixed to the amino acid the steered proteins of that seed
   most often carry there (does writing that one residue explain the effect?); *random
   latents* — a latent drawn at random (seeded, not among the candidates) clamped to the same
   value at the same residue (does any large clamp there do it?).

Garcia & Ansuini (2025) steer ESM-2 with clamped SAE latents and score generations by motif
presence; Fisher's exact test as in :mod:`.steer`.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .errors import ProteinDataError

# The headline decoding first. "confidence_t0.5" is the setting the pipeline was designed with
# (Mask-Predict-style confidence order, low temperature: the steered skeleton is completed);
# "random_t1" is the generator's default order and temperature (2 residues per step, as above).
DECODINGS = {"confidence_t0.5": {"order": "confidence", "temperature": 0.5, "per_step": 2},
             "random_t1": {"order": "random", "temperature": 1.0, "per_step": 2}}


def latent_layout(sae, cache: list, latent: int, track: str) -> dict:
    """Where ``latent`` fires inside ``track`` domains (validation): its largest activation on the
    track's residues, the most common offset of its peak from the domain start, the median length."""
    from .latents import encode

    best, offsets, lengths = 0.0, [], []
    for c in cache:
        a = encode(sae, c["x"])[:, latent].numpy()
        for b, feats in enumerate(c["features"]):
            for f in feats:
                if f["type"] != track:
                    continue
                lo, hi = c["starts"][b] + max(0, f["start"]), c["starts"][b] + min(f["end"], c["n_res"][b])
                if hi <= lo:
                    continue
                seg = a[lo:hi]
                lengths.append(hi - lo)
                best = max(best, float(seg.max()))
                if seg.max() > 0:
                    offsets.append(int(seg.argmax()))
    if not offsets:
        raise ProteinDataError(f"Latent {latent} never fires on a {track} domain of the validation proteins.")
    vals, counts = np.unique(offsets, return_counts=True)
    return {"positive_max": best, "offset": int(vals[counts.argmax()]), "domain_length": int(np.median(lengths)),
            "offset_counts": {int(v): int(n) for v, n in zip(vals, counts)}}


def auto_window(layout: dict, length: int) -> tuple:
    """One residue: the latent's usual peak offset inside a domain placed in the middle of the protein."""
    start = max(0, (length - layout["domain_length"]) // 2)
    pos = min(length - 1, start + layout["offset"])
    return (pos, pos + 1)


def steer_candidates_of(sae, table, cache_va, track, *, length, multiples, candidates, window, mode) -> tuple:
    """The pilot's settings: the track's top ``candidates`` latents (validation F1) that fire on its
    validation domains, each at its auto window × every clamp multiple of its largest activation."""
    rows = table[table["concept"] == track].sort_values("rank").head(max(1, int(candidates)))
    cands, layouts = [], {}
    for lat, rank in zip(rows["latent"].astype(int), rows["rank"].astype(int)):
        try:
            layouts[lat] = latent_layout(sae, cache_va, lat, track)
        except ProteinDataError:
            continue
        win = auto_window(layouts[lat], length) if window == "auto" else window
        for m in multiples:
            cands.append({"latents": {lat: m * layouts[lat]["positive_max"]}, "window": win, "mode": mode,
                          "latent": lat, "rank": rank, "clamp_multiple": float(m)})
    if not cands:
        raise ProteinDataError(f"None of the top {candidates} {track} latents fires on validation {track} domains.")
    return cands, layouts


def data_motif_rate(sequences, pattern: str) -> dict:
    """Fraction of the data set's proteins carrying ``pattern`` (the world the model learnt)."""
    from .scoring import find_motif, prosite_to_regex

    rx = prosite_to_regex(pattern)
    k = sum(bool(find_motif(s, rx)) for s in sequences)
    return {"rate": k / max(len(sequences), 1), "n": len(sequences), "count": int(k)}


def _rate(seqs, rx) -> tuple:
    from .scoring import find_motif

    k = sum(bool(find_motif(s, rx)) for s in seqs)
    return k, k / max(len(seqs), 1)


def _summ(per_seed: list) -> dict:
    st = np.array([p["steered_rate"] for p in per_seed])
    bl = np.array([p["baseline_rate"] for p in per_seed])
    ps = np.array([p["p_value"] for p in per_seed])
    return {"per_seed": per_seed, "median_steered_rate": float(np.median(st)),
            "median_baseline_rate": float(np.median(bl)),
            "steered_rate_range": [float(st.min()), float(st.max())],
            "baseline_rate_range": [float(bl.min()), float(bl.max())],
            "median_p_value": float(np.median(ps)), "n_seeds": len(per_seed),
            "n_seeds_p_below_0.01": int((ps < 0.01).sum())}


def fixed_residue_template(steered: Sequence[str], pos: int, length: int) -> tuple:
    """``(template, amino_acid)``: all masked but residue ``pos``, fixed to its most common amino
    acid among ``steered`` proteins."""
    aa = Counter(s[pos] for s in steered if len(s) > pos).most_common(1)[0][0]
    return "_" * pos + aa + "_" * (length - pos - 1), aa


def pick_pilot(trials: list) -> int:
    """Index of the pilot's best setting: highest rate, then better rank, then smaller multiple."""
    return max(range(len(trials)), key=lambda i: ((trials[i]["rate"] or 0.0), -trials[i]["rank"],
                                                  -trials[i]["clamp_multiple"]))


def steering_arm(hm, sae, site: str, candidates: list, *, out, seeds: Sequence[int], n: int, length: int,
                 pilot_n: int, pilot_seed: int, decodings: Optional[dict] = None, n_secondary: Optional[int] = None,
                 n_control: Optional[int] = None, mode: str = "clamp", pattern: str, pppl_n: int = 32,
                 exclude_random: Sequence[int] = (), log=print, progress=False) -> dict:
    """Pilot over ``candidates`` (dicts with ``latents``, ``window``, ``latent``, ``rank``,
    ``clamp_multiple``), then every seed × decoding, then the controls. ``n_secondary`` /
    ``n_control``: proteins per arm and seed for the other decodings / the controls (default ``n``).
    Writes ``<decoding>/seed<s>/{steered,unsteered}.fasta`` and the control FASTAs under ``out``.
    ``progress``: show the proteins generated so far, their rate and the time left (:mod:`hooks.progress`)."""
    from hooks.progress import progress as progress_display

    from .generate import GenerationConfig, generate
    from .scoring import prosite_to_regex, pseudo_perplexity, score_sequences, write_fasta, compare_rates
    from .steer import check_sae, pilot, steering_interventions

    decodings = dict(decodings or DECODINGS)
    names = list(decodings)
    seeds = [int(s) for s in seeds]
    if not seeds or n < 1:
        raise ValueError("steering needs at least one seed and n >= 1 proteins per arm.")
    n2 = n if n_secondary is None else int(n_secondary)
    nc = n if n_control is None else int(n_control)
    site = check_sae(hm, sae, site)
    rx = prosite_to_regex(pattern)
    out = Path(out)
    head = GenerationConfig(**decodings[names[0]])
    trials = pilot(hm, sae, candidates, n=pilot_n, length=length, seed=pilot_seed, config=head, pattern=pattern,
                   site=site, log=log) if len(candidates) > 1 and pilot_n else [{**c, "rate": None} for c in candidates]
    choice = candidates[pick_pilot(trials)]
    lat, value, win = choice["latent"], float(next(iter(choice["latents"].values()))), choice["window"]
    ivs = steering_interventions(sae, {lat: value}, mode=mode, site=site, window=win)
    F = int(sae.cfg.d_sae)
    pool = np.setdiff1d(np.arange(F), np.asarray([c["latent"] for c in candidates] + list(exclude_random), int))
    rng = np.random.default_rng(pilot_seed + 1)
    settings, examples, quality = {}, [], {}
    ctrl_fix, ctrl_rand = [], []
    fix_ok = bool(nc and win is not None and win[1] - win[0] == 1)  # the fixed-residue control applies
    total = len(seeds) * (2 * n + nc * (fix_ok + bool(len(pool))) + 2 * n2 * (len(names) - 1))
    with progress_display("steering", total, unit="proteins", enabled=bool(progress),
                          console=None if isinstance(progress, bool) else progress) as bar:
        for di, name in enumerate(names):
            per = []
            for s in seeds:
                cfg = replace(GenerationConfig(**decodings[name]), seed=s).validate()
                m = n if di == 0 else n2
                log(f"{name}, seed {s}: {m} steered + {m} unsteered proteins")
                bar.update(description=f"steering: {name}, seed {s}")
                steered = generate(hm, n=m, length=length, interventions=ivs, config=cfg)
                bar.advance(m)
                plain = generate(hm, n=m, length=length, config=cfg)
                bar.advance(m)
                (k1, r1), (k0, r0) = _rate(steered, rx), _rate(plain, rx)
                test = compare_rates(k1, m, k0, m)
                per.append({"seed": s, "n": m, "baseline_rate": r0, "steered_rate": r1, "p_value": test["p_value"]})
                d = out / name / f"seed{s}"
                write_fasta(d / "steered.fasta", steered, [f"steered_{i:04d}" for i in range(m)])
                write_fasta(d / "unsteered.fasta", plain, [f"unsteered_{i:04d}" for i in range(m)])
                if di == 0:
                    if not examples:
                        examples = [q for q in steered if rx.search(q)][:5]
                        sc = {a: score_sequences(q, pattern=pattern)["summary"] for a, q in (("steered", steered),
                                                                                               ("unsteered", plain))}
                        quality = {"tm_rate_steered": sc["steered"]["tm_rate"], "tm_rate_unsteered": sc["unsteered"]["tm_rate"]}
                        if pppl_n:
                            quality["pppl_steered"] = float(np.mean(pseudo_perplexity(hm, steered[:pppl_n])))
                            quality["pppl_unsteered"] = float(np.mean(pseudo_perplexity(hm, plain[:pppl_n])))
                            quality["pppl_n"] = min(pppl_n, m)
                    if fix_ok:
                        cfg_c = replace(cfg, seed=s + 104_729)
                        tmpl, aa = fixed_residue_template(steered, win[0], length)
                        fixed = generate(hm, [tmpl], n=nc, config=cfg_c)
                        bar.advance(nc)
                        ctrl_fix.append({"seed": s, "amino_acid": aa, "n": nc, "motifs": _rate(fixed, rx)[0]})
                        write_fasta(out / "controls" / f"fixed_residue_seed{s}.fasta", fixed,
                                    [f"fixed_{aa}{win[0]}_{i:04d}" for i in range(nc)])
                    if nc and len(pool):
                        r_lat = int(rng.choice(pool))
                        r_ivs = steering_interventions(sae, {r_lat: value}, mode=mode, site=site, window=win)
                        rand = generate(hm, n=nc, length=length, interventions=r_ivs, config=replace(cfg, seed=s + 104_729))
                        bar.advance(nc)
                        ctrl_rand.append({"seed": s, "latent": r_lat, "n": nc, "motifs": _rate(rand, rx)[0]})
                        write_fasta(out / "controls" / f"random_latent_seed{s}.fasta", rand,
                                    [f"random_latent{r_lat}_{i:04d}" for i in range(nc)])
            settings[name] = {"generation": decodings[name], **_summ(per)}
    controls = {}
    head_rows = settings[names[0]]["per_seed"]
    k_st = int(round(sum(r["steered_rate"] * r["n"] for r in head_rows)))
    n_st = sum(r["n"] for r in head_rows)
    for key, rows, what in (("fixed_residue", ctrl_fix, "no SAE; the clamped residue fixed to the steered proteins' "
                             "most common amino acid there"),
                            ("random_latents", ctrl_rand, "a random latent clamped to the same value at the same "
                             "residue")):
        if rows:
            k, m = sum(r["motifs"] for r in rows), sum(r["n"] for r in rows)
            rates = [r["motifs"] / r["n"] for r in rows]
            vs = compare_rates(k_st, n_st, k, m)
            controls[key] = {"what": what, "per_seed": rows, "rate": k / m, "n": m,
                             "rate_range": [float(min(rates)), float(max(rates))],
                             "steered_pooled_rate": k_st / n_st, "p_steered_greater": vs["p_value"]}
    h = settings[names[0]]
    return {"latent": lat, "rank": choice["rank"], "value": value, "clamp_multiple": choice["clamp_multiple"],
            "mode": mode, "window": list(win) if win else None, "generation": decodings[names[0]],
            "headline_decoding": names[0], "pilot": [{k: v for k, v in t.items() if k != "latents"} for t in trials],
            "pilot_n": pilot_n, "pilot_seed": pilot_seed, "seeds": seeds, "n": n, "n_secondary": n2,
            "n_control": nc, "length": length, "pattern": pattern,
            **{k: h[k] for k in ("per_seed", "median_steered_rate", "median_baseline_rate", "steered_rate_range",
                                 "baseline_rate_range", "median_p_value", "n_seeds", "n_seeds_p_below_0.01")},
            "decodings": settings, "controls": controls, **quality, "examples": examples}
