"""TransformerLens adapter: known answers on a tiny HookedTransformer with a local word-level tokenizer."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

tl = pytest.importorskip("transformer_lens")
pytestmark = pytest.mark.filterwarnings("ignore:HookedTransformer.*deprecated:DeprecationWarning")

import hooks  # noqa: E402
from hooks import attention  # noqa: E402

TEXTS = ["the cat sat on a mat", "a dog ran"]  # 7 and 4 tokens with BOS -> padding
WORDS = "the cat sat on a mat dog ran far away big small red blue".split()

# canonical site -> TL hook name ("{L}" per layer); "final" and "logits" are checked separately
TL_NAMES = {
    "embed": "hook_embed",
    "resid_pre": "blocks.{L}.hook_resid_pre",
    "attn_scores": "blocks.{L}.attn.hook_attn_scores",
    "attn_pattern": "blocks.{L}.attn.hook_pattern",
    "head_out": "blocks.{L}.attn.hook_z",
    "attn_out": "blocks.{L}.hook_attn_out",
    "resid_mid": "blocks.{L}.hook_resid_mid",
    "mlp_out": "blocks.{L}.hook_mlp_out",
    "resid_post": "blocks.{L}.hook_resid_post",
}


def tiny_tokenizer(path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<bos>": 1, "<eos>": 2, "<unk>": 3, **{w: 4 + i for i, w in enumerate(WORDS)}}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<bos>", eos_token="<eos>",
                                  pad_token="<pad>", unk_token="<unk>")
    tok.save_pretrained(path)  # reloading gives it a name_or_path, which TL's set_tokenizer needs
    return PreTrainedTokenizerFast.from_pretrained(path)


def build(tokenizer=None, seed=0):
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    torch.manual_seed(seed)
    cfg = HookedTransformerConfig(n_layers=2, d_model=32, n_ctx=32, d_head=8, n_heads=4, d_vocab=50,
                                  act_fn="gelu", normalization_type="LN")
    model = HookedTransformer(cfg, tokenizer=tokenizer).eval()
    with torch.no_grad():  # TL initialises norms to 1/0 and biases to 0: perturb so every term matters
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return tiny_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def tl_hm(tok):
    return hooks.wrap(build(tok))


def hook_count(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def attn_out_by_hand(attn, pattern, v):
    z = torch.einsum("bhqk,bkhd->bqhd", pattern, v)
    return torch.einsum("bqhd,hdm->bqm", z, attn.W_O) + attn.b_O


def test_import_hooks_does_not_import_transformer_lens():
    code = ("import sys, hooks, interp; from hooks.adapters import all_adapters, find_adapter; "
            "names = [a.name for a in all_adapters()]; assert 'transformer_lens' in names and 'fair_esm' in names, names; "
            "assert 'transformer_lens' not in sys.modules and 'esm' not in sys.modules")
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]


def test_matches_adapter_and_lists_sites(tl_hm):
    assert tl_hm.adapter.name == "transformer_lens" and tl_hm.attention_enabled
    s = tl_hm.sites
    assert s["head_out.1"] == "B×P×4×8" and s["attn_scores.0"] == "B×4×P×P" and s["logits"] == "B×P×50"


@pytest.mark.parametrize("side", ["right", "left"])
@torch.no_grad()
def test_cache_equals_tl_run_with_cache(tl_hm, side):
    model = tl_hm.model
    inputs = tl_hm.backend.prepare(tl_hm, TEXTS, padding_side=side)
    am = inputs["attention_mask"]
    assert am.sum(1).tolist() == [7, 4] and bool(am[1, 0] if side == "right" else am[1, -1])
    rows = [r[m.bool()] for r, m in zip(inputs["input_ids"], am)]
    again = tl_hm.backend.prepare(tl_hm, rows, padding_side=side)  # token rows are padded the same way
    assert all(torch.equal(again[k], inputs[k]) for k in inputs)
    res = tl_hm.run(inputs, [hooks.Cache("*")])
    logits, cache = model.run_with_cache(inputs["input_ids"], attention_mask=am)
    for site, name in TL_NAMES.items():
        for L in range(model.cfg.n_layers) if "{L}" in name else [None]:
            ours = res.cache[site if L is None else f"{site}.{L}"]
            torch.testing.assert_close(ours, cache[name.format(L=L)], rtol=0, atol=0)
    ln = model.ln_final
    torch.testing.assert_close(res.cache["final"], cache["ln_final.hook_normalized"] * ln.w + ln.b, rtol=0, atol=0)
    torch.testing.assert_close(res.cache["logits"], logits, rtol=0, atol=0)
    torch.testing.assert_close(res.logits, logits, rtol=0, atol=0)
    # padding is honest: each padded row equals the same text run alone (positions from the mask)
    alone = model(model.to_tokens(TEXTS[1]))[0]
    torch.testing.assert_close(res.logits[1][am[1].bool()], alone, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_zero_ablate_attn_out_equals_zeroed_W_O(tl_hm, tok):
    L = 0
    ablated = tl_hm.run(TEXTS, [hooks.Ablate(f"attn_out.{L}")])
    ref = build(tok)
    ref.load_state_dict(tl_hm.model.state_dict())
    ref.blocks[L].attn.W_O.data.zero_()
    ref.blocks[L].attn.b_O.data.zero_()
    am = ablated.inputs["attention_mask"]
    expected = ref(ablated.inputs["input_ids"], attention_mask=am)
    real = am.bool()
    torch.testing.assert_close(ablated.logits[real], expected[real])
    assert not torch.allclose(ablated.logits[real], tl_hm.run(TEXTS).logits[real])


@torch.no_grad()
def test_patch_with_own_cache_is_identity_and_resid_pre_patch_transplants_run(tl_hm):
    clean = tl_hm.run(TEXTS, [hooks.Cache(["resid_post.*", "head_out.*"])])
    patched = tl_hm.run(TEXTS, [hooks.Patch(["resid_post.*", "head_out.*"], source=clean.cache)])
    assert torch.equal(patched.logits, clean.logits)
    a, b = ["the cat sat", "a big dog"], ["red blue mat", "far away ran"]
    res = tl_hm.run(a, [hooks.Patch("resid_pre.1", source=b)])
    target = tl_hm.run(b).logits
    assert torch.equal(res.logits, target)
    assert not torch.allclose(tl_hm.run(a).logits, target)


@torch.no_grad()
def test_knockout_mask_all_but_self_is_attention_to_own_value(tl_hm):
    L = 1
    model = tl_hm.model
    res = tl_hm.run(TEXTS, [
        hooks.Knockout(layers=[L], queries="all", keys="others", mode="mask"),
        hooks.Cache([f"attn_out.{L}", f"attn_pattern.{L}"]),
    ])
    ids, am = res.inputs["input_ids"], res.inputs["attention_mask"]
    real = am.bool()
    pat = res.cache[f"attn_pattern.{L}"].permute(0, 2, 1, 3)[real]
    eye = torch.eye(ids.shape[1])[None].expand(ids.shape[0], -1, -1)[real]
    assert torch.equal(pat, eye[:, None, :].expand_as(pat))
    _, clean = model.run_with_cache(ids, attention_mask=am)  # v at layer L does not depend on layer-L attention
    v = clean[f"blocks.{L}.attn.hook_v"]
    own = torch.einsum("bqhd,hdm->bqm", v, model.blocks[L].attn.W_O) + model.blocks[L].attn.b_O
    torch.testing.assert_close(res.cache[f"attn_out.{L}"][real], own[real])


@torch.no_grad()
def test_knockout_zero_leaves_rest_unnormalised(tl_hm):
    L = 0
    model = tl_hm.model
    res = tl_hm.run(TEXTS, [
        hooks.Knockout(layers=[L], queries="all", keys=0, mode="zero"),  # the BOS of each row
        hooks.Cache([f"attn_pattern.{L}", f"attn_out.{L}"]),
    ])
    ids, am = res.inputs["input_ids"], res.inputs["attention_mask"]
    _, clean = model.run_with_cache(ids, attention_mask=am)
    ref = clean[f"blocks.{L}.attn.hook_pattern"]
    pat = res.cache[f"attn_pattern.{L}"]
    rq = am.bool()[:, None, :].expand(pat.shape[:3])
    assert bool((pat[..., 0][rq] == 0).all())
    assert torch.equal(pat[..., 1:][rq], ref[..., 1:][rq])
    torch.testing.assert_close(pat.sum(-1)[rq], 1 - ref[..., 0][rq])
    expected = attn_out_by_hand(model.blocks[L].attn, pat, clean[f"blocks.{L}.attn.hook_v"])
    torch.testing.assert_close(res.cache[f"attn_out.{L}"][am.bool()], expected[am.bool()])


def test_exception_inside_trace_leaves_no_hooks(tl_hm):
    model = tl_hm.model
    before = hook_count(model)
    tl_before = {n: len(m.fwd_hooks) for n, m in model.hook_dict.items()}

    def boom(x):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        with tl_hm.trace(TEXTS) as tr:
            tr.cache("attn_pattern.*")
            tr.knockout(layers=[1], keys=0, mode="mask")
            tr.edit("resid_mid.1", fn=boom)
    assert hook_count(model) == before and attention.active_handlers() == 0
    with pytest.raises(KeyError):
        with tl_hm.trace(TEXTS) as tr:
            tr.steer("resid_post.0", vector=torch.ones(32))
            raise KeyError("user code")
    assert hook_count(model) == before and attention.active_handlers() == 0
    assert {n: len(m.fwd_hooks) for n, m in model.hook_dict.items()} == tl_before


@torch.no_grad()
def test_user_and_tl_hooks_survive_trace(tl_hm):
    model = tl_hm.model
    torch_calls, tl_calls = [], []
    h = model.blocks[0].register_forward_hook(lambda m, a, o: torch_calls.append(1))
    model.blocks[0].hook_resid_post.add_hook(lambda x, hook: tl_calls.append(hook.name))
    try:
        tl_hm.run(TEXTS, [hooks.Cache("resid_post.0"), hooks.Ablate("attn_out.1")])
        assert len(torch_calls) == 1 and tl_calls == ["blocks.0.hook_resid_post"]
        model(model.to_tokens("the cat"))
        assert len(torch_calls) == 2 and len(tl_calls) == 2
    finally:
        h.remove()
        model.reset_hooks()  # TL removes its own hook and only it
    assert len(model.blocks[0].hook_resid_post.fwd_hooks) == 0 and hook_count(model) == 0


@torch.no_grad()
def test_generate_matches_tl_generate_and_interventions_act(tl_hm):
    model = tl_hm.model
    prompts = ["the cat", "a dog ran far"]
    out = tl_hm.generate(prompts, max_new_tokens=4)
    assert out.prompt_len == 5 and out.sequences.shape == (2, 9)
    for i, p in enumerate(prompts):  # left-padded batch == each prompt alone through TL's own generate
        ref = model.generate(model.to_tokens(p), max_new_tokens=4, do_sample=False, stop_at_eos=False, verbose=False)
        assert out.sequences[i, -4:].tolist() == ref[0, -4:].tolist()
    bias = torch.zeros(50)
    bias[7] = 1e4
    steered = tl_hm.generate(prompts, [hooks.Steer("logits", vector=bias)], max_new_tokens=3)
    assert steered.sequences[:, -3:].tolist() == [[7, 7, 7]] * 2
    # apply_to="new": the first new token is read off the last *prompt* position, so it stays clean
    new_only = tl_hm.generate(prompts, [hooks.Steer("logits", vector=bias, apply_to="new")], max_new_tokens=3)
    assert new_only.sequences[:, -3].tolist() == out.sequences[:, 5].tolist()
    assert new_only.sequences[:, -2:].tolist() == [[7, 7]] * 2
    cached = tl_hm.generate(prompts, [hooks.Cache("resid_post.1", positions="last")], max_new_tokens=3)
    assert cached.cache["resid_post.1"].shape == (2, 3, 32)  # one row per step
    assert cached.cache.masks["resid_post.1"].shape == (2, 5 + 2)  # prompt window, then one position per step


def test_load_tl(tok):
    model = build(tok, seed=1)
    hm = hooks.adapters.transformer_lens.load_tl(model)
    assert hm.model is model and hm.tokenizer is model.tokenizer
    with pytest.raises(hooks.HookError, match="TransformerLens could not load"):
        hooks.load("tl:definitely-not-a-model")
    with pytest.raises(hooks.HookError, match="no tokenizer"):
        hooks.wrap(build()).run(["the cat"])
