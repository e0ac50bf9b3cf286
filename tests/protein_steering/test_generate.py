"""Iterative-unmasking generation: templates kept, seeds reproducible, interventions at every step."""
import pytest

import hooks
from steering.protein.alphabet import STANDARD_AA, TOKEN_ID
from steering.protein.generate import GenerationConfig, GenerationError, generate, make_templates


def test_templates_and_masks():
    assert make_templates(length=3, n=2) == ["___", "___"]
    assert make_templates("mkTAY", mask_positions=[1, -1]) == ["M_TA_"]
    assert make_templates(["MK_", "A__"]) == ["MK_", "A__"]
    for bad in (dict(), dict(length=0), dict(templates="MKJ_"), dict(templates="MK", mask_positions=[5]),
                dict(templates=["A_", "B_"], n=3)):
        with pytest.raises(ValueError):
            make_templates(**bad)


@pytest.mark.parametrize("order", ["random", "confidence", "left-to-right"])
def test_fills_masks_only_with_the_alphabet_and_is_reproducible(tiny_model, order):
    temps = ["MKT____AAA", "M" + "_" * 12, "_" * 5]
    cfg = GenerationConfig(order=order, per_step=3, seed=4, top_k=5, temperature=0.8, batch_size=2)
    a = generate(tiny_model, temps, config=cfg)
    assert a == generate(tiny_model, temps, config=cfg)
    assert [len(s) for s in a] == [10, 13, 5]
    assert a[0][:3] == "MKT" and a[0][7:] == "AAA" and a[1][0] == "M"
    assert set("".join(a)) <= set(STANDARD_AA)
    assert generate(tiny_model, temps, config=cfg, seed=5) != a


def test_interventions_act_at_every_step(tiny_model):
    """An Edit at 'logits' that makes W overwhelmingly likely: every generated residue is W; the
    edit runs once per unmasking step (12 masks, 4 per step -> 3 steps)."""
    calls = []

    def force_w(x):
        calls.append(x.shape)
        x = x.clone()
        x[..., TOKEN_ID["W"]] += 1e4
        return x

    out = generate(tiny_model, ["MA" + "_" * 12], interventions=[hooks.Edit("logits", "residues", force_w)],
                   per_step=4, seed=0)
    assert out == ["MA" + "W" * 12] and len(calls) == 3
    # left to right, one per step: what is still masked is always a suffix of the residues
    class Spy:
        def __init__(self, hm):
            self.hm, self.seen = hm, []

        def run(self, inputs, ivs=()):
            self.seen.append(inputs["input_ids"].clone())
            return self.hm.run(inputs, ivs)

    spy = Spy(tiny_model)
    generate(spy, n=2, length=6, order="left-to-right", per_step=1)
    assert len(spy.seen) == 6
    for step, ids in enumerate(spy.seen):
        masked = (ids[:, 1:7] == TOKEN_ID["<mask>"])
        assert masked.tolist() == [[i >= step for i in range(6)]] * 2


def test_config_errors():
    for bad in (dict(order="sideways"), dict(temperature=0), dict(per_step=0), dict(top_k=25), dict(alphabet="J")):
        with pytest.raises(GenerationError):
            GenerationConfig(**bad).validate()
    assert issubclass(GenerationError, ValueError)
