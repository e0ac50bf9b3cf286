"""run_protein_pipeline end to end at reduced size: the summary's schema and its internal consistency
(not the acceptance thresholds, which need the real toy model)."""
import json

import numpy as np
import pandas as pd
import pytest

from .reference_stats import reference_stats
from .test_steer import read_fasta


@pytest.fixture(scope="module")
def run(tiny_model, tmp_path_factory):
    from steering.protein.pipeline import run_protein_pipeline
    from steering.protein.toy_world import make_toy_world

    from .conftest import threads

    ds = make_toy_world(160, seed=11)
    out = tmp_path_factory.mktemp("pipeline")
    with threads(1):
        summary = run_protein_pipeline(tiny_model, ds, out, sae_kwargs={"latents": 64, "k": 4, "tokens": 6144,
                                                                        "batch_size": 512, "lr": 3e-3},
                                       n_steer=6, steer_length=30, pppl_n=2, pilot_n=6, batch_size=50, seed=0,
                                       n_seeds=2, n_secondary=4, n_control=3, log=lambda *a: None)
    return summary, out, ds


def test_summary_schema(run):
    summary, out, _ = run
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary, default=float))
    assert set(summary["annotations"]) == {"ZN_FING", "TRANSMEM", "COILED"}
    for a in summary["annotations"].values():
        assert isinstance(a["latent"], int) and 0 <= a["latent"] < 64
        assert 0.0 <= a["f1"] <= 1.0 and 0.0 <= a["fdr_q"] <= 1.0
    st = summary["steering"]
    assert st["n"] == 6 and isinstance(st["latent"], int) and st["seeds"] == [0, 1]
    assert [p["seed"] for p in st["per_seed"]] == [0, 1]
    for p in st["per_seed"]:
        assert set(p) >= {"seed", "baseline_rate", "steered_rate", "p_value", "n"} and 0 <= p["p_value"] <= 1
    assert st["median_steered_rate"] == pytest.approx(np.median([p["steered_rate"] for p in st["per_seed"]]))
    assert st["median_baseline_rate"] == pytest.approx(np.median([p["baseline_rate"] for p in st["per_seed"]]))
    assert list(st["decodings"]) == ["confidence_t0.5", "random_t1"]
    assert [p["n"] for p in st["decodings"]["random_t1"]["per_seed"]] == [4, 4]
    assert set(st["controls"]) == {"fixed_residue", "random_latents"}
    assert all(c["n"] == 6 for c in st["controls"].values())          # 3 proteins x 2 seeds
    pooled = sum(p["steered_rate"] * p["n"] for p in st["per_seed"]) / sum(p["n"] for p in st["per_seed"])
    assert all(c["steered_pooled_rate"] == pytest.approx(pooled) and 0 <= c["p_steered_greater"] <= 1
               for c in st["controls"].values())
    assert 0.0 <= st["data_motif_rate"]["rate"] <= 1.0 and st["data_motif_rate"]["n"] == 160
    assert summary["residue_coverage"] == 1.0
    for a in summary["annotations"].values():
        assert a["chance_f1"] == max(a["chance_always_on_f1"], a["chance_random_latent_f1"])
        assert a["beats_chance"] == (a["f1"] > a["chance_f1"])
    assert isinstance(summary["seconds"], float) and summary["seconds"] > 0
    for f in ("report.md", "figures/heatmap.png", "figures/profiles.png", "stats/top_latents.csv",
              "stats/top_latents.parquet", "steering/confidence_t0.5/seed0/steered.fasta",
              "steering/random_t1/seed1/unsteered.fasta", "steering/controls/random_latent_seed1.fasta",
              "steering/controls/fixed_residue_seed0.fasta", "sae/cfg.json"):
        assert (out / f).exists(), f
    report = (out / "report.md").read_text()
    assert "## Steering" in report and "median over 2 seeds" in report and "Residue coverage: " in report
    assert "chance: always on" in report and "random_t1" in report and "fixed_residue" in report


def test_statistics_are_internally_consistent(run, tiny_model):
    """Table rank 1 = summary; F1 = 2PR/(P+R); q >= p; and the chosen pairs recomputed from scratch
    with the per-latent reference on the same split give the same numbers."""
    import saes

    from steering.protein.pipeline import collect, encode, split_indices

    summary, out, ds = run
    table = pd.read_parquet(out / "stats" / "top_latents.parquet")
    csv = pd.read_csv(out / "stats" / "top_latents.csv")
    assert csv.latent.tolist() == table.latent.tolist() and np.allclose(csv.test_f1, table.test_f1)
    best = table[table["rank"] == 1].set_index("concept")
    p, r = table.test_precision, table.test_recall_domain
    assert np.allclose(table.test_f1, np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-300), 0))
    assert (table.test_fdr_q >= table.test_fisher_p - 1e-15).all()
    assert (table.groupby("concept").val_f1.apply(lambda v: (np.diff(v.values) <= 1e-12).all())).all()
    sae = saes.load_sae(out / "sae")
    tracks = summary["tracks"]
    _, va, te = split_indices(len(ds), (0.6, 0.2, 0.2), 0)
    caches = [collect(tiny_model, ds.select(ix), summary["site"], tracks, batch_size=50) for ix in (va, te)]
    acts = [np.concatenate([encode(sae, c["x"]).numpy() for c in cache]) for cache in caches]
    labels = np.concatenate([c["labels"].numpy() for c in caches[1]])
    offs = np.cumsum([0] + [len(c["labels"]) for c in caches[1]])
    doms = [[] for _ in tracks]
    for o, c in zip(offs, caches[1]):
        d = c["domains"]
        for i, con in enumerate(d.concept.tolist()):
            doms[con].append(o + d.rows[d.domain == i].numpy())
    lat = [summary["annotations"][t]["latent"] for t in tracks]
    ref = reference_stats(acts[1], labels, doms, latents=lat, latent_max=acts[0].max(0), fdr=False)
    for i, t in enumerate(tracks):
        a, row = summary["annotations"][t], best.loc[t]
        j = list(np.asarray([0.0, 0.15, 0.5, 0.6, 0.8])).index(a["threshold"])
        assert a["latent"] == int(row.latent) and a["f1"] == pytest.approx(row.test_f1)
        assert ref["f1"][i, i, j] == pytest.approx(a["f1"], abs=1e-12)
        assert ref["precision"][i, i, j] == pytest.approx(a["precision"], abs=1e-12)
        assert ref["recall_domain"][i, i, j] == pytest.approx(a["recall_domain"], abs=1e-12)
        assert ref["fisher_p"][i, i] == pytest.approx(row.test_fisher_p, rel=1e-9)


def test_steering_numbers_match_the_fasta_files(run):
    from steering.protein.scoring import PS00028, compare_rates, find_motif

    summary, out, _ = run
    st = summary["steering"]
    assert st["latent"] == summary["annotations"]["ZN_FING"]["latent"] and st["track"] == "ZN_FING"
    for dec, d in st["decodings"].items():
        for p in d["per_seed"]:
            k = {}
            for arm in ("steered", "unsteered"):
                seqs = [s for _, s in read_fasta(out / "steering" / dec / f"seed{p['seed']}" / f"{arm}.fasta")]
                assert len(seqs) == p["n"] and all(len(s) == 30 for s in seqs)
                k[arm] = sum(bool(find_motif(s, PS00028)) for s in seqs)
            assert p["steered_rate"] == k["steered"] / p["n"] and p["baseline_rate"] == k["unsteered"] / p["n"]
            assert p["p_value"] == pytest.approx(compare_rates(k["steered"], p["n"], k["unsteered"], p["n"])["p_value"])
    fixed = st["controls"]["fixed_residue"]["per_seed"][0]
    seqs = [s for _, s in read_fasta(out / "steering" / "controls" / "fixed_residue_seed0.fasta")]
    assert all(s[st["window"][0]] == fixed["amino_acid"] for s in seqs)
    assert fixed["motifs"] == sum(bool(find_motif(s, PS00028)) for s in seqs)
    assert st["window"] is not None and st["window"][1] - st["window"][0] == 1
    assert st["value"] == pytest.approx(st["clamp_multiple"] * st["layout"]["positive_max"])


def test_tracks_without_feature_spans_get_runs_as_domains(tiny_model):
    """TMbed classes are masks without feature spans: their domains are the mask's runs."""
    from steering.protein.pipeline import collect
    from steering.protein.schema import Feature, ProteinRecord, to_dataset

    recs = [ProteinRecord("a", "MKTAYIAKQR", features=[Feature("ZN_FING", 1, 4)], tmbed_labels="11HHH22HH2"),
            ProteinRecord("b", "MLLVAG", tmbed_labels="HH1111")]
    ds = to_dataset(recs)
    (c,) = collect(tiny_model, ds, "resid_post.1", ["ZN_FING", "TMBED_H"], run_tracks=["TMBED_H"])
    d = c["domains"]
    got = sorted((int(con), d.rows[d.domain == i].tolist()) for i, con in enumerate(d.concept.tolist()))
    assert got == [(0, [1, 2, 3]), (1, [2, 3, 4]), (1, [7, 8]), (1, [10, 11])]
    assert c["labels"][:, 1].nonzero().squeeze(1).tolist() == [2, 3, 4, 7, 8, 10, 11]


def test_fair_esm_models_work_too():
    """The pieces take any hooked ESM-2: a tiny random fair-esm model (same ESM-2 token ids)."""
    esm = pytest.importorskip("esm")
    import torch

    import hooks
    from steering.protein.generate import generate
    from steering.protein.pipeline import collect
    from steering.protein.scoring import pseudo_perplexity
    from steering.protein.toy_world import make_toy_world

    torch.manual_seed(0)
    alphabet = esm.data.Alphabet.from_architecture("ESM-1b")
    hm = hooks.wrap(esm.model.esm2.ESM2(num_layers=2, embed_dim=32, attention_heads=4, alphabet=alphabet).eval(),
                    alphabet)
    seqs = generate(hm, ["MK____", "M" + "_" * 9], seed=0)
    assert [len(s) for s in seqs] == [6, 10] and seqs[0][:2] == "MK"
    assert np.all(np.isfinite(pseudo_perplexity(hm, seqs)))
    ds = make_toy_world(6, seed=1)
    (c,) = collect(hm, ds, "resid_post.1", ["ZN_FING", "TRANSMEM"])
    assert c["x"].shape == (sum(ds["length"]), 32) and c["labels"].shape == (sum(ds["length"]), 2)


def test_report_links_latent_pages_that_exist(run):
    """The report's latents link to dashboard pages (issue 17); proteins left out are counted."""
    summary, out, _ = run
    lp = summary["latent_pages"]
    assert lp["index"] == "dashboard/index.html" and (out / lp["index"]).exists()
    wanted = {a["latent"] for a in summary["annotations"].values()} | {summary["steering"]["latent"]}
    assert set(lp["latents"]) == wanted
    n_test = summary["proteins"]["test"]
    assert lp["proteins"] + lp["skipped_long"] == n_test
    report = (out / "report.md").read_text()
    for f in wanted:
        page = out / "dashboard" / "latents" / f"{f:06d}.html"
        if f in {a["latent"] for a in summary["annotations"].values()}:  # best latents fire on test proteins
            assert f"]({page.relative_to(out)})" in report and page.exists()


def test_report_prints_underflowed_q_and_p_values_as_below_1e300(run):
    """A q or p below the float minimum is stored as 0.0; the report prints "< 1e-300", not "0.0e+00"."""
    import copy

    from steering.protein.pipeline_report import render

    summary, out, _ = run
    s = copy.deepcopy(summary)
    first = next(iter(s["annotations"]))
    s["annotations"][first]["fdr_q"] = 0.0
    s["steering"]["decodings"][next(iter(s["steering"]["decodings"]))]["per_seed"][0]["p_value"] = 5e-324
    text = render(s, pd.read_parquet(out / "stats" / "top_latents.parquet"))
    row = next(ln for ln in text.splitlines() if ln.startswith(f"| {first} |"))
    assert row.rstrip(" |").endswith("< 1e-300")
    assert text.count("< 1e-300") >= 2 and "0.0e+00" not in text


def test_a_rerun_says_once_that_it_reuses_the_sae(run, tiny_model, tmp_path):
    """`interp demo` run again over its OUT: one line names the SAE reused and where it is (saes.train_sae's),
    not a second vaguer one from the pipeline or the CLI."""
    import io
    import shutil

    from rich.console import Console

    from steering.protein.pipeline import run_protein_pipeline

    from .conftest import threads

    _, out, ds = run
    shutil.copytree(out / "sae", tmp_path / "sae")
    buf, logged = io.StringIO(), []
    with threads(1):
        run_protein_pipeline(tiny_model, ds, tmp_path, sae_kwargs={"latents": 64, "k": 4, "tokens": 6144,
                                                                   "batch_size": 512, "lr": 3e-3},
                             n_steer=6, steer_length=30, pppl_n=2, pilot_n=6, batch_size=50, seed=0, n_seeds=2,
                             n_secondary=4, n_control=3, log=lambda *a: logged.append(" ".join(map(str, a))),
                             progress=Console(file=buf, force_terminal=False, width=400))
    said = [ln for ln in logged + buf.getvalue().splitlines() if "reus" in ln]
    assert len(said) == 1 and f"reusing the finished SAE in {tmp_path / 'sae'}" in said[0], said
