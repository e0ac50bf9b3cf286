"""Spec round-trips, position selectors, and one clear error per kind of bad input."""
import json

import pytest
import torch

import hooks
from hooks import Ablate, Cache, Edit, Knockout, Patch, Steer, token
from hooks import positions as P
from hooks.interventions import Intervention, dump_spec, load_spec

from .tiny_models import batch, build


def double(x):
    return 2 * x


SPECS = [
    Cache("resid_post.*", positions="last", dtype=torch.float16, layout="row"),
    Cache(["attn_out.0", "mlp_out.1"], positions=slice(1, None, 2)),
    Ablate("attn_out.1", positions=[0, 2], how="mean", reference=["a b", "c d"], seed=3),
    Patch("resid_pre.1", positions="last", source=["other text"], source_positions=-2),
    Steer("resid_post.0", positions=[[0, 1], [2]], vector=[0.5, -1.0, 2.0], scale=4.0, apply_to="new"),
    Knockout(layers=[0, 1], heads=[2], queries="last", keys=token("|"), mode="mask"),
    Knockout(layers="all", queries="text", keys="eoi", mode="zero"),
    Edit("mlp_out.0", positions="residues", fn=double, apply_to="prompt"),
]


@pytest.mark.parametrize("iv", SPECS, ids=lambda iv: type(iv).__name__)
def test_every_spec_round_trips_through_json_and_yaml(iv):
    d = iv.to_dict()
    again = Intervention.from_dict(json.loads(json.dumps(d)))
    assert again.to_dict() == d
    assert load_spec(dump_spec([iv], "yaml"))[0].to_dict() == d
    assert load_spec(dump_spec([iv], "json"))[0].to_dict() == d


def test_spec_file_loads_in_python_and_is_written_atomically(tmp_path):
    path = tmp_path / "spec.yaml"
    hooks.save_spec(SPECS[:3], path)
    assert [i.to_dict() for i in load_spec(path)] == [i.to_dict() for i in SPECS[:3]]
    assert not list(tmp_path.glob(".*tmp*"))


@pytest.mark.parametrize("bad, msg", [
    ({"type": "frobnicate"}, "Unknown intervention type"),
    ({"type": "steer", "sites": "x"}, "needs vector"),
    ({"type": "ablate", "sites": "x", "how": "mean"}, "needs reference"),
    ({"type": "cache", "sites": "x", "colour": 1}, "no field"),
    ({"type": "knockout", "mode": "soft"}, "mode must be"),
    ({"type": "edit", "site": "x", "fn": "os.path:nope_missing"}, "nope_missing"),
])
def test_bad_specs_raise_one_clear_error(bad, msg):
    with pytest.raises((hooks.SpecError, AttributeError), match=msg):
        Intervention.from_dict(bad)


def test_lambda_edit_cannot_be_serialised():
    with pytest.raises(hooks.SpecError, match="importable"):
        Edit("mlp_out.0", fn=lambda x: x).to_dict()


def _ctx(mask, ids=None, spans=None):
    mask = torch.tensor(mask, dtype=torch.bool)
    return P.BatchContext(attention_mask=mask, input_ids=ids, span_fn=(lambda: spans) if spans else None)


def test_selectors_count_real_tokens_under_left_and_right_padding():
    right = _ctx([[1, 1, 1, 0], [1, 1, 1, 1]])
    left = _ctx([[0, 1, 1, 1], [1, 1, 1, 1]])
    assert P.resolve("last", right).nonzero().tolist() == [[0, 2], [1, 3]]
    assert P.resolve("last", left).nonzero().tolist() == [[0, 3], [1, 3]]
    assert P.resolve(0, left).nonzero().tolist() == [[0, 1], [1, 0]]
    assert P.resolve(-2, right).nonzero().tolist() == [[0, 1], [1, 2]]
    assert P.resolve("1:", left).sum(1).tolist() == [2, 3]
    assert P.resolve([[0], [1, 3]], left).nonzero().tolist() == [[0, 1], [1, 1], [1, 3]]
    assert P.resolve("all", left).sum().item() == 7
    m = torch.tensor([[1, 0, 0, 1], [0, 0, 1, 0]], dtype=torch.bool)
    assert P.resolve(m, left).nonzero().tolist() == [[0, 3], [1, 2]]  # absolute, padding dropped


def test_token_and_span_selectors():
    ids = torch.tensor([[5, 7, 5, 9]])
    ctx = _ctx([[1, 1, 1, 1]], ids=ids, spans={"image": torch.tensor([[0, 1, 1, 0]], dtype=torch.bool),
                                               "eoi": torch.tensor([[0, 0, 0, 1]], dtype=torch.bool)})
    assert P.resolve(token(5), ctx).nonzero()[:, 1].tolist() == [0, 2]
    assert P.resolve("image", ctx).nonzero()[:, 1].tolist() == [1, 2]
    assert P.resolve("eoi", ctx).nonzero()[:, 1].tolist() == [3]
    with pytest.raises(hooks.SpecError, match="Unknown position selector 'img'"):
        P.resolve("img", ctx)


def test_window_and_apply_to_during_generation():
    ctx = _ctx([[1, 1, 1, 1, 1, 1]])
    ctx.window_start, ctx.prompt_len = 5, 4
    full = P.resolve("all", ctx)
    assert P.window(full, ctx, "all").tolist() == [[True]]
    assert P.window(full, ctx, "prompt").tolist() == [[False]]
    assert P.window(P.resolve(2, ctx), ctx, "all").tolist() == [[False]]


@pytest.fixture(scope="module")
def gpt2():
    return hooks.wrap(build("gpt2"))


def test_unknown_site_names_closest_valid_names(gpt2):
    with pytest.raises(hooks.UnknownSiteError, match="Closest valid names: resid_post.1"):
        gpt2.run(batch("gpt2"), [Cache("resid_post1")])
    with pytest.raises(hooks.UnknownSiteError, match="resid_pre"):
        gpt2.run(batch("gpt2"), [Cache("resid_pr.*")])


def test_raw_module_paths_are_sites(gpt2):
    inp = batch("gpt2")
    res = gpt2.run(inp, [Cache(["transformer.h.0.mlp", "transformer.h.1.ln_2:input", "resid_mid.1"])])
    assert torch.equal(res.cache["transformer.h.0.mlp"], gpt2.run(inp, [Cache("mlp_out.0")]).cache["mlp_out.0"])
    assert torch.equal(res.cache["transformer.h.1.ln_2:input"], res.cache["resid_mid.1"])


def test_position_out_of_range_names_row_and_length(gpt2):
    inp = batch("gpt2")  # row lengths 7, 6, 5
    with pytest.raises(hooks.PositionError, match="batch row 2, which has 5 real tokens"):
        gpt2.run(inp, [Cache("resid_post.0", positions=5)])


def test_patch_and_steer_shape_mismatch_report_both_shapes(gpt2):
    inp = batch("gpt2")
    with pytest.raises(hooks.ShapeMismatchError, match=r"\(16,\).*\(3, 7, 32\)"):
        gpt2.run(inp, [Steer("resid_post.0", vector=torch.zeros(16))])
    src = {"resid_post.0": torch.zeros(3, 16)}
    with pytest.raises(hooks.ShapeMismatchError, match=r"source values have shape \(1, 16\).*\(32,\)"):
        gpt2.run(inp, [Patch("resid_post.0", positions="last", source=src)])


def test_knockout_on_unsupported_attention_says_how_to_load():
    model = build("llama")
    model.config._attn_implementation = "flash_attention_2"  # as if loaded with flash attention
    hm = hooks.wrap(model)
    assert "attn_pattern.0" not in hm.site_names
    with pytest.raises(hooks.AttentionNotSupportedError, match="attn_implementation='sdpa'"):
        hm.run(batch("llama"), [Knockout(layers=[0], keys=0)])


def test_knockout_layer_out_of_range(gpt2):
    with pytest.raises(hooks.SpecError, match="has 2 layers"):
        gpt2.run(batch("gpt2"), [Knockout(layers=[5])])


def test_unsupported_model_lists_families():
    with pytest.raises(hooks.UnsupportedModelError, match="Supported families: gpt2, llama"):
        hooks.wrap(torch.nn.Linear(2, 2))


def test_sites_lists_shapes(gpt2):
    s = gpt2.sites
    assert s["resid_post.1"] == "B×P×32" and s["head_out.0"] == "B×P×4×8" and s["attn_pattern.1"] == "B×4×P×P"
    assert s["logits"] == "B×P×64"
