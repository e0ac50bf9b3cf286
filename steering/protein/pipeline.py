"""The protein pipeline: SAE → latent ↔ annotation statistics (vs chance) → steered generation → report.

    from steering.protein.pipeline import run_protein_pipeline
    summary = run_protein_pipeline("toy", None, "runs/protein")    # shipped toy model + toy world
    summary = run_protein_pipeline(hm, "proteins.parquet", "runs/esm", layer=4,
                                   sae_kwargs={"latents": 4096, "k": 32, "tokens": 2_000_000})
    summary["annotations"]["ZN_FING"]    # {"latent": 17, "f1": 0.99, "chance_f1": 0.2, "beats_chance": True, ...}
    summary["residue_coverage"]          # fraction of test residues scored (1.0: sliding windows)
    summary["steering"]["per_seed"]      # [{"seed", "baseline_rate", "steered_rate", "p_value", "n"}, ...]
    summary["steering"]["median_steered_rate"]

Steps (Simon & Zou 2024, InterPLM; Garcia & Ansuini 2025):

1. proteins are split (seeded, by protein) into SAE-training / validation / test parts;
2. a TopK SAE (``saes.train_sae``, residues only) is trained on ``resid_post.<layer>`` — by
   default the middle layer ``n_layers // 2``; proteins longer than the model's context are cut
   into sliding windows (:mod:`.windows`) for training and scoring alike, so every residue is
   embedded within the context (``residue_coverage`` in the summary);
3. every latent is scored against every annotation track with positives in both evaluation
   parts (:mod:`saes.annotation_stats`: raw-threshold counts, InterPLM precision/recall/F1 at
   max-normalised thresholds, Fisher's exact test + BH FDR); thresholds are normalised by each
   latent's maximum on the validation part; the best (latent, threshold) per track is chosen on
   validation and reported on test, beside its chance level (:mod:`.chance`: an always-on
   latent, and the best latent after shuffling residues); ``beats_chance`` flags the rest;
4. steering with ``steer_track`` (the C2H2 zinc finger): candidates are its ``steer_candidates``
   best latents by validation F1, each clamped (SAE splice, error term kept) to
   ``clamp_multiples`` × its largest activation on validation residues of the track, at one
   residue — where the latent usually peaks inside a domain (modal peak offset on validation)
   for a domain centred in the protein (``steer_window="auto"``; ``None``: every residue;
   ``(start, end)``: a window). A pilot (seed ``seed + 7919``) picks one setting; the
   confirmatory runs (:mod:`.steer_arm`) repeat it over ``n_seeds`` seeds and two decoding
   settings with two controls, and report medians and ranges; the data's own PS00028 rate is
   reported beside them;
5. ``report.md`` (+ ``figures/``), ``summary.json``, ``stats/top_latents.{parquet,csv}``,
   ``steering/<decoding>/seed<s>/{steered,unsteered}.fasta`` and ``steering/controls/`` are
   written atomically into ``out_dir``.

Design notes (toy model of 4 layers, d=64; SAE at ``resid_post.2``): the top zinc-finger latents
each fire at one skeleton residue (the first His, or a Cys) and all reach InterPLM F1 ≈ 1, but
they steer very differently. Clamped at *every* residue they make the model write that residue
everywhere and almost never a full motif. Clamped at the one residue where they fire inside a
centred finger, some latents make the model write the whole Cys/Cys/hydrophobic/His skeleton
around it, others — with the same F1 — never do. Hence the pilot over latents and values. The
effect depends on decoding: at confidence order and temperature 0.5 (the headline setting) the
skeleton gets completed; at random order and temperature 1 it mostly does not. A single
seed's steered rate varies widely (0.06-0.44 over 8 pipeline seeds), so the summary is the
median over seeds; measured numbers are in ``bench/RESULTS_protein_demo.md``.
"""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .errors import ProteinDataError
from .latents import encode, latent_stream  # noqa: F401 - encode: also public here
from .steer_arm import auto_window, data_motif_rate, latent_layout, steer_candidates_of  # noqa: F401

DEFAULT_SAE = {"arch": "topk", "k": 16, "latents": None, "tokens": 200_000, "batch_size": 1024, "lr": 2e-3,
               "model_batch_size": 64}
TOY_WORLD_SEED = 2_000_003     # disjoint from the toy model's training (seed) and evaluation (seed + 1,000,003) worlds


def load_inputs(model, dataset, *, n_proteins: int, seed: int):
    """(HookedModel, Dataset): ``"toy"``/None → shipped toy model; None dataset → a fresh toy world."""
    import hooks

    from .toy_model import load_toy_model
    from .toy_world import make_toy_world

    if model is None or (isinstance(model, str) and model == "toy"):
        hm = load_toy_model()
    elif isinstance(model, (str, Path)):
        hm = load_toy_model(model) if (Path(model) / "vocab.txt").exists() else hooks.load(str(model))
    else:
        hm = model
    if dataset is None:
        ds = make_toy_world(n_proteins, seed=TOY_WORLD_SEED + seed)
    elif isinstance(dataset, (str, Path)):
        from .data import read_proteins
        from .schema import load_dataset_file

        ds = load_dataset_file(dataset) if str(dataset).endswith(".parquet") else read_proteins(dataset)
    else:
        ds = dataset
    return hm, ds


def split_indices(n: int, fractions, seed: int) -> tuple:
    """Seeded permutation of ``range(n)`` cut into (train, val, test) by ``fractions``."""
    f = np.asarray(fractions, float)
    if f.shape != (3,) or (f <= 0).any():
        raise ProteinDataError(f"splits must be three positive fractions (train, val, test), got {fractions}.")
    perm = np.random.default_rng(seed).permutation(n)
    cut = np.floor(np.cumsum(f / f.sum()) * n).astype(int)
    parts = perm[:cut[0]], perm[cut[0]:cut[1]], perm[cut[1]:]
    if min(len(p) for p in parts) < 1:
        raise ProteinDataError(f"{n} proteins are too few to split into train/val/test by {fractions}.")
    return tuple(np.sort(p) for p in parts)


@torch.no_grad()
def collect(hm, ds, site: str, tracks: list, *, batch_size: int = 64, max_length: Optional[int] = None,
            run_tracks=(), stride: Optional[int] = None) -> list:
    """Residue activations at ``site`` with labels and domains, one dict per batch of proteins (CPU).

    Every residue is embedded: a protein longer than ``max_length - 2`` residues is run in
    sliding windows (:mod:`.windows`, ``stride`` default half a window) and each residue is read
    from the window where it is most central, so rows are all residues of all proteins in order.
    Domains are the dataset's feature spans; for ``run_tracks`` (tracks with no feature spans,
    e.g. TMbed classes) they are the maximal runs of the track's mask."""
    from hooks import Cache
    from saes.annotation_stats import DomainIndex, runs_as_domains

    from .align import encode_sequences
    from .errors import AlignmentError
    from .windows import owned_residues, window_spans

    width = None if max_length is None else int(max_length) - 2
    out = []
    for i in range(0, len(ds), batch_size):
        rows = ds[i:i + batch_size]
        seqs = list(rows["sequence"])
        n_res = [len(s) for s in seqs]
        starts = np.concatenate([[0], np.cumsum(n_res)[:-1]]).astype(int)
        pieces, place = [], []
        for b, s in enumerate(seqs):
            spans = window_spans(len(s), width, stride) if width else [(0, len(s))]
            for (a, e), (lo, hi) in zip(spans, owned_residues(len(s), spans)):
                pieces.append(s[a:e])
                place.append((b, a, lo, hi))
        x, scored = None, 0
        for j in range(0, len(pieces), batch_size):
            enc = encode_sequences(pieces[j:j + batch_size], max_length=max_length)
            flat = hm.run(enc.inputs, [Cache(site, "residues", layout="flat")]).cache[site].float().cpu()
            if x is None:
                x = torch.zeros(sum(n_res), flat.shape[-1])
            off = np.concatenate([[0], np.cumsum(enc.n_residues)])
            for k, (b, a, lo, hi) in enumerate(place[j:j + batch_size]):
                x[starts[b] + lo:starts[b] + hi] = flat[off[k] + lo - a:off[k] + hi - a]
                scored += hi - lo
        masks = []
        for t in tracks:
            ms = [np.asarray(m, dtype=bool) for m in rows[f"mask_{t}"]]
            for m, L, rid in zip(ms, n_res, rows["id"]):
                if len(m) != L:
                    raise AlignmentError(f"{rid}: mask_{t} covers {len(m)} residues, the sequence has {L}.")
            masks.append(torch.from_numpy(np.concatenate(ms)))
        labels = torch.stack(masks, 1)
        d_rows, d_dom, d_con = [], [], []
        for b, feats in enumerate(rows["features"]):
            for f in feats:
                if f["type"] in tracks:
                    a, e = max(0, f["start"]), min(f["end"], n_res[b])
                    if e > a:
                        d_rows.append(np.arange(starts[b] + a, starts[b] + e))
                        d_dom.append(np.full(e - a, len(d_con)))
                        d_con.append(tracks.index(f["type"]))
        if run_tracks:
            idx = torch.tensor([tracks.index(t) for t in run_tracks])
            prot = torch.repeat_interleave(torch.arange(len(n_res)), torch.tensor(n_res))
            r = runs_as_domains(labels[:, idx], prot)
            d_rows.append(r.rows.numpy())
            d_dom.append(r.domain.numpy() + len(d_con))
            d_con += idx[r.concept].tolist()
        dom = DomainIndex(torch.from_numpy(np.concatenate(d_rows) if d_rows else np.zeros(0, np.int64)).long(),
                          torch.from_numpy(np.concatenate(d_dom) if d_dom else np.zeros(0, np.int64)).long(),
                          torch.tensor(d_con, dtype=torch.long))
        out.append({"x": x, "labels": labels, "domains": dom, "starts": starts, "n_res": n_res,
                    "sequences": seqs, "ids": list(rows["id"]), "features": list(rows["features"]),
                    "n_windows": len(pieces), "scored": scored})
    return out


def coverage(cache: list) -> dict:
    """Residues scored (each from one window) over residues in the split, and windows used."""
    total = sum(sum(c["n_res"]) for c in cache)
    scored = sum(c["scored"] for c in cache)
    return {"residues": int(total), "scored": int(scored), "fraction": scored / total if total else 0.0,
            "proteins": int(sum(len(c["n_res"]) for c in cache)), "windows": int(sum(c["n_windows"] for c in cache))}


def _steer(hm, sae, site, table, cache_va, track, out, *, n_steer, length, multiples, candidates, pilot_n, window,
           mode, decodings, steer_seeds, n_secondary, n_control, pattern, pppl_n, seed, log, progress=False) -> dict:
    """Pilot (seed + 7919) over the track's top latents × clamp multiples, then the confirmatory
    runs (:func:`.steer_arm.steering_arm`) over ``steer_seeds`` × ``decodings`` with controls."""
    from .steer_arm import steering_arm

    cands, layouts = steer_candidates_of(sae, table, cache_va, track, length=length, multiples=multiples,
                                         candidates=candidates, window=window, mode=mode)
    st = steering_arm(hm, sae, site, cands, out=out / "steering", seeds=steer_seeds, n=n_steer, length=length,
                      pilot_n=pilot_n, pilot_seed=seed + 7919, decodings=decodings, n_secondary=n_secondary,
                      n_control=n_control, mode=mode, pattern=pattern, pppl_n=pppl_n, log=log, progress=progress)
    return {"track": track, "layout": layouts[st["latent"]], **st}


def run_protein_pipeline(model=None, dataset=None, out_dir="runs/protein", *, layer: Optional[int] = None,
                         sae_kwargs: Optional[dict] = None, n_steer: int = 100, seed: int = 0,
                         n_proteins: int = 3000, splits=(0.6, 0.2, 0.2), tracks=None, min_positives: int = 20,
                         steer_track: str = "ZN_FING", steer_length: int = 60, clamp_multiples=(3.0, 10.0),
                         steer_candidates: int = 5, pilot_n: int = 32, steer_window="auto", steer_mode: str = "clamp",
                         steer_seeds=None, n_seeds: int = 5, decodings: Optional[dict] = None,
                         n_secondary: Optional[int] = 50, n_control: Optional[int] = 50,
                         window_stride: Optional[int] = None, pattern: Optional[str] = None, pppl_n: int = 32,
                         batch_size: int = 64, top: int = 5, threads: Optional[int] = 1, log=print,
                         progress=False) -> dict:
    """Run the whole protein pipeline and write its outputs to ``out_dir``; returns ``summary.json``'s dict.

    ``model``: a ``hooks.HookedModel``, a path / HF id, or ``"toy"``/None (the shipped toy model);
    ``dataset``: a protein Dataset, a file (parquet / FASTA / TMbed / UniProt), or None (a fresh
    ``n_proteins`` toy world). ``sae_kwargs`` override :data:`DEFAULT_SAE` (``saes.train_sae``
    settings; ``latents`` defaults to 8 × d_model). Steering: ``steer_seeds`` (default ``seed,
    seed+1, ..., seed+n_seeds-1``) × ``decodings`` (default :data:`.steer_arm.DECODINGS`, the
    first is the headline) with ``n_steer`` proteins per arm and seed for the headline,
    ``n_secondary`` for the other decodings and ``n_control`` per control (None: ``n_steer``).
    ``window_stride``: residues between sliding windows for proteins longer than the model's
    context (default half a window). ``pppl_n``: proteins per arm scored by pseudo-perplexity
    (first seed). ``threads``: torch CPU threads while the pipeline runs (restored after; None:
    leave as is). The default 1 is deliberate: on a shared 2-core machine the SAE's small steps
    ran 4× slower with 2 threads (1.7 s vs 6.3 s for 97 steps). ``progress``: show the stages, the
    SAE's training tokens and the proteins generated as they go, with rate and time left
    (:mod:`hooks.progress`; a bar on a terminal, plain lines elsewhere), or a rich Console to draw on.
    An SAE already finished in ``out_dir/sae`` with the same data and settings is reused (and
    ``log`` says so); an interrupted one resumes from its newest checkpoint.
    """
    from hooks.progress import progress as progress_display

    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    if steer_seeds is None:
        steer_seeds = [seed + i for i in range(int(n_seeds))]
    stages = ["data", "sae", "statistics", "chance", "steering", "report"]
    bar = progress_display("protein pipeline", len(stages), unit="stages", enabled=bool(progress),
                           console=None if isinstance(progress, bool) else progress)
    try:
        with bar:
            return _run(model, dataset, out_dir, layer=layer, sae_kwargs=sae_kwargs, n_steer=n_steer, seed=seed,
                        n_proteins=n_proteins, splits=splits, tracks=tracks, min_positives=min_positives,
                        steer_track=steer_track, steer_length=steer_length, clamp_multiples=clamp_multiples,
                        steer_candidates=steer_candidates, pilot_n=pilot_n, steer_window=steer_window,
                        steer_mode=steer_mode, steer_seeds=list(steer_seeds), decodings=decodings,
                        n_secondary=n_secondary, n_control=n_control, window_stride=window_stride, pattern=pattern,
                        pppl_n=pppl_n, batch_size=batch_size, top=top, log=log, progress=progress, bar=bar)
    finally:
        torch.set_num_threads(old_threads)


def _run(model, dataset, out_dir, *, layer, sae_kwargs, n_steer, seed, n_proteins, splits, tracks, min_positives,
         steer_track, steer_length, clamp_multiples, steer_candidates, pilot_n, steer_window, steer_mode, steer_seeds,
         decodings, n_secondary, n_control, window_stride, pattern, pppl_n, batch_size, top, log, progress,
         bar) -> dict:
    import saes
    from saes.annotation_stats import annotation_stats, best_pairs

    from .schema import track_names
    from .scoring import PS00028

    t0 = time.time()
    out = Path(out_dir)
    timings = {}

    def lap(name, t):
        timings[name] = round(time.time() - t, 2)
        log(f"[{time.time() - t0:6.1f}s] {name} done in {timings[name]:.1f}s")
        bar.advance(1, description=f"protein pipeline: {name} done")

    t = time.time()
    hm, ds = load_inputs(model, dataset, n_proteins=n_proteins, seed=seed)
    layer = hm.n_layers // 2 if layer is None else int(layer)
    if not 0 <= layer < hm.n_layers:
        raise ProteinDataError(f"layer must be in 0..{hm.n_layers - 1}, got {layer}.")
    site = f"resid_post.{layer}"
    tr_idx, va_idx, te_idx = split_indices(len(ds), splits, seed)
    ds_tr, ds_va, ds_te = ds.select(tr_idx), ds.select(va_idx), ds.select(te_idx)
    if tracks is None:
        cand = track_names(ds)
        cnt = {t_: (sum(int(np.sum(m)) for m in ds_va[f"mask_{t_}"]), sum(int(np.sum(m)) for m in ds_te[f"mask_{t_}"]))
               for t_ in cand}
        tracks = [t_ for t_ in cand if min(cnt[t_]) >= min_positives]
    tracks = list(tracks)
    if not tracks:
        raise ProteinDataError(f"No annotation track has >= {min_positives} positive residues in both evaluation "
                               "parts; lower min_positives or add annotated proteins.")
    lap("data", t)

    t = time.time()
    d_model = int(re.findall(r"\d+", str(hm.sites[site]))[-1])      # HF and fair-esm alike
    model_cfg = getattr(hm.model, "config", None)
    kw = {**DEFAULT_SAE, **(sae_kwargs or {})}
    kw["latents"] = kw["latents"] or 8 * d_model
    if kw.get("buffer_size") is None:  # the store's 16 batches, or one pass over a small training part
        kw["buffer_size"] = max(kw["batch_size"], min(16 * kw["batch_size"], int(np.sum(ds_tr["length"]))))
    max_len = getattr(model_cfg, "max_position_embeddings", None)
    train_seqs = list(ds_tr["sequence"])
    if max_len is not None:
        from .windows import window_sequences

        train_seqs = window_sequences(train_seqs, int(max_len) - 2, window_stride)
    res = saes.train_sae(hm, train_seqs, site, positions="residues", out=out / "sae", seed=seed,
                         progress=progress, **kw)
    if res.reused and not progress:  # with progress on, saes.train_sae has said it (once) itself
        log(f"reusing the finished SAE in {out / 'sae'}: an earlier run trained it on the same data and settings "
            f"(to train it again: delete {out / 'sae'})")
    elif res.resumed_from and not progress:
        log(f"SAE training resumed from step {res.resumed_from} of {res.summary['steps']} (checkpoint in {out / 'sae'})")
    sae = res.sae
    lap("sae", t)

    t = time.time()
    feature_types = {f["type"] for fs in ds["features"] for f in fs}
    runs = [t_ for t_ in tracks if t_ not in feature_types]
    cache_va = collect(hm, ds_va, site, tracks, batch_size=batch_size, max_length=max_len, run_tracks=runs,
                       stride=window_stride)
    cache_te = collect(hm, ds_te, site, tracks, batch_size=batch_size, max_length=max_len, run_tracks=runs,
                       stride=window_stride)
    cov = {"val": coverage(cache_va), "test": coverage(cache_te)}
    F = int(sae.cfg.d_sae)
    val = annotation_stats(latent_stream(sae, cache_va), tracks, F)
    test = annotation_stats(latent_stream(sae, cache_te), tracks, F, latent_max=val.latent_max)
    table = best_pairs(val, test, top=top)
    best = table[table["rank"] == 1].set_index("concept")
    annotations = {c: {"latent": int(r.latent), "f1": float(r.test_f1), "fdr_q": float(r.test_fdr_q),
                       "threshold": float(r.threshold), "precision": float(r.test_precision),
                       "recall_domain": float(r.test_recall_domain), "recall_residue": float(r.test_recall_residue),
                       "f1_residue": float(r.test_f1_residue), "log10_p": float(r.test_log10_p),
                       "val_f1": float(r.val_f1)} for c, r in best.iterrows()}
    lap("statistics", t)
    t = time.time()
    from .chance import beats_chance, chance_f1

    chance = chance_f1(sae, cache_va, cache_te, tracks, test, seed=seed + 31)
    for c, a in annotations.items():
        a.update({"chance_f1": chance[c]["chance_f1"], "chance_always_on_f1": chance[c]["always_on"],
                  "chance_random_latent_f1": chance[c]["random_latent"],
                  "beats_chance": beats_chance(a["f1"], chance[c])})
    lap("chance", t)

    steering = None
    if n_steer and steer_track in tracks:
        t = time.time()
        steering = _steer(hm, sae, site, table, cache_va, steer_track, out, n_steer=n_steer, length=steer_length,
                          multiples=clamp_multiples, candidates=steer_candidates, pilot_n=pilot_n,
                          window=steer_window, mode=steer_mode, decodings=decodings, steer_seeds=steer_seeds,
                          n_secondary=n_secondary, n_control=n_control, pattern=pattern or PS00028,
                          pppl_n=pppl_n, seed=seed, log=log, progress=progress)
        steering["data_motif_rate"] = data_motif_rate(list(ds["sequence"]), pattern or PS00028)
        lap("steering", t)
    else:
        if n_steer:
            log(f"no {steer_track} annotations in this dataset: steering skipped")
        bar.advance(1, description="protein pipeline: steering skipped")

    t = time.time()
    from .pipeline_report import write_report

    name = getattr(model_cfg, "_name_or_path", "") or (str(model) if isinstance(model, (str, Path)) else "")
    summary = {"model": name or type(hm.model).__name__, "site": site, "layer": layer,
               "proteins": {"train": len(tr_idx), "val": len(va_idx), "test": len(te_idx)},
               "tokens": {"val": val.n_tokens, "test": test.n_tokens}, "tracks": tracks,
               "sae": {k: v for k, v in kw.items()} | {"d_in": d_model, "path": str(out / "sae"),
                                                    "final": (res.summary or {}).get("final")},
               "annotations": annotations, "steering": steering, "timings": timings, "seed": seed,
               "residue_coverage": cov["test"]["fraction"], "coverage": cov,
               "context_residues": None if max_len is None else int(max_len) - 2}
    from .pipeline_dashboard import write_latent_pages

    shown = [a["latent"] for a in annotations.values()] + ([steering["latent"]] if steering and "latent" in steering else [])
    summary["latent_pages"] = write_latent_pages(out, hm, sae, ds_te, tracks, shown,
                                                 context=summary["context_residues"], log=log)
    write_report(out, summary, val, test, table, sae, cache_te, tracks)
    lap("report", t)
    summary["seconds"] = time.time() - t0
    from hooks.io import write_json_atomic

    write_json_atomic(out / "summary.json", summary)
    log(f"wrote {out / 'report.md'} and {out / 'summary.json'} ({summary['seconds']:.0f}s)")
    return summary
