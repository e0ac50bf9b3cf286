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
from steering.narrow_gate.toy.world import chance


@pytest.fixture(scope="module")
def world():
    return run_toy_world(n=200, seed=1, n_pairs=50, flow_examples=100, batch_size=200)


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
        # gated: [EOI] drops to chance, random and img→text leave it within 2 points
        assert abs(g.loc["[EOI]", col] - ch) < 0.08
        assert abs(g.loc["random", col] - g.loc["none", col]) <= 0.02
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
