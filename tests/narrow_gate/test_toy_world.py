"""Known answers of the planted-gate toy world, on the shipped toy models (no retraining).

gated: image information reaches text only through [EOI]; free: text reads the image tokens.
The pipeline must find the gate in the first and not in the second (Serra et al. 2025, Table 1
and Fig. 3 in miniature).
"""
from __future__ import annotations

import pytest

from steering.narrow_gate.ablations import Ablation
from steering.narrow_gate.tasks import evaluate
from steering.narrow_gate.toy import load_toy_model, make_examples
from steering.narrow_gate.toy.demo import run_toy_world, side_by_side


@pytest.fixture(scope="module")
def world():
    return run_toy_world(n=200, seed=1, n_pairs=50, flow_examples=100, batch_size=200, n_draws=2)


def test_gate_is_eoi_in_the_gated_model_only(world):
    g = world["gated"]["gate"]
    assert g.key == "eoi" and g.narrow and g.share > 0.6
    shares = world["gated"]["flow"].shares
    assert (shares["eoi"].iloc[:3] > 0.8).all()  # the layers where text reads the image
    f = world["free"]["gate"]
    assert f.key != "eoi" and not f.narrow and f.share < 0.1
    assert (world["free"]["flow"].shares["image"] > 0.8).all()
    # native-like: little of the text's attention goes to the image side at all
    assert world["gated"]["flow"].side_mass.max() < 0.5 < world["free"]["flow"].side_mass.min()


def test_ablation_tables(world):
    ch = world["chance"]
    assert ch == pytest.approx((1 / 8 + 1 / 4) / 2)
    g, f = world["gated"]["table"], world["free"]["table"]
    for t in (g, f):
        assert t.loc["none", "accuracy"] > 0.95 and t.loc["none", "generated"] > 0.95
    for col in ("accuracy", "generated"):
        # gated: [EOI] drops to chance, img→text leaves it within 2 points; random (the authors' control:
        # ALL queries, image→image too, cut from 10 of 32 image tokens) within 5
        assert abs(g.loc["[EOI]", col] - ch) < 0.08
        assert abs(g.loc["random", col] - g.loc["none", col]) <= 0.05
        assert abs(g.loc["img→text", col] - g.loc["none", col]) <= 0.02
        # free: [EOI] costs little, img→text a lot
        assert f.loc["none", col] - f.loc["[EOI]", col] <= 0.02
        assert f.loc["img→text", col] < ch + 0.08
    df = side_by_side(world)
    assert list(df.columns) == ["gated accuracy", "gated generated", "free accuracy", "free generated"]


def test_eoi_patching_flips_the_gated_model_only(world):
    g, f = world["gated"]["patch"].summary, world["free"]["patch"].summary
    assert g["flip_rate"].max() > 0.8 and g.loc[2, "flip_rate"] > 0.8
    assert g.loc[2, "overlap"] > 0.8 > g.loc[2, "overlap_clean"]  # the patched output is the base run's
    assert f["flip_rate"].max() < 0.1


def test_masked_knockout_variant():
    hm = load_toy_model("gated")
    exs = make_examples(100, seed=5)
    none = evaluate(hm, exs, "classify", batch_size=100)["accuracy"]
    masked = Ablation("eoi", mode="mask")
    acc = evaluate(hm, exs, "classify", batch_size=100,
                   interventions=lambda i, lay, k: masked.interventions(hm, lay, k))["accuracy"]
    assert none > 0.95 and acc < 0.5  # renormalised: a sliver of leftover text→image attention is amplified


def test_attention_input_patching_acts_from_layer_l_on():
    """Patching what later tokens read from [EOI] (attention inputs from L on) flips the gated model
    already from layer 1, where the residual patch at resid_pre.1 is too early (the gate fills in layer 1)."""
    from steering.narrow_gate.patching import patch_gate
    from steering.narrow_gate.toy import make_pairs

    hm = load_toy_model("gated")
    pairs = make_pairs(40, seed=7)
    att = patch_gate(hm, pairs, layers=[1, 3], mode="attn_input", batch_size=40).summary
    res = patch_gate(hm, pairs, layers=[1], mode="resid", batch_size=40).summary
    assert att.loc[1, "flip_rate"] > 0.8 and res.loc[1, "flip_rate"] < 0.2
    assert att.loc[3, "flip_rate"] < 0.2  # by layer 3 the text has already read the gate


def test_class_is_localised_at_eoi_in_the_gated_model_only():
    from steering.narrow_gate.semantic import semantic_localisation

    cls = make_examples(120, seed=3, questions=("class",))
    g = semantic_localisation(load_toy_model("gated"), cls, k=20, batch_size=120)
    f = semantic_localisation(load_toy_model("free"), cls, k=20, batch_size=120)
    assert (g.loc[1:, "eoi"] > g.loc[1:, "mean_image"] + 0.1).all()
    assert (f.loc[1:, "eoi"] < g.loc[1:, "eoi"] - 0.2).all()


def test_gate_toy_command_prints_both_tables(tmp_path):
    from typer.testing import CliRunner

    from interp.cli import app

    r = CliRunner().invoke(app, ["gate", "toy", "--n", "48", "--pairs", "16", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "gated accuracy" in r.output and "free accuracy" in r.output and "[EOI]" in r.output
    assert "gated: gate = eoi" in r.output
    md = (tmp_path / "report.md").read_text()
    assert "| img→text |" in md and (tmp_path / "gated" / "flow.png").exists()


def test_modality_gap_is_larger_in_the_gated_model():
    from steering.narrow_gate.gap import modality_gap

    exs = make_examples(60, seed=4)
    gated, free = load_toy_model("gated"), load_toy_model("free")
    # the authors' protocol (one text token of image→text prompts, one image token of text→image prompts)
    g, f = modality_gap(gated, exs, batch_size=60), modality_gap(free, exs, batch_size=60)
    assert (g.loc[1:, "homogeneity"] > f.loc[1:, "homogeneity"] + 0.3).all()
    # our same-prompt variant: signed cosine of same-example tokens
    kw = dict(tokens_per_example=12, batch_size=60, task="classify", protocol="same_prompt", adp=False)
    assert (modality_gap(gated, exs, **kw)["cos_median"] < modality_gap(free, exs, **kw)["cos_median"]).all()
