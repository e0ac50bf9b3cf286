"""Known answers for the dashboard's data: a planted latent, summaries vs a dense reference, annotation F1."""
import json

import numpy as np
import pytest
import torch

import saes
from saes.dashboard.gather import gather
from saes.dashboard.stats import summarize

from .conftest import PLANTED, TOKEN, planted_sae


def occurrences(rows, token=TOKEN):
    """(example, position among the SAE's positions) of ``token``: BOS is not read, so position = index - 1."""
    return sorted((e, i - 1) for e, r in enumerate(rows) for i, t in enumerate(r) if t == token and i > 0)


@pytest.fixture(scope="module")
def sae(gpt2):
    return planted_sae(gpt2.model.transformer.wte.weight.detach())


@pytest.fixture(scope="module")
def built(gpt2, sae, rows, tmp_path_factory):
    out = tmp_path_factory.mktemp("dash") / "site"
    return saes.dashboard(sae, gpt2, rows, out, site="embed", top_k=20, progress=False, model_batch_size=5)


def test_planted_latent_page_shows_exactly_its_token_contexts_at_the_top(built, rows):
    occ = occurrences(rows)
    assert 2 <= len(occ) < 20                             # the known answer is not vacuous: a few, all fit in top-k
    d = json.loads((built.path / "data" / f"latent_{PLANTED:06d}.json").read_text())
    top = d["groups"][0]
    assert top["kind"] == "top"
    assert sorted((c["example"], c["position"]) for c in top["contexts"]) == occ
    for c in top["contexts"]:
        assert c["tokens"][c["hit"]] == f"#{TOKEN}"
        fired = [j for j, a in enumerate(c["acts"]) if a]
        assert fired == [j for j, t in enumerate(c["tokens"]) if t == f"#{TOKEN}"]   # nothing else lights up
    assert d["count"] == len(occ)
    html = (built.path / "latents" / f"{PLANTED:06d}.html").read_text()
    assert html.count('class="tok b5 hit"') >= len(occ)  # the ranked tokens are in the top colour band


def test_summaries_match_a_dense_reference(gpt2, sae, rows):
    acts = gather(gpt2, sae, rows, site="embed", progress=False, model_batch_size=7)
    s = summarize(acts, top_k=5, n_bands=4, band_size=3, n_bins=8)
    flat = [t for r in rows for t in r[1:]]               # the positions the SAE reads, in data order
    x = gpt2.model.transformer.wte.weight.detach()[torch.tensor(flat)]
    dense = sae.encode(x).clamp_min(0).detach().numpy()
    assert acts.n_rows == len(flat)
    np.testing.assert_array_equal(s.count, (dense > 0).sum(0))
    np.testing.assert_allclose(s.max, dense.max(0), rtol=1e-5)
    for f in range(dense.shape[1]):
        col = dense[:, f]
        ref = np.sort(col[col > 0])[::-1][:5]
        np.testing.assert_allclose(s.top_vals[f], ref, rtol=1e-5)
        np.testing.assert_allclose(dense[s.top[f], f], s.top_vals[f], rtol=1e-5)   # rows point at the right tokens
        assert s.hist_counts[f].sum() == s.count[f]
        edges = np.linspace(0, col.max(), 5)
        ref_band = [int(((col > edges[j]) & (col <= edges[j + 1])).sum()) for j in range(3, -1, -1)]
        got = [b["count"] for b in s.bands[f]]
        assert sum(got) == s.count[f] and max(abs(a - b) for a, b in zip(got, ref_band)) <= 1   # float edge ties
        for b in s.bands[f]:
            assert len(b["rows"]) == min(3, b["count"])
            assert np.all((b["vals"] > b["lo"] - 1e-7) & (b["vals"] <= b["hi"] + 1e-7))


def test_annotation_f1_finds_the_planted_track(gpt2, sae, rows, tmp_path):
    track = [np.array([t == TOKEN for t in r[1:]]) for r in rows]          # per SAE position (no BOS)
    noise = [np.random.default_rng(e).random(len(r) - 1) < 0.3 for e, r in enumerate(rows)]
    d = saes.dashboard(sae, gpt2, rows, tmp_path / "ann", site="embed", annotations={"noise": noise, "planted": track},
                       progress=False)
    best = d.site.best
    assert best["track"][PLANTED] == "planted" and best["f1"][PLANTED] == pytest.approx(1.0)
    others = [f for f in range(len(best["f1"])) if f != PLANTED]
    assert max(best["f1"][others]) < 1.0
    rows_csv = (d.path / "data" / "latents.csv").read_text().splitlines()
    assert rows_csv[0].split(",")[:7] == ["latent", "count", "density", "max", "mean", "top_tokens", "best_f1"]
    page = (d.path / "latents" / f"{PLANTED:06d}.html").read_text()
    assert page.count("<svg class=\"trace\"") == min(5, len({e for e, _ in occurrences(rows)}))   # one per example
    assert ">planted</text>" in page


def test_bad_annotations_and_budgets_are_refused(gpt2, sae, rows, tmp_path):
    short = [np.zeros(len(r) - 2, bool) for r in rows]
    with pytest.raises(saes.DataError, match="entries, but the SAE read"):
        saes.dashboard(sae, gpt2, rows, tmp_path / "a", site="embed", annotations={"t": short}, progress=False)
    with pytest.raises(saes.DataError, match="max_nonzeros"):
        saes.dashboard(sae, gpt2, rows, tmp_path / "b", site="embed", max_nonzeros=10, progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_max_tokens_is_recorded_and_dead_latents_listed(gpt2, sae, rows, tmp_path):
    d = saes.dashboard(sae, gpt2, rows, tmp_path / "d", site="embed", max_tokens=40, latents=[PLANTED, 0],
                       progress=False)
    assert d.site.acts.n_rows == 40
    idx = (d.path / "index.html").read_text()
    assert "stopped at max_tokens=40" in idx
    assert sorted(p.name for p in (d.path / "latents").iterdir()) == sorted(
        f"{f:06d}.html" for f in {PLANTED, 0} if d.site.summary.count[f] > 0)
    assert "without a page" in idx


def test_notebook_display_is_self_contained(built):
    html = built._repr_html_()
    assert html.startswith("<iframe srcdoc=") and "dashboard.js" not in html and "sortTable" in html
    assert "Latent 5" in built.latent(PLANTED)._repr_html_()
    assert callable(saes.dashboard) and saes.dashboard.Dashboard is type(built)


def test_esm_logit_effects_range_over_amino_acids(tmp_path):
    from transformers import EsmTokenizer

    import hooks
    from tests.hooks import tiny_models as TM
    from tests.saes.conftest import ESM_VOCAB, protein_seqs

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(ESM_VOCAB) + "\n")
    esm = hooks.wrap(TM.build("esm"), EsmTokenizer(str(vocab)))
    sae = saes.make_training_sae(saes.TrainConfig(arch="topk", latents=32, k=4, seed=0), 32)
    seqs = protein_seqs(6, seed=4)
    d = saes.dashboard(sae, esm, seqs, tmp_path / "esm", site="resid_post.0", n_logits=25, progress=False)
    assert d.site.acts.n_rows == sum(map(len, seqs))                  # residues only: no CLS/EOS
    f = d.site.pages[0]
    lg = json.loads((d.path / "data" / f"latent_{f:06d}.json").read_text())["logits"]
    assert len(lg["top"]) == 20 and {t for t, _ in lg["top"]} == set("ACDEFGHIKLMNPQRSTVWY")


def test_length_sorted_batching_and_chunked_encoding_change_nothing(gpt2, sae, rows):
    a = gather(gpt2, sae, rows, site="embed", progress=False, model_batch_size=3, sort_window=1)
    b = gather(gpt2, sae, rows, site="embed", progress=False, model_batch_size=3, sort_window=8, encode_rows=7)
    for k in ("example_of_row", "token_of_row", "ordinal_of_row"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k))
    assert np.all(np.diff(b.example_of_row) >= 0)
    # the planted SAE's random latents have a bias equal to one token's projection (a quantile), so a few
    # pre-activations are 0 up to rounding and flip with the matmul's shape: compare entries clear of 0
    def entries(x):
        keep = x.vals > 1e-6
        o = np.lexsort((x.cols[keep], x.rows[keep]))
        return x.rows[keep][o], x.cols[keep][o], x.vals[keep][o]

    (ra, ca, va), (rb, cb, vb) = entries(a), entries(b)
    np.testing.assert_array_equal(ra, rb)
    np.testing.assert_array_equal(ca, cb)
    np.testing.assert_allclose(va, vb, rtol=1e-5, atol=1e-8)
    assert len(ra) > 0.9 * len(a.rows)
    assert all(np.array_equal(x, y) for x, y in zip(a.tokens, b.tokens)) and len(a.tokens) == len(rows)
