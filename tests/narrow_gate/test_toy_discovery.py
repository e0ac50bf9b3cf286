"""The toy world must test discovery, not replay it.

* ``register``: trained to route the image through ``<reg>`` (between the last code and
  ``<eoss>``), with the blocked edges read from token ids, never from the layout. The layout
  names ``<eoss>`` as the gate candidate; the flow must find ``<reg>`` (``special[-2]``) from
  attention alone, and knocking out the key it found — not ``[EOI]`` — must destroy the answers.
* ``llava_gated``: the same world through a second family (a tiny LLaVA: pixels → vision tower
  → projector → decoder, no end-of-image marker). Trained with the gated recipe, it did not form
  a gate; the flow and the knockouts must agree on that.
"""
from __future__ import annotations

import torch

import hooks
from steering.narrow_gate import ablations as A
from steering.narrow_gate.flow import attention_flow
from steering.narrow_gate.layout import image_layout
from steering.narrow_gate.tasks import encode, evaluate
from steering.narrow_gate.toy import load_toy_model, make_examples
from steering.narrow_gate.toy.llava_world import make_llava_examples
from steering.narrow_gate.toy.world import VOCAB, chance


def test_flow_discovers_the_register_gate():
    hm = load_toy_model("register")
    exs = make_examples(200, seed=7, register=True)
    lay = image_layout(hm, encode(hm, exs[:2], "classify"))
    assert lay.gate_name == "eoi"  # the layout's candidate is <eoss> ...
    flow = attention_flow(hm, exs, task="classify", batch_size=100)
    g = flow.gate()
    assert g.key == "special[-2]" and g.narrow and g.runner_up != "special[-2]"  # ... the flow finds <reg>
    ids = encode(hm, exs[:1], "classify")["input_ids"][0]
    side = lay.side[0].nonzero().flatten()
    assert int(ids[side[g.offset]]) == VOCAB["<reg>"]

    def cut(keys_of):
        return lambda inputs, lay, i: [hooks.Knockout("all", queries="all", keys=keys_of(inputs, lay), mode="zero")]

    clean = evaluate(hm, exs, "classify", batch_size=100)["accuracy"]
    found = evaluate(hm, exs, "classify", batch_size=100,
                     interventions=cut(lambda inp, lay: inp["input_ids"] == VOCAB["<reg>"]))["accuracy"]
    eoi = evaluate(hm, exs, "classify", batch_size=100,
                   interventions=lambda inp, lay, i: A.Ablation("eoi").interventions(hm, lay, i))["accuracy"]
    assert clean > 0.9 and eoi > clean - 0.05 and found < chance(exs) + 0.1


def test_toy_world_through_a_llava_layout():
    """The gated recipe on a LLaVA did not produce a gate (llava_world docstring): the flow must not
    claim one, and the knockouts must agree — the last image token costs nothing, img→text everything."""
    hm = load_toy_model("llava_gated")
    assert hm.adapter.name.startswith("llava")
    exs = make_llava_examples(200, seed=7)
    flow = attention_flow(hm, exs, task="classify", batch_size=100)
    assert flow.gate_name == "last_image"
    g = flow.gate()
    assert not g.narrow and g.share < 0.2
    df = A.ablation_table(hm, {"": (exs, "classify")}, [A.Ablation("none"), A.Ablation("eoi"), A.Ablation("img_text")],
                          batch_size=100)
    assert list(df.index) == ["none", "last image", "img→text"]
    assert df.loc["none", "accuracy"] > 0.85
    assert df.loc["last image", "accuracy"] > df.loc["none", "accuracy"] - 0.03  # no gate: nothing lost
    assert df.loc["img→text", "accuracy"] < chance(exs) + 0.1  # the image is read from its tokens
    torch.testing.assert_close(flow.shares_array.sum(1), torch.ones(hm.n_layers, dtype=torch.float64).numpy(),
                               atol=1e-6, rtol=0)
