"""Patching sweeps: batched equals one-forward-per-patch, the known answer on a model linear in its
residual, and the `interp sweep` shell command (the demo-lm induction circuit: test_induction.py)."""
import json

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import hooks
from interp.metrics import get_metric, metric_batch
from interp.patching import activation_patching, agreement, attribution_patching

from .conftest import induction_pairs


def _split(rows):
    return ([r["clean"] for r in rows], [r["corrupt"] for r in rows], [r["answer"] for r in rows],
            [r["distractor"] for r in rows])


@pytest.fixture(scope="module")
def hm(demo_lm):
    return hooks.load(demo_lm)


def _loop_effect(hm, clean, corrupt, ans, dis, ivs_of):
    """Reference: one forward per patch through the public Patch intervention."""
    both = hm.prepare(clean + corrupt)
    B = len(clean)
    c_in, x_in = ({k: v[:B] for k, v in both.items()}, {k: v[B:] for k, v in both.items()})
    m = get_metric("logit_diff")
    mb = metric_batch(hm, x_in, answers=ans, distractors=dis)
    base = m(hm.run(x_in).logits, mb)
    return lambda *cell: float((m(hm.run(x_in, ivs_of(c_in, *cell)).logits, mb) - base).mean())


def test_batched_head_sweep_equals_one_forward_per_patch(hm):
    clean, corrupt, ans, dis = _split(induction_pairs(8))
    df = activation_patching(hm, clean, corrupt, sites="head_out", by="layer,head", answers=ans, distractors=dis,
                             max_variants=3)
    assert list(df.columns) == ["site", "layer", "head", "position", "effect"] and len(df) == 8
    # the fast path runs each site's variants separately (2 sites x ceil(4 / 3)); the reference path mixes them
    assert df.attrs["forwards"] == 4 and df["position"].isna().all()
    assert activation_patching(hm, clean, corrupt, sites="head_out", by="layer,head", answers=ans, distractors=dis,
                               max_variants=3, fast=False).attrs["forwards"] == 3
    ref = _loop_effect(hm, clean, corrupt, ans, dis, lambda src, L, h: [hooks.Patch(f"head_out.{L}", source=src, heads=h)])
    for r in df.itertuples():
        assert r.effect == pytest.approx(ref(r.layer, r.head), abs=1e-4)
    one = activation_patching(hm, clean, corrupt, sites="head_out", by="layer,head", answers=ans, distractors=dis)
    assert one.attrs["forwards"] == 2  # one per site
    tight = activation_patching(hm, clean, corrupt, sites="head_out", by="layer,head", answers=ans, distractors=dis,
                                memory_budget=1)  # below one variant's estimate: one variant per forward
    assert tight.attrs["forwards"] == 8 and tight["effect"].tolist() == pytest.approx(one["effect"].tolist(), abs=1e-5)
    torch.testing.assert_close(torch.tensor(one["effect"].to_numpy()), torch.tensor(df["effect"].to_numpy()), atol=1e-5, rtol=0)


def test_position_sweep_on_ragged_rows_matches_patch_at_that_position(hm):
    clean, corrupt, ans, dis = _split(induction_pairs(6, seed=5))
    assert len({len(c.split()) for c in clean}) > 1  # ragged: positions missing in short rows are not averaged in
    df = activation_patching(hm, clean, corrupt, sites="resid_pre.1", by="layer,position", answers=ans, distractors=dis)
    lengths = torch.tensor([len(c.split()) for c in clean])
    for r in df.itertuples():
        keep = lengths > r.position
        sub = [[x for x, k in zip(col, keep) if k] for col in (clean, corrupt, ans, dis)]
        ref = _loop_effect(hm, *sub, lambda src, p: [hooks.Patch("resid_pre.1", positions=p, source=src)])
        assert r.effect == pytest.approx(ref(int(r.position)), abs=1e-4), r


def _linear_tl(freeze_attention=True):
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    torch.manual_seed(0)
    cfg = HookedTransformerConfig(n_layers=2, d_model=16, n_ctx=16, d_head=4, n_heads=4, d_vocab=20, attn_only=True,
                                  normalization_type=None, act_fn=None, seed=0, initializer_range=0.5)
    tl = HookedTransformer(cfg).eval()
    if freeze_attention:  # W_Q = W_K = 0: uniform causal attention, so every block is linear in the residual
        with torch.no_grad():
            for b in tl.blocks:
                b.attn.W_Q.zero_()
                b.attn.W_K.zero_()
    return hooks.wrap(tl)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_attribution_patching_is_exact_on_a_model_linear_in_its_residual():
    g = torch.Generator().manual_seed(1)
    clean = torch.randint(0, 20, (5, 6), generator=g)
    corrupt = clean.clone()
    corrupt[:, 2] = torch.randint(0, 20, (5,), generator=g)
    clean, corrupt = clean.tolist(), corrupt.tolist()
    kw = dict(answers=[3] * 5, distractors=[4] * 5)
    lin = _linear_tl()
    for by, sites in [("layer,head,position", "head_out"), ("layer,position", "resid_pre"), ("layer", "attn_out")]:
        real = activation_patching(lin, clean, corrupt, sites=sites, by=by, **kw)
        atp = attribution_patching(lin, clean, corrupt, sites=sites, by=by, **kw)
        assert real["effect"].abs().max() > 1e-2
        assert agreement(real, atp)["max_abs_diff"] < 1e-5, by
    # control: with attention free to move (softmax of q·k), the first-order estimate is no longer exact
    nonlin = _linear_tl(freeze_attention=False)
    real = activation_patching(nonlin, clean, corrupt, sites="resid_pre", by="layer,position", **kw)
    atp = attribution_patching(nonlin, clean, corrupt, sites="resid_pre", by="layer,position", **kw)
    assert agreement(real, atp)["max_abs_diff"] > 1e-4


def test_noising_and_normalised_effects(hm):
    clean, corrupt, ans, dis = _split(induction_pairs(8))
    kw = dict(sites="resid_pre", by="layer", answers=ans, distractors=dis)
    den = activation_patching(hm, clean, corrupt, normalize=True, **kw)
    assert den["effect"].iloc[0] == pytest.approx(1.0, abs=1e-4)  # patching the whole input stream restores clean
    noi = activation_patching(hm, clean, corrupt, direction="noising", **kw)
    gap = noi.attrs["metric_corrupt"] - noi.attrs["metric_clean"]
    assert noi["effect"].iloc[0] == pytest.approx(gap, abs=1e-4)


def test_bad_inputs_are_one_clear_error(hm):
    with pytest.raises(hooks.SpecError, match="same length"):
        activation_patching(hm, ["<bos> s1 s2 |"], ["<bos> s1 |"], answers=["s1"], distractors=["s2"])
    with pytest.raises(hooks.SpecError, match="head axis"):
        activation_patching(hm, ["<bos> s1 s2 |"], ["<bos> s3 s2 |"], sites="attn_out", by="layer,head",
                            answers=["s1"], distractors=["s2"])
    with pytest.raises(hooks.SpecError, match="by must be"):
        activation_patching(hm, ["<bos> s1 |"], ["<bos> s2 |"], by="head", answers=["s1"], distractors=["s2"])
    with pytest.raises(hooks.SpecError, match="needs \\['answer', 'distractor'\\]"):
        activation_patching(hm, ["<bos> s1 |"], ["<bos> s2 |"])


def test_sweep_command_writes_the_same_table_and_heatmaps(demo_lm, pairs_file, tmp_path):
    from interp.cli import app

    out = tmp_path / "sw"
    r = CliRunner().invoke(app, ["sweep", "--model", str(demo_lm), "--data", str(pairs_file), "--sites", "head_out",
                                 "--by", "layer,head", "--metric", "logit_diff", "--out", str(out)])
    assert r.exit_code == 0, r.output
    df = pd.read_csv(out / "sweep.csv")
    assert list(df.columns) == ["site", "layer", "head", "position", "effect"] and df["position"].isna().all()
    clean, corrupt, ans, dis = _split(induction_pairs())
    want = activation_patching(hooks.load(demo_lm), clean, corrupt, sites="head_out", by="layer,head", answers=ans,
                               distractors=dis)
    torch.testing.assert_close(torch.tensor(df["effect"].to_numpy()), torch.tensor(want["effect"].to_numpy()),
                               atol=1e-5, rtol=0)
    assert (out / "sweep_head_out_layer_head.png").stat().st_size > 0 and (out / "sweep.json").exists()
    r = CliRunner().invoke(app, ["sweep", "--model", str(demo_lm), "--data", str(pairs_file), "--sites", "head_out",
                                 "--by", "layer,head", "--no-fast", "--out", str(tmp_path / "ref")])
    assert r.exit_code == 0, r.output
    assert json.loads((out / "sweep.json").read_text())["fast"] is True
    assert json.loads((tmp_path / "ref" / "sweep.json").read_text())["fast"] is False
    torch.testing.assert_close(torch.tensor(pd.read_csv(tmp_path / "ref" / "sweep.csv")["effect"].to_numpy()),
                               torch.tensor(df["effect"].to_numpy()), atol=1e-5, rtol=0)
    r = CliRunner().invoke(app, ["sweep", "--model", str(demo_lm), "--data", str(pairs_file), "--by", "layer,position",
                                 "--method", "attribution", "--out", str(tmp_path / "atp")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "atp" / "sweep_attn_out_layer_position.png").exists()
    r = CliRunner().invoke(app, ["sweep", "--model", str(demo_lm), "--data", str(pairs_file), "--method", "path",
                                 "--receivers", "resid_post.1", "--out", str(tmp_path / "path")])
    assert r.exit_code == 0, r.output
    path = pd.read_csv(tmp_path / "path" / "sweep.csv")
    assert len(path) == 8 and path["position"].isna().all()
    r = CliRunner().invoke(app, ["sweep", "--model", str(demo_lm), "--data", str(pairs_file), "--by", "head",
                                 "--out", str(tmp_path / "bad")])
    assert r.exit_code == 2 and "by must be" in r.output


@pytest.mark.parametrize("family", ["gpt2", "gemma2"])
def test_last_token_shortcut_only_where_it_is_exact(family):
    """Answer metrics unembed only the last token, unless the model's logits are not just the
    unembedding of the final norm (Gemma 2 soft-caps them): then the full logits are used."""
    from ..hooks.tiny_models import build

    hm = hooks.wrap(build(family))
    g = torch.Generator().manual_seed(0)
    clean = torch.randint(3, 64, (4, 6), generator=g)
    corrupt = clean.clone()
    corrupt[:, 2] = torch.randint(3, 64, (4,), generator=g)
    kw = dict(answers=[5, 6, 7, 8], distractors=[9, 9, 9, 9])
    df = activation_patching(hm, clean.tolist(), corrupt.tolist(), sites="head_out", by="layer,head", **kw)
    assert df.attrs["last_token_logits_only"] == (family == "gpt2")
    ref = _loop_effect(hm, clean.tolist(), corrupt.tolist(), kw["answers"], kw["distractors"],
                       lambda src, L, h: [hooks.Patch(f"head_out.{L}", source=src, heads=h)])
    for r in df.itertuples():
        assert r.effect == pytest.approx(ref(r.layer, r.head), abs=1e-4)
