"""Structural inference (hooks.infer) and the load-time self-check (hooks.verify) on tiny configs.

Known answers: the block kinds of the architectures' own code (GPT-NeoX ``use_parallel_residual``,
OLMo-2's post-sublayer norms, BERT's post-norm blocks, Mixtral's MoE), the residual identities of
each kind on a ragged batch, and a planted wrong adapter path that the self-check must remove.
"""
import warnings

import pytest
import torch

import hooks
from hooks import Cache, HookError, Steer, UnknownSiteError
from hooks.adapters.base import Adapter, Site
from hooks.verify import SiteCheckWarning

from .tiny_models import batch

pytestmark = pytest.mark.filterwarnings("ignore:.*must be `None` or an integer.*")


def _tiny(name):
    import transformers as T

    torch.manual_seed(0)
    base = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, vocab_size=64,
                max_position_embeddings=64, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    cfg, cls = {
        "gpt_neox": (lambda: T.GPTNeoXConfig(**base), T.GPTNeoXForCausalLM),
        "gpt_neox_seq": (lambda: T.GPTNeoXConfig(**base, use_parallel_residual=False), T.GPTNeoXForCausalLM),
        "olmo2": (lambda: T.Olmo2Config(**base, num_key_value_heads=2), T.Olmo2ForCausalLM),
        "bert": (lambda: T.BertConfig(**base), T.BertForMaskedLM),
        "mixtral": (lambda: T.MixtralConfig(**base, num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2),
                    T.MixtralForCausalLM),
        "llama": (lambda: T.LlamaConfig(**base, num_key_value_heads=2), T.LlamaForCausalLM),
    }[name]
    c = cfg()
    c._attn_implementation = "sdpa"
    return cls(c).eval()


def _hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


EXPECT = {  # name -> (composition, attn_out path of layer 1, mlp_out path of layer 1, resid_mid present)
    "gpt_neox": ("parallel", "gpt_neox.layers.1.attention", "gpt_neox.layers.1.mlp", False),
    "gpt_neox_seq": ("sequential", "gpt_neox.layers.1.attention", "gpt_neox.layers.1.mlp", True),
    "olmo2": ("sequential", "model.layers.1.post_attention_layernorm", "model.layers.1.post_feedforward_layernorm", True),
    "bert": ("post_norm", "bert.encoder.layer.1.attention.output.dense", "bert.encoder.layer.1.output.dense", True),
    "mixtral": ("sequential", "model.layers.1.self_attn", "model.layers.1.mlp", True),
}


@pytest.mark.parametrize("name", sorted(EXPECT))
def test_inferred_sites_follow_the_block_kind(name):
    model = _tiny(name)
    before = _hooks(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SiteCheckWarning)  # nothing may fail the self-check
        hm = hooks.wrap(model)
    assert _hooks(model) == before  # neither inference nor the self-check leaves a hook behind
    comp, attn, mlp, has_mid = EXPECT[name]
    assert hm.adapter.extra["inferred"] and hm.adapter.extra["composition"] == [comp, comp]
    t = hm._table
    assert t["attn_out.1"].module is model.get_submodule(attn)
    assert t["mlp_out.1"].module is model.get_submodule(mlp)
    assert ("resid_mid.1" in t) == has_mid
    assert {"attn_pattern.0", "attn_scores.1", "head_out.1", "embed", "logits"} <= set(t)
    if not has_mid:
        assert "parallel residual" in hm.sites["resid_mid.0"]
        with pytest.raises(UnknownSiteError, match="parallel residual"):
            hm.resolve_sites("resid_mid.0")
    # the residual identities of this block kind hold on a ragged batch
    fam = "esm" if name == "bert" else "llama"
    inp = batch(fam)
    inp["input_ids"] = inp["input_ids"].clamp(max=63)
    c = hm.run(inp, [Cache("*", layout="padded")], output_hidden_states=True)
    real = inp["attention_mask"].bool()
    hs = c.output.hidden_states
    for L in range(2):
        pre, post, a, m = (c.cache[f"{k}.{L}"][real] for k in ("resid_pre", "resid_post", "attn_out", "mlp_out"))
        if comp == "parallel":
            torch.testing.assert_close(pre + a + m, post, rtol=0, atol=1e-5)
        elif comp == "sequential":
            mid = c.cache[f"resid_mid.{L}"][real]
            torch.testing.assert_close(pre + a, mid, rtol=0, atol=1e-5)
            torch.testing.assert_close(mid + m, post, rtol=0, atol=1e-5)
        if L == 0:
            torch.testing.assert_close(post, hs[1][real], rtol=0, atol=0)
    if comp == "post_norm":  # resid_mid = LN1(resid_pre + attn_out), resid_post = LN2(resid_mid + mlp_out)
        ln1 = model.get_submodule("bert.encoder.layer.0.attention.output.LayerNorm")
        ln2 = model.get_submodule("bert.encoder.layer.0.output.LayerNorm")
        with torch.no_grad():
            mid = ln1(c.cache["resid_pre.0"] + c.cache["attn_out.0"])
            torch.testing.assert_close(mid[real], c.cache["resid_mid.0"][real], rtol=0, atol=1e-5)
            torch.testing.assert_close(ln2(mid + c.cache["mlp_out.0"])[real], c.cache["resid_post.0"][real],
                                       rtol=0, atol=1e-5)


def test_head_out_sums_to_attn_out_through_the_output_projection():
    model = _tiny("gpt_neox")
    hm = hooks.wrap(model)
    ids = torch.randint(3, 60, (2, 5))
    c = hm.run(ids, [Cache(["head_out.1", "attn_out.1"])]).cache
    dense = model.get_submodule("gpt_neox.layers.1.attention.dense")
    W = dense.weight.view(32, 4, 8)  # (out, heads, head_dim)
    per_head = torch.einsum("bphd,ohd->bpho", c["head_out.1"], W)
    torch.testing.assert_close(per_head.sum(2) + dense.bias, c["attn_out.1"], rtol=0, atol=1e-5)


def test_planted_wrong_path_is_removed_with_a_warning():
    model = _tiny("llama")
    good = hooks.adapters.find_adapter(model)
    wrong = Adapter(name="planted", layers="layers", bases=("model",), model_types=("llama",), attention_backend="hf",
                    sites={**{k: v for k, v in __import__("hooks.adapters.llama", fromlist=["SITES"]).SITES.items()},
                           "mlp_out": Site("layers.{L}.input_layernorm"),  # same shape, wrong module
                           "resid_post": Site("layers.{L}.mlp")})  # the MLP output is not the block output
    with pytest.warns(SiteCheckWarning) as rec:
        hm = hooks.wrap(model, adapter=wrong)
    msg = " ".join(str(w.message) for w in rec)
    for name in ("mlp_out.0", "mlp_out.1", "resid_post.0"):
        assert name in msg and name not in hm.site_names
        assert hm.sites[name].startswith("absent: removed by the load-time self-check")
    assert "output_hidden_states[1]" in msg and "resid_mid + mlp_out != resid_post" in msg
    assert {"attn_out.0", "resid_mid.1", "resid_pre.1"} <= set(hm.site_names)  # the right ones stay
    with pytest.raises(UnknownSiteError, match="self-check"):
        hm.run(torch.tensor([[5, 6, 7]]), [Cache("mlp_out.0")])
    # the hand-written adapter passes, and verify=False skips the check entirely
    with warnings.catch_warnings():
        warnings.simplefilter("error", SiteCheckWarning)
        assert hooks.wrap(model).site_report["removed"] == {}
    assert "mlp_out.0" in hooks.wrap(model, adapter=wrong, verify=False).site_names
    assert good.name == "llama"


def test_unsupported_non_transformers_model_still_refused():
    with pytest.raises(hooks.UnsupportedModelError, match="not a transformers model"):
        hooks.wrap(torch.nn.Sequential(torch.nn.Linear(2, 2)))


def test_transformer_lens_hook_names_are_aliases():
    from .tiny_models import build

    hm = hooks.wrap(build("gpt2"))
    ids = torch.tensor([[5, 6, 7, 8], [9, 10, 11, 12]])
    tl = hm.run(ids, [Cache(["blocks.1.hook_resid_post", "blocks.0.attn.hook_pattern", "hook_embed",
                             "ln_final.hook_normalized", "blocks.1.attn.hook_z"])]).cache
    ours = hm.run(ids, [Cache(["resid_post.1", "attn_pattern.0", "embed", "final", "head_out.1"])]).cache
    assert set(tl) == set(ours)
    for k in ours:
        assert torch.equal(tl[k], ours[k]), k
    assert [b.name for b in hm.resolve_sites("blocks.*.hook_mlp_out")] == ["mlp_out.0", "mlp_out.1"]


@pytest.mark.filterwarnings("ignore")
def test_hybrid_stack_has_attention_sites_only_on_attention_layers():
    from tools.tiny_configs import build as build_tiny

    model = build_tiny("jamba")  # layer 0: Mamba mixer, layer 1: attention (attn_layer_period=2, offset=1)
    kinds = [type(layer).__name__ for layer in model.model.layers]
    assert "Mamba" in kinds[0] and "Attention" in kinds[1]
    hm = hooks.wrap(model)
    assert hm.site_report["removed"] == {}
    assert {"attn_pattern.1", "attn_out.1", "head_out.1", "mixer_out.0", "resid_mid.0", "mlp_out.0"} <= set(hm.site_names)
    assert not {"attn_pattern.0", "attn_out.0", "mixer_out.1"} & set(hm.site_names)
    assert hm.sites["attn_pattern.0"].startswith("absent: not an attention layer (JambaMambaMixer)")
    ids = torch.randint(3, 60, (2, 5))
    c = hm.run(ids, [Cache(["resid_pre.0", "mixer_out.0", "resid_mid.0", "mlp_out.0", "resid_post.0"])]).cache
    torch.testing.assert_close(c["resid_pre.0"] + c["mixer_out.0"], c["resid_mid.0"], rtol=0, atol=1e-5)
    torch.testing.assert_close(c["resid_mid.0"] + c["mlp_out.0"], c["resid_post.0"], rtol=0, atol=1e-5)


@pytest.mark.filterwarnings("ignore")
def test_inferred_vlm_spans_from_the_config_token_ids():
    from tools.tiny_configs import build as build_tiny

    model = build_tiny("qwen2_vl", "image_text")
    hm = hooks.wrap(model)
    cfg = model.config
    s, img, e = cfg.vision_start_token_id, cfg.image_token_id, cfg.vision_end_token_id
    ids = torch.tensor([[7, s, img, img, e, 8, 9], [0, 0, 7, s, img, e, 8]])
    am = torch.tensor([[1] * 7, [0, 0, 1, 1, 1, 1, 1]])
    sp = hm.spans(ids, am)
    assert sp["image"].tolist() == [[0, 0, 1, 1, 0, 0, 0], [0, 0, 0, 0, 1, 0, 0]]
    assert sp["boi"].tolist() == [[0, 1, 0, 0, 0, 0, 0], [0, 0, 0, 1, 0, 0, 0]]
    assert sp["eoi"].tolist() == [[0, 0, 0, 0, 1, 0, 0], [0, 0, 0, 0, 0, 1, 0]]
    assert sp["text"].tolist() == [[1, 0, 0, 0, 0, 1, 1], [0, 0, 1, 0, 0, 0, 1]]


def test_resid_mid_is_dropped_when_the_mlp_reads_a_copy_of_the_residual():
    from hooks.infer import infer_adapter

    model = _tiny("llama")
    assert infer_adapter(model).extra["layer_sites"][1]["resid_mid"].inplace
    # plant a block whose pre-MLP norm reads a copy: an in-place edit there would miss the residual
    h = model.model.layers[1].post_attention_layernorm.register_forward_pre_hook(lambda m, a: (a[0].clone(), *a[1:]))
    try:
        ad = infer_adapter(model)
    finally:
        h.remove()
    assert "resid_mid" in ad.extra["layer_sites"][0] and "resid_mid" not in ad.extra["layer_sites"][1]
    assert "different tensors" in ad.extra["absent"]["resid_mid.1"]


def test_nnsight_model_is_wrapped_through_its_module():
    nnsight = pytest.importorskip("nnsight")
    from .tiny_models import build

    model = build("gpt2")
    ids = torch.tensor([[5, 6, 7, 8]])
    want = hooks.wrap(model).run(ids, [Cache("resid_post.1")]).cache["resid_post.1"]
    hm = hooks.wrap(nnsight.NNsight(model))
    assert hm.model is model and hm.adapter.name == "gpt2"
    assert torch.equal(hm.run(ids, [Cache("resid_post.1")]).cache["resid_post.1"], want)


def _moe(kind):
    import transformers as T

    torch.manual_seed(0)
    base = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, vocab_size=64,
                max_position_embeddings=64, pad_token_id=0, bos_token_id=1, eos_token_id=2, num_key_value_heads=2)
    if kind == "mixtral":
        return T.MixtralForCausalLM(T.MixtralConfig(**base, num_local_experts=4, num_experts_per_tok=2)).eval()
    return T.Qwen2MoeForCausalLM(T.Qwen2MoeConfig(**base, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=16,
                                                  shared_expert_intermediate_size=16)).eval()


@pytest.mark.parametrize("kind", ["mixtral", "qwen2_moe"])
def test_router_logits_site_equals_output_router_logits(kind):
    """Known answer: ``router_logits.L`` (the router module's (B·P, E) output viewed as (B, P, E))
    is what the model itself returns with ``output_router_logits=True``."""
    model = _moe(kind)
    hm = hooks.wrap(model)
    assert [k for k in hm.site_names if k.startswith("router_logits")] == ["router_logits.0", "router_logits.1"]
    assert "Router" in type(hm._table["router_logits.0"].module).__name__
    ids = torch.randint(3, 60, (2, 5), generator=torch.Generator().manual_seed(0))
    am = torch.ones_like(ids)
    am[1, 3:] = 0
    res = hm.run({"input_ids": ids, "attention_mask": am}, [Cache("router_logits.*", "all", layout="padded")],
                 output_router_logits=True)
    for L in range(2):
        got, want = res.cache[f"router_logits.{L}"], res.output.router_logits[L].view(2, 5, 4)
        assert got.shape == (2, 5, 4)
        assert torch.equal(got[am.bool()], want[am.bool()])
    # the router returns (logits, scores, indices): it has routed before the site is seen, so edits are refused
    assert hm._table["router_logits.0"].readonly
    with pytest.raises(HookError, match="cached but not edited"):
        hm.run({"input_ids": ids, "attention_mask": am}, [Steer("router_logits.1", vector=torch.ones(4), scale=1.0)])


def _table(model, adapter):
    from hooks import sites as S

    names = {id(m): n for n, m in model.named_modules()}
    return {k: (names.get(id(b.module)), b.kind, b.layout, b.inplace) for k, b in S.build_table(model, adapter).items()}


@pytest.mark.parametrize("model_type", ["gpt2", "llama", "qwen3", "gemma", "gemma2"])
def test_hand_written_tables_are_what_inference_gives(model_type):
    """The pinned tables of gpt2.py / llama.py / gemma.py (kept: they skip inference's recording
    forwards at wrap, and the VLM adapters reuse them) are exactly the inferred ones: every site
    name, module path, hook kind, layout and in-place flag."""
    from hooks.adapters import find_adapter
    from hooks.infer import infer_adapter
    from tools.tiny_configs import build

    model = build(model_type, "causal")
    hand = find_adapter(model)
    assert not hand.name.startswith("inferred") and not hand.extends_inferred
    assert _table(model, hand) == _table(model, infer_adapter(model))
    assert (hand.position_ids, hand.padding_side) == (True, None)


def test_esm_is_a_thin_override_with_the_old_table():
    """ESM keeps only what inference cannot know (the embeddings module, CLS/EOS spans); the table
    is the one the hand-written adapter spelled out."""
    from hooks.adapters import esm
    from tools.tiny_configs import build

    model = build("esm", "masked")
    hm = hooks.wrap(model)
    assert hm.adapter.name == "esm" and hm.adapter.spans is esm.esm_spans
    assert (hm.adapter.padding_side, hm.adapter.position_ids) == ("right", False)
    got = _table(model, hm.adapter)
    old = {"embed": "esm.embeddings", "final": "esm.encoder.emb_layer_norm_after", "logits": "lm_head"}
    for L in range(hm.n_layers):
        p = f"esm.encoder.layer.{L}"
        old.update({f"resid_pre.{L}": p, f"attn_scores.{L}": f"{p}.attention.self", f"attn_pattern.{L}": f"{p}.attention.self",
                    f"head_out.{L}": f"{p}.attention.output.dense", f"attn_out.{L}": f"{p}.attention.output.dense",
                    f"resid_mid.{L}": f"{p}.LayerNorm", f"mlp_out.{L}": f"{p}.output.dense", f"resid_post.{L}": p})
    assert {k: v[0] for k, v in got.items()} == old
    assert got["resid_mid.0"][1:] == ("input", "BPD", True) and got["head_out.0"][1:] == ("input", "heads", False)
    explicit = hooks.wrap(model, adapter=esm.ADAPTER)  # passed by hand: still the override on inference
    assert _table(model, explicit.adapter) == got


def test_layers_spread_over_parallel_lists_xlm():
    """XLM keeps ``attentions[L]``, ``layer_norm1[L]``, ``ffns[L]``, ``layer_norm2[L]`` side by side
    (no block module): each layer is read as one post-norm block, and every residual site equals
    ``output_hidden_states`` at real tokens of a padded batch (XLM zeroes padding after each layer)."""
    import transformers as T

    torch.manual_seed(0)
    cfg = T.XLMConfig(vocab_size=64, emb_dim=32, n_layers=2, n_heads=4, max_position_embeddings=64, pad_index=2)
    model = T.XLMWithLMHeadModel(cfg).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error", SiteCheckWarning)
        hm = hooks.wrap(model)
    a = hm.adapter
    assert a.extra["composition"] == ["post_norm", "post_norm"]
    assert a.extra["layer_sites"][1]["resid_pre"].path == "transformer.attentions.1"
    assert a.extra["layer_sites"][1]["resid_post"].path == "transformer.layer_norm2.1"
    assert a.extra["layer_sites"][1]["mlp_out"].path == "transformer.ffns.1"
    ids = torch.randint(5, 60, (2, 6), generator=torch.Generator().manual_seed(0))
    am = torch.ones_like(ids)
    am[1, 4:] = 0
    res = hm.run({"input_ids": ids, "attention_mask": am}, [Cache("resid_post.*", "all", layout="padded")],
                 output_hidden_states=True)
    real = am.bool()
    for L in range(2):
        assert torch.allclose(res.cache[f"resid_post.{L}"][real], res.output.hidden_states[L + 1][real], atol=1e-6)
