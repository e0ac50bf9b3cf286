"""Per-call sites: ALBERT runs ONE layer module once per layer (Lan et al. 2020, §3.1 cross-layer
parameter sharing), so ``resid_post.L`` is the ``L``-th call of that module (hooks.calls,
hooks.infer_shared). Known answers: the model's own ``output_hidden_states`` per layer, and
"an edit at layer L changes layers >= L only"."""
from __future__ import annotations

import warnings

import pytest
import torch

import hooks
from hooks import Ablate, Cache, Edit, Knockout, Patch, Steer
from hooks.verify import SiteCheckWarning

N = 4  # layers (all one module)


@pytest.fixture(scope="module")
def albert():
    import transformers as T

    torch.manual_seed(0)
    cfg = T.AlbertConfig(vocab_size=64, embedding_size=16, hidden_size=32, num_hidden_layers=N, num_attention_heads=4,
                         intermediate_size=64, max_position_embeddings=64, pad_token_id=0)
    cfg._attn_implementation = "sdpa"
    model = T.AlbertForMaskedLM(cfg).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error", SiteCheckWarning)  # every site passes the load-time self-check
        hm = hooks.wrap(model)
    return hm


def _ids(seed=0, B=2, P=6):
    return torch.randint(3, 60, (B, P), generator=torch.Generator().manual_seed(seed))


def _hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def _cache(hm, ids, *ivs):
    res = hm.run({"input_ids": ids, "attention_mask": torch.ones_like(ids)},
                 [*ivs, Cache(["resid_pre.*", "resid_mid.*", "resid_post.*", "attn_out.*", "mlp_out.*"], "all",
                              layout="padded")], output_hidden_states=True)
    return res.cache, res.output


def test_one_module_gives_n_layers_of_sites(albert):
    hm = albert
    assert hm.n_layers == N and hm.adapter.extra["shared_block"]
    mods = {id(hm.resolve_sites(f"resid_post.{L}")[0].module) for L in range(N)}
    assert len(mods) == 1  # the same module ...
    assert [hm.resolve_sites(f"resid_post.{L}")[0].call for L in range(N)] == list(range(N))  # ... its L-th call
    assert hm.site_report["removed"] == {}
    assert hm.adapter.extra["composition"] == ["post_norm"] * N


def test_cache_is_the_hidden_states_per_layer(albert):
    c, out = _cache(albert, _ids())
    hs = out.hidden_states
    assert len(hs) == N + 1
    for L in range(N):
        assert torch.allclose(c[f"resid_pre.{L}"], hs[L], atol=1e-6)
        assert torch.allclose(c[f"resid_post.{L}"], hs[L + 1], atol=1e-6)
    # the layers really differ (not the first or last call N times)
    assert not torch.allclose(c["attn_out.0"], c["attn_out.1"])


def test_steering_layer_2_changes_layers_from_2_only(albert):
    ids = _ids(1)
    clean, _ = _cache(albert, ids)
    v = torch.randn(32, generator=torch.Generator().manual_seed(3))
    for site in ("resid_post.2", "attn_out.2", "mlp_out.2", "resid_pre.2"):
        got, _ = _cache(albert, ids, Steer(site, vector=v, scale=5.0))
        for L in range(2):
            assert torch.equal(got[f"resid_post.{L}"], clean[f"resid_post.{L}"]), (site, L)
        assert torch.equal(got["resid_pre.2"], clean["resid_pre.2"]) or site == "resid_pre.2"
        for L in range(2, N):
            assert not torch.allclose(got[f"resid_post.{L}"], clean[f"resid_post.{L}"]), (site, L)
    # every forward of one trace counts its layers afresh
    with albert.trace() as tr:
        tr.steer("resid_post.2", vector=v, scale=5.0)
        first, second = tr.run(ids).logits, tr.run(ids).logits
    assert torch.equal(first, second)
    assert not torch.allclose(first, albert.run(ids).logits)
    # scale 0 is the identity
    got, _ = _cache(albert, ids, Steer("resid_post.2", vector=v, scale=0.0))
    assert all(torch.equal(got[k], clean[k]) for k in clean)


def test_ablate_patch_knockout_hit_one_layer(albert):
    hm = albert
    ids, src = _ids(2), _ids(5)
    clean, _ = _cache(hm, ids)
    source, _ = _cache(hm, src)
    # ablating attn_out.1: layer 1's resid_mid is LN1(resid_pre.1 + 0); layer 0 untouched
    got, _ = _cache(hm, ids, Ablate("attn_out.1", method="zero"))
    assert torch.equal(got["resid_post.0"], clean["resid_post.0"])
    assert torch.all(got["attn_out.1"] == 0) and not torch.all(clean["attn_out.1"] == 0)
    ln1 = hm.model.get_submodule(hm.adapter.extra["norms"][1][0])
    with torch.no_grad():
        assert torch.allclose(got["resid_mid.1"], ln1(got["resid_pre.1"]), atol=1e-6)
    # patching resid_post.2 from another input: layer 2's output is the source's, layers 0-1 the clean ones
    got, _ = _cache(hm, ids, Patch("resid_post.2", source={"input_ids": src, "attention_mask": torch.ones_like(src)}))
    assert torch.allclose(got["resid_post.2"], source["resid_post.2"], atol=1e-6)
    assert torch.equal(got["resid_post.1"], clean["resid_post.1"])
    assert torch.allclose(got["resid_post.3"], source["resid_post.3"], atol=1e-5)  # (layer 3 sees only layer 2)
    # knockout of layer 3's attention (self-only keys): layers 0-2 untouched, layer 3 changed
    got, _ = _cache(hm, ids, Knockout(layers=[3], queries="all", keys="all", method="mask"))
    for L in range(3):
        assert torch.equal(got[f"resid_post.{L}"], clean[f"resid_post.{L}"])
    assert not torch.allclose(got["resid_post.3"], clean["resid_post.3"])
    # each layer's attention pattern is its own call's
    res = hm.run(ids, [Cache(["attn_pattern.0", "attn_pattern.3"], "all")])
    assert not torch.allclose(res.cache["attn_pattern.0"], res.cache["attn_pattern.3"])


def test_call_count_restarts_after_a_failed_or_stopped_forward(albert):
    hm = albert
    ids = _ids(3)
    clean, _ = _cache(hm, ids)
    n0 = _hooks(hm.model)

    def boom(x):
        raise RuntimeError("planted failure in layer 1")

    with pytest.raises(RuntimeError, match="planted failure"):
        hm.run(ids, [Edit("resid_post.1", fn=boom)])
    assert _hooks(hm.model) == n0  # nothing of ours left behind
    with hm.trace(stop_after="resid_post.1") as tr:
        c = tr.cache("resid_post.*")
        tr.run(ids)
    assert sorted(c) == ["resid_post.0", "resid_post.1"]  # stopped after layer 1's call, not the first call
    assert _hooks(hm.model) == n0
    got, _ = _cache(hm, ids)
    assert all(torch.equal(got[k], clean[k]) for k in clean)
    # a stray call of the shared layer between forwards does not shift the next forward's layers
    block = hm.resolve_sites("resid_post.0")[0].module
    with hm.trace() as tr:
        c = tr.cache("resid_post.*")
        with torch.no_grad():
            block(clean["resid_pre.0"])
        tr.run(ids)
    assert all(torch.equal(c[f"resid_post.{L}"], clean[f"resid_post.{L}"]) for L in range(N))


def test_distinct_blocks_get_no_call_counting():
    """Models whose blocks are distinct modules keep plain module hooks: no binding is per-call and
    a trace adds exactly one hook per site (no counters)."""
    from .tiny_models import build

    hm = hooks.wrap(build("llama"))
    assert not hm.adapter.extra.get("shared_block")
    assert all(b.call is None for b in hm._table.values())
    n0 = _hooks(hm.model)
    with hm.trace() as tr:
        tr.cache(["resid_pre.*", "resid_post.*"])
        assert _hooks(hm.model) - n0 == 1 + 2 * hm.n_layers  # (+1: the batch-context hook of the root)
        assert tr._counters == {}
    assert _hooks(hm.model) == n0


def test_groups_of_shared_layers_run_in_turn():
    """``num_hidden_groups=2`` over 4 layers: layers 0-1 are group 0's two calls, 2-3 group 1's."""
    import transformers as T

    torch.manual_seed(0)
    cfg = T.AlbertConfig(vocab_size=64, embedding_size=16, hidden_size=32, num_hidden_layers=4, num_hidden_groups=2,
                         num_attention_heads=4, intermediate_size=64, max_position_embeddings=64, pad_token_id=0)
    model = T.AlbertForMaskedLM(cfg).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error", SiteCheckWarning)
        hm = hooks.wrap(model)
    groups = model.albert.encoder.albert_layer_groups
    got = [(hm.resolve_sites(f"resid_post.{L}")[0].module, hm.resolve_sites(f"resid_post.{L}")[0].call) for L in range(4)]
    assert got == [(groups[0], 0), (groups[0], 1), (groups[1], 0), (groups[1], 1)]
    ids = _ids(4)
    clean, out = _cache(hm, ids)
    for L in range(4):
        assert torch.allclose(clean[f"resid_post.{L}"], out.hidden_states[L + 1], atol=1e-6)
    steered, _ = _cache(hm, ids, Steer("resid_post.2", vector=torch.ones(32), scale=3.0))
    assert all(torch.equal(steered[f"resid_post.{L}"], clean[f"resid_post.{L}"]) for L in range(2))
    assert all(not torch.allclose(steered[f"resid_post.{L}"], clean[f"resid_post.{L}"]) for L in range(2, 4))


def test_blocks_that_each_run_several_times_are_refused():
    """``inner_group_num=2``: a ModuleList of 2 layers, each run twice per forward, interleaved. Its
    modules are not the config's layers; plain module hooks would mix calls, so wrapping refuses."""
    import transformers as T

    from hooks.errors import UnsupportedModelError

    torch.manual_seed(0)
    cfg = T.AlbertConfig(vocab_size=64, embedding_size=16, hidden_size=32, num_hidden_layers=2, inner_group_num=2,
                         num_attention_heads=4, intermediate_size=64, max_position_embeddings=64)
    with pytest.raises(UnsupportedModelError, match="run more than once per forward"):
        hooks.wrap(T.AlbertForMaskedLM(cfg).eval())


def test_block_removal_is_refused_on_a_shared_layer(albert):
    """interp.topology.skip_blocks hooks the block module itself: on ALBERT that would skip every
    layer, so it is refused with the reason (and leaves no hook behind)."""
    from hooks.errors import HookError
    from interp.topology.pruning import skip_blocks

    before = _hooks(albert.model)
    with pytest.raises(HookError, match="share one module"):
        with skip_blocks(albert, [1]):
            pass
    assert _hooks(albert.model) == before
