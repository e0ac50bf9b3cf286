#!/usr/bin/env python
"""Time ``saes.dashboard`` at the issue's scale: 4,096 latents × 100k tokens on CPU, one torch thread.

    PYTHONPATH=. python bench/bench_dashboard.py                       # ≈ a few minutes
    PYTHONPATH=. python bench/bench_dashboard.py --tokens 20000 --latents 1024   # quick

Model: an ESM-2 8M-sized ``EsmForMaskedLM`` from its config (6 layers, d 320, 20 heads; random
weights, no downloads: the forward costs the same as the trained model's). Data: real proteins
(TMbed ``cv_00_a.fasta`` in ``$INTERP_DATA`` or ``../shared/data``; length <= 1000) taken in
file order until ``--tokens`` residues, with their TMbed annotation tracks (so the annotation
F1 is part of the timing). SAE: sae-lens TopK, ``--latents`` latents, k 32, random init with ``b_dec`` set to the
mean activation (so nearly every latent fires and gets a page), at ``resid_post.3``. Phases are timed separately: the one batched pass (model forward stopped
after the site + SAE encode + keeping non-zeros), the summaries, the annotation F1, logit
effects, and writing the site (index + one page and one JSON per live latent). Peak RSS is
``ru_maxrss``. Results go to ``bench/RESULTS_dashboard.md`` with ``--out``.
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np
import torch


def data_dir() -> Path:
    env = os.environ.get("INTERP_DATA")
    for p in ([Path(env)] if env else []) + [Path(__file__).resolve().parents[1] / ".." / "shared" / "data",
                                              Path("/work/shared/data")]:
        if (p / "tmbed").exists():
            return p
    raise SystemExit("TMbed data not found: set INTERP_DATA to the folder holding tmbed/")


def esm_model(tmp: Path):
    import transformers as T

    import hooks

    vocab = ["<cls>", "<pad>", "<eos>", "<unk>", *"LAGVSERTIDPKQNFYMHWCXBUZO.-", "<null_1>", "<mask>"]
    (tmp / "vocab.txt").write_text("\n".join(vocab) + "\n")
    cfg = T.EsmConfig(vocab_size=33, hidden_size=320, num_hidden_layers=6, num_attention_heads=20,
                      intermediate_size=1280, max_position_embeddings=1026, position_embedding_type="rotary",
                      mask_token_id=32, pad_token_id=1, token_dropout=False, emb_layer_norm_before=False)
    torch.manual_seed(0)
    return hooks.wrap(T.EsmForMaskedLM(cfg).eval(), T.EsmTokenizer(str(tmp / "vocab.txt")))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=100_000)
    ap.add_argument("--latents", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--site-dir", type=Path, default=Path("/tmp/bench_dashboard_site"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    import tempfile

    import saes
    from saes.dashboard import amino_acid_ids
    from saes.dashboard.annotations import align, best_f1
    from saes.dashboard.gather import gather
    from saes.dashboard.site import SiteData, Vocab, write_site
    from saes.dashboard.stats import logit_effects, summarize
    from steering.protein.data import read_records
    from steering.protein.schema import residue_masks

    recs, n = [], 0
    for r in read_records(data_dir() / "tmbed" / "cv_00_a.fasta", "tmbed"):
        if len(r.sequence) > 1000:
            continue
        recs.append(r)
        n += len(r.sequence)
        if n >= a.tokens:
            break
    seqs = [r.sequence for r in recs]
    masks = [residue_masks(r, ("TRANSMEM", "SIGNAL", "TMBED_1", "TMBED_2")) for r in recs]
    ann = {t: [m[t] for m in masks] for t in ("TRANSMEM", "SIGNAL", "TMBED_1", "TMBED_2")}
    tmp = Path(tempfile.mkdtemp())
    model = esm_model(tmp)
    sae = saes.make_training_sae(saes.TrainConfig(arch="topk", latents=a.latents, k=32, seed=0), 320)
    # b_dec = mean activation (SAE training initialises it so too): centred inputs spread a random
    # TopK encoder's winners over (nearly) all latents, so the site writes a page for (nearly) every one
    from saes.activations import collect

    x, _ = collect(model, seqs[:16], "resid_post.3", "auto")
    with torch.no_grad():
        sae.b_dec.copy_(x.mean(0))
    t, cpu = {}, {}
    t0, c0 = time.perf_counter(), time.process_time()
    acts = gather(model, sae, seqs, site="resid_post.3", positions="auto", model_batch_size=a.batch, progress=False)
    t["one batched pass (forward to the site + SAE encode)"] = time.perf_counter() - t0
    cpu["one batched pass (forward to the site + SAE encode)"] = time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    summ = summarize(acts)
    t["summaries (top-k, bands, histograms)"] = time.perf_counter() - t0
    cpu["summaries (top-k, bands, histograms)"] = time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    labels = align(ann, acts)
    best = best_f1(acts, labels, list(ann), summ.max)
    t["annotation F1 (4 tracks)"] = time.perf_counter() - t0
    cpu["annotation F1 (4 tracks)"] = time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    lg = logit_effects(sae, model, k=10, vocab_ids=amino_acid_ids(model))
    t["logit effects"] = time.perf_counter() - t0
    cpu["logit effects"] = time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    site = SiteData(acts, summ, Vocab(model.tokenizer), logits=lg, best=best, labels=labels, tracks=list(ann),
                    info={"title": "bench"})
    write_site(site, a.site_dir, progress=False)
    t["write site (index + pages + JSON)"] = time.perf_counter() - t0
    cpu["write site (index + pages + JSON)"] = time.process_time() - c0
    total, total_cpu = sum(t.values()), sum(cpu.values())
    size = sum(f.stat().st_size for f in a.site_dir.rglob("*") if f.is_file())
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    lines = [f"- {k}: {v:.1f} s wall, {cpu[k]:.1f} s CPU" for k, v in t.items()]
    report = (f"{a.latents} latents × {acts.n_rows:,} residues ({len(seqs)} TMbed proteins), ESM-2 8M-sized, "
              f"resid_post.3, TopK k=32, 1 torch thread\n\n" + "\n".join(lines) +
              f"\n- **total: {total:.1f} s wall, {total_cpu:.1f} s CPU** ({acts.n_rows / total:,.0f} tokens/s wall, "
              f"{acts.n_rows / total_cpu:,.0f} per CPU-second)\n"
              f"- non-zeros kept: {acts.meta['nonzeros']:,} ({acts.meta['nonzeros'] * 12 / 2**20:.0f} MiB); "
              f"peak RSS of the process {rss:.0f} MiB\n- site: {len(site.pages)} latent pages, "
              f"{size / 2**20:.0f} MiB on disk ({size / max(len(site.pages), 1) / 2**10:.0f} KiB per page incl. its JSON)\n")
    env = (f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared: load average "
           f"{os.getloadavg()[0]:.1f} at the end); Python {platform.python_version()}, torch {torch.__version__}, "
           f"numpy {np.__version__}")
    print(report + "\n" + env)
    if a.out:
        a.out.write_text(a.out.read_text() + "\n" + report + "\n" + env + "\n" if a.out.exists() else report + env)


if __name__ == "__main__":
    main()
