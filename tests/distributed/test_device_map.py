"""Sharded models: accelerate ``device_map`` dispatch (some layers offloaded to disk) under every intervention.

Known answer: the dispatched model computes the same function as the un-sharded one, so cache, patch, steer,
ablate and knockout results must be equal (CPU, float32: exactly). Our hooks must leave no trace, and
accelerate's own ``_hf_hook`` dispatch hooks (which wrap ``forward`` and move weights in from disk) must
survive every trace, including one that ends in an exception.
"""
from __future__ import annotations

import pytest
import torch

import hooks
from hooks import Ablate, Cache, Edit, Knockout, Patch, Steer
from tests.hooks.tiny_models import batch, build

pytest.importorskip("accelerate")

DISK_MAP = {"model.embed_tokens": "cpu", "model.rotary_emb": "cpu", "model.layers.0": "cpu",
            "model.layers.1": "disk", "model.norm": "cpu", "lm_head": "disk"}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("dm")
    build("llama").save_pretrained(root / "model")
    return root


@pytest.fixture(scope="module")
def pair(saved):
    sharded = hooks.load(saved / "model", device_map=DISK_MAP, offload_folder=saved / "offload")
    plain = hooks.load(saved / "model")
    return sharded, plain


def _our_hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def _accelerate_state(model):
    """(module name, hook type, id of the wrapped forward) for every accelerate-dispatched module."""
    return sorted((n, type(m._hf_hook).__name__, id(m.forward.__func__) if hasattr(m.forward, "__func__") else id(m.forward))
                  for n, m in model.named_modules() if hasattr(m, "_hf_hook"))


def test_layers_really_are_offloaded_to_disk(pair):
    sharded, _ = pair
    layer1 = sharded.model.model.layers[1]
    assert all(p.device.type == "meta" for p in layer1.parameters())  # weights live in offload_folder
    assert hasattr(layer1, "_hf_hook") and hasattr(sharded.model.lm_head, "_hf_hook")


def _both(pair, ivs, inp=None):
    inp = inp or batch("llama")
    sharded, plain = pair
    return sharded.run(inp, ivs), plain.run(inp, ivs)


def test_cache_equals_unsharded_model_and_lands_on_requested_device(pair):
    a, b = _both(pair, [Cache(["resid_post.*", "attn_out.1", "mlp_out.1", "head_out.1", "attn_pattern.1"])])
    assert torch.equal(a.logits, b.logits)
    assert set(a.cache) == set(b.cache) and len(a.cache) == 6
    for k in a.cache:
        assert a.cache[k].device.type == "cpu" and torch.equal(a.cache[k], b.cache[k]), k


def test_steer_patch_ablate_knockout_equal_unsharded(pair):
    v = torch.randn(32, generator=torch.Generator().manual_seed(0))
    other = batch("llama", seed=5)
    cases = [
        [Steer("resid_post.1", vector=v, scale=4.0)],
        [Steer("mlp_out.1", vector=v, scale=-2.0, positions="last")],
        [Patch("resid_pre.1", source=other)],
        [Ablate("attn_out.1", how="zero")],
        [Knockout(layers=[1], queries="last", keys=0, mode="zero")],
        [Knockout(layers=[0, 1], keys="others", mode="mask")],
        [Edit("resid_mid.1", fn=lambda x: x * 0.5)],
    ]
    plain_logits = pair[1].run(batch("llama")).logits
    for ivs in cases:
        a, b = _both(pair, ivs)
        assert torch.equal(a.logits, b.logits), ivs
        assert not torch.equal(a.logits, plain_logits), f"{ivs} changed nothing: the test could not fail"


def test_no_leaked_hooks_and_accelerate_hooks_intact_after_exception(pair):
    sharded, plain = pair
    model = sharded.model
    inp = batch("llama")
    before_hooks, before_acc = _our_hooks(model), _accelerate_state(model)
    assert len(before_acc) > 5
    reference = plain.model(**inp).logits
    with pytest.raises(RuntimeError, match="user code"):
        with sharded.trace(inp) as tr:
            tr.cache("resid_post.*")
            tr.knockout(layers=[1], keys=0)
            tr.steer("resid_post.1", vector=torch.ones(32), scale=2.0)
            raise RuntimeError("user code")
    assert _our_hooks(model) == before_hooks and hooks.attention.active_handlers() == 0

    def boom(x):
        raise ValueError("inside forward")

    with pytest.raises(ValueError, match="inside forward"):  # raised inside a disk-offloaded layer
        sharded.run(inp, [Cache("attn_pattern.1"), Edit("mlp_out.1", fn=boom)])
    assert _our_hooks(model) == before_hooks and hooks.attention.active_handlers() == 0
    assert _accelerate_state(model) == before_acc
    # the dispatch still works: weights come back from disk and the function is unchanged
    assert all(p.device.type == "meta" for p in model.model.layers[1].parameters())
    assert torch.equal(model(**inp).logits, reference)


@pytest.mark.parametrize("how", ["embedding_on_disk", "auto_all_offloaded"])
def test_first_weights_offloaded_and_device_map_auto(saved, pair, how):
    """Inputs must not follow offloaded ("meta") weights: HookedModel.device skips them."""
    if how == "embedding_on_disk":
        dm = {**DISK_MAP, "model.embed_tokens": "disk", "model.layers.0": "disk", "lm_head": "cpu"}
        hm = hooks.load(saved / "model", device_map=dm, offload_folder=saved / f"off_{how}")
        assert hm.model.model.embed_tokens.weight.device.type == "meta"
    else:
        hm = hooks.load(saved / "model", device_map="auto", max_memory={"cpu": "20KB"},
                        offload_folder=saved / f"off_{how}")
        assert set(hm.model.hf_device_map.values()) == {"disk"}
    assert hm.device.type == "cpu"
    ivs = [Cache(["resid_post.*", "attn_pattern.0"]), Knockout(layers=[0], queries="last", keys=0, mode="zero")]
    a, b = hm.run(batch("llama"), ivs), pair[1].run(batch("llama"), ivs)
    assert torch.equal(a.logits, b.logits)
    assert all(torch.equal(a.cache[k], b.cache[k]) for k in b.cache)
