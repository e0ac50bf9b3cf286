"""Known-answer tests of the hook registry on tiny random configs of every HF-backed family."""
import pytest
import torch

import hooks
from hooks import Ablate, Cache, Edit, Knockout, Patch, Steer

from .tiny_models import ALL, CAUSAL, batch, build, out_proj, value_proj


@pytest.fixture(scope="module", params=ALL)
def fam(request):
    f = request.param
    return f, build(f)


def _pos_ids(am):
    return (am.cumsum(-1) - 1).clamp(min=0)


def _hf(model, fam, inp, **kw):
    extra = {} if fam == "esm" else {"position_ids": _pos_ids(inp["attention_mask"]), "use_cache": False}
    with torch.no_grad():
        return model(**inp, **extra, **kw)


def test_cache_equals_output_hidden_states(fam):
    f, model = fam
    hm = hooks.wrap(model)
    inp = batch(f)
    res = hm.run(inp, [Cache(["resid_pre.0", "resid_post.*", "final", "logits"])])
    ref = _hf(model, f, inp, output_hidden_states=True)
    hs = ref.hidden_states
    assert torch.equal(res.cache["resid_pre.0"], hs[0])
    for L in range(hm.n_layers - 1):
        assert torch.equal(res.cache[f"resid_post.{L}"], hs[L + 1]), L
    assert torch.equal(res.cache["final"], hs[-1])
    raw = res.cache["logits"]
    cap = getattr(model.config, "final_logit_softcapping", None)
    if cap:  # Gemma 2: the logits site is the unembedding output, before soft-capping
        raw = torch.tanh(raw / cap) * cap
    torch.testing.assert_close(raw, ref.logits, rtol=0, atol=1e-6 if cap else 0)
    assert torch.equal(res.logits, ref.logits)


def test_zero_ablate_attn_out_equals_zeroed_projection(fam):
    f, model = fam
    hm = hooks.wrap(model)
    inp = batch(f)
    got = hm.run(inp, [Ablate("attn_out.1")]).logits
    proj = model.get_submodule(out_proj(f, 1))
    saved = {k: v.clone() for k, v in proj.state_dict().items()}
    try:
        with torch.no_grad():
            for p in proj.parameters():
                p.zero_()
        want = hm.run(inp).logits
    finally:
        proj.load_state_dict(saved)
    clean = hm.run(inp).logits
    real = inp["attention_mask"].bool()  # "all" = real tokens; padding is never ablated
    assert not torch.allclose(clean[real], want[real])
    torch.testing.assert_close(got[real], want[real], rtol=0, atol=1e-6)


def test_patch_with_own_cache_is_identity(fam):
    f, model = fam
    hm = hooks.wrap(model)
    inp = batch(f)
    clean = hm.run(inp, [Cache(["resid_pre.1", "head_out.0", "attn_out.1"])])
    patched = hm.run(inp, [Patch(["resid_pre.1", "head_out.0", "attn_out.1"], source=clean.cache)])
    assert torch.equal(patched.logits, clean.logits)


def test_patch_resid_pre_from_other_run_reproduces_its_logits(fam):
    f, model = fam
    hm = hooks.wrap(model)
    a, b = batch(f, seed=1), batch(f, seed=2)
    assert torch.equal(a["attention_mask"], b["attention_mask"]) and not torch.equal(a["input_ids"], b["input_ids"])
    want = hm.run(b).logits
    got = hm.run(a, [Patch("resid_pre.1", source=b)]).logits
    assert not torch.allclose(hm.run(a).logits, want)
    real = a["attention_mask"].bool()
    torch.testing.assert_close(got[real], want[real], rtol=1e-5, atol=1e-5)


def test_knockout_all_other_keys_gives_attention_over_self(fam):
    f, model = fam
    hm = hooks.wrap(model)
    inp = batch(f)
    vpath = value_proj(f, 0)
    res = hm.run(inp, [Knockout(layers=[0], keys="others", mode="mask"), Cache(["head_out.0", vpath])])
    heads = res.cache["head_out.0"]  # B, P, H, D
    B, P, H, D = heads.shape
    v = res.cache[vpath]
    if f == "gpt2":
        v = v[..., 2 * H * D:]
    v = v.view(B, P, -1, D)
    v = v.repeat_interleave(H // v.shape[2], dim=2)
    real = inp["attention_mask"].bool()
    torch.testing.assert_close(heads[real], v[real], rtol=1e-5, atol=1e-6)
    clean = hm.run(inp, [Cache("head_out.0")]).cache["head_out.0"]
    assert not torch.allclose(clean[real], v[real], atol=1e-3)


def test_knockout_zero_sets_weight_to_zero_without_renormalising(fam):
    f, model = fam
    hm = hooks.wrap(model)
    inp = batch(f)
    clean = hm.run(inp, [Cache("attn_pattern.1")]).cache["attn_pattern.1"]
    ko = hm.run(inp, [Knockout(layers=1, queries="last", keys=0, mode="zero", heads=[1, 2]),
                      Cache("attn_pattern.1")]).cache["attn_pattern.1"]
    last = inp["attention_mask"].sum(1) - 1
    for b in range(ko.shape[0]):
        q = int(last[b])
        for h in range(ko.shape[1]):
            if h in (1, 2):
                assert ko[b, h, q, 0] == 0
                torch.testing.assert_close(ko[b, h, q, 1:], clean[b, h, q, 1:])
                assert clean[b, h, q, 0] > 0
            else:
                torch.testing.assert_close(ko[b, h, q], clean[b, h, q])
        others = [p for p in range(ko.shape[2]) if p != q]
        torch.testing.assert_close(ko[b, :, others], clean[b, :, others])


@pytest.mark.parametrize("f", CAUSAL + ["esm"])
def test_left_and_right_padding_agree_at_real_tokens(f):
    model = build(f)
    hm = hooks.wrap(model)
    r, l = batch(f, pad_side="right"), batch(f, pad_side="left")
    if f == "esm":  # the ESM adapter pads on the right whatever the input convention: feed strings
        pytest.skip("ESM inputs are right-padded by construction (rotary positions start at <cls>)")
    sites = ["resid_post.*", "attn_out.0", "head_out.1", "final"]
    cr = hm.run(r, [Cache(sites)]).cache
    cl = hm.run(l, [Cache(sites)]).cache
    mr, ml = r["attention_mask"].bool(), l["attention_mask"].bool()
    for k in cr:
        torch.testing.assert_close(cr[k][mr], cl[k][ml], rtol=1e-4, atol=1e-5, msg=k)
    last_r = hm.run(r, [Cache("resid_post.1", positions="last")]).cache["resid_post.1"]
    last_l = hm.run(l, [Cache("resid_post.1", positions="last")]).cache["resid_post.1"]
    torch.testing.assert_close(last_r, last_l, rtol=1e-4, atol=1e-5)
    sec_r = hm.run(r, [Cache("resid_post.1", positions=1)]).cache["resid_post.1"]
    sec_l = hm.run(l, [Cache("resid_post.1", positions=1)]).cache["resid_post.1"]
    torch.testing.assert_close(sec_r, sec_l, rtol=1e-4, atol=1e-5)


def test_esm_residue_span_excludes_cls_eos_and_padding():
    model = build("esm")
    hm = hooks.wrap(model)
    inp = batch("esm", B=4, P=9)
    n_res = int(inp["attention_mask"].sum()) - 2 * 4
    res = hm.run(inp, [Cache("resid_post.0", positions="residues"), Cache("resid_post.1", positions="cls"),
                       Cache("embed", positions="eos")])
    assert res.cache["resid_post.0"].shape == (n_res, 32)
    assert res.cache["resid_post.1"].shape == (4, 32)
    full = hm.run(inp, [Cache("resid_post.0")]).cache["resid_post.0"]
    ids = inp["input_ids"]
    mask = inp["attention_mask"].bool() & (ids != 0) & (ids != 2)
    assert torch.equal(res.cache["resid_post.0"], full[mask])


def _hook_count(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_exceptions_leave_no_hooks_and_foreign_hooks_survive():
    model = build("llama")
    hm = hooks.wrap(model)
    inp = batch("llama")
    fired = []
    user = model.model.layers[0].register_forward_hook(lambda m, a, o: fired.append(1))
    model(**inp, output_hidden_states=True)  # transformers installs its own capture hooks now
    before = _hook_count(model)
    with pytest.raises(RuntimeError, match="user code"):
        with hm.trace(inp) as tr:
            tr.cache("resid_post.*")
            tr.knockout(layers=[0], keys=0)
            raise RuntimeError("user code")
    assert _hook_count(model) == before and hooks.attention.active_handlers() == 0

    def boom(x):
        raise ValueError("inside forward")

    with pytest.raises(ValueError, match="inside forward"):
        hm.run(inp, [Cache("attn_pattern.1"), Edit("mlp_out.0", fn=boom)])
    assert _hook_count(model) == before and hooks.attention.active_handlers() == 0
    fired.clear()
    out = model(**inp, output_hidden_states=True)
    assert fired == [1] and len(out.hidden_states) == 3
    user.remove()


def test_nested_traces_compose():
    model = build("gpt2")
    hm = hooks.wrap(model)
    inp = batch("gpt2")
    v = torch.randn(32)
    plain = hm.run(inp, [Cache("resid_post.0")]).cache["resid_post.0"]
    with hm.trace() as outer:
        outer.steer("resid_post.0", vector=v, scale=2.0)
        with hm.trace(inp) as inner:
            got = inner.cache("resid_post.0")
        outer_out = outer.run(inp)
    real = inp["attention_mask"].bool()
    torch.testing.assert_close(got["resid_post.0"][real], (plain + 2.0 * v)[real])
    assert not torch.allclose(hm.logits_of(outer_out), hm.run(inp).logits)
    assert _hook_count(model) == 0


def test_mean_and_resample_ablation_use_reference():
    model = build("llama")
    hm = hooks.wrap(model)
    ref = batch("llama", B=2, seed=5)
    inp = batch("llama")
    ref_acts = hm.run(ref, [Cache("mlp_out.0")]).cache["mlp_out.0"]
    mean = ref_acts[ref["attention_mask"].bool()].mean(0)
    res = hm.run(inp, [Ablate("mlp_out.0", positions="last", how="mean", reference=ref), Cache("mlp_out.0")])
    last = inp["attention_mask"].sum(1) - 1
    for b in range(3):
        torch.testing.assert_close(res.cache["mlp_out.0"][b, last[b]], mean, rtol=1e-5, atol=1e-6)
    res = hm.run(inp, [Ablate("mlp_out.0", positions=0, how="resample", reference=ref, seed=3),
                       Cache("mlp_out.0", positions=0)])
    firsts = ref_acts[:, 0]
    for b in range(3):
        assert any(torch.allclose(res.cache["mlp_out.0"][b], firsts[r]) for r in range(2))


def test_steer_generation_scale_zero_and_large():
    model = build("llama")
    hm = hooks.wrap(model)
    prompts = torch.tensor([[5, 6, 7, 8], [9, 10, 11, 12]])
    base = hm.generate(prompts, max_new_tokens=8).sequences
    v = torch.randn(32)
    same = hm.generate(prompts, [Steer("resid_post.0", vector=v, scale=0.0)], max_new_tokens=8).sequences
    diff = hm.generate(prompts, [Steer("resid_post.0", vector=v, scale=50.0)], max_new_tokens=8).sequences
    assert torch.equal(base, same)
    assert not torch.equal(base, diff)


def test_generation_apply_to_prompt_vs_new():
    model = build("gpt2")
    hm = hooks.wrap(model)
    prompts = torch.tensor([[5, 6, 7, 8]])
    v = torch.randn(32) * 50
    new_only = hm.generate(prompts, [Steer("resid_post.1", vector=v, apply_to="new"),
                                     Cache("resid_post.1", positions="last")], max_new_tokens=4)
    clean = hm.generate(prompts, [Cache("resid_post.1", positions="last")], max_new_tokens=4)
    steps_new, steps_clean = new_only.cache["resid_post.1"], clean.cache["resid_post.1"]
    assert steps_new.shape == (1, 4, 32)  # one entry per forward call (prefill + 3 decode steps)
    torch.testing.assert_close(steps_new[:, 0], steps_clean[:, 0])  # the prompt step is untouched
    # every decode step is steered (B=1, unpadded: transformers drops the all-ones mask while decoding)
    clean_rerun = hm.run(new_only.sequences[:, :-1], [Cache("resid_post.1")]).cache["resid_post.1"]
    torch.testing.assert_close(steps_new[:, 1:], clean_rerun[:, 4:] + v, rtol=1e-4, atol=1e-3)
    assert new_only.sequences[0, 4] == clean.sequences[0, 4]  # first new token predicted from the prompt
    prompt_only = hm.generate(prompts, [Steer("resid_post.1", vector=v, apply_to="prompt"),
                                        Cache("resid_post.1", positions="last")], max_new_tokens=4)
    assert not torch.allclose(prompt_only.cache["resid_post.1"][:, 0], steps_clean[:, 0])


def test_cache_dataset_is_flat_per_row_and_matches_single_runs():
    model = build("llama")
    hm = hooks.wrap(model)
    data = [torch.tensor([5, 6, 7, 8]), torch.tensor([9, 10]), torch.tensor([11, 12, 13])]
    batches = [{"input_ids": d[None], "attention_mask": torch.ones(1, len(d), dtype=torch.long)} for d in data]
    got = hm.cache_dataset(data, "resid_post.1", positions="all", batch_size=2, progress=False)
    want = torch.cat([hm.run(b, [Cache("resid_post.1")]).cache["resid_post.1"][0] for b in batches])
    torch.testing.assert_close(got["resid_post.1"], want, rtol=1e-5, atol=1e-6)  # batched vs single: fp noise
    assert got.rows.tolist() == [0, 0, 0, 0, 1, 1, 2, 2, 2]


def test_gradients_are_opt_in_and_flow_to_a_steering_vector():
    model = build("gpt2")
    hm = hooks.wrap(model)
    inp = batch("gpt2")
    v = torch.zeros(32, requires_grad=True)
    res = hm.run(inp, [Steer("resid_post.0", vector=v)])
    assert not res.logits.requires_grad
    res = hm.run(inp, [Steer("resid_post.0", vector=v), Cache("resid_post.1", device=None)], grad=True)
    res.logits.sum().backward()
    assert v.grad is not None and v.grad.abs().sum() > 0
    assert res.cache["resid_post.1"].requires_grad


def test_stop_after_skips_later_layers_but_fills_caches():
    model = build("llama")
    hm = hooks.wrap(model)
    inp = batch("llama")
    ran = []
    h = model.model.layers[1].register_forward_hook(lambda m, a, o: ran.append(1))
    try:
        full = hm.run(inp, [Cache("resid_post.0")])
        assert ran == [1]
        ran.clear()
        res = hm.run(inp, [Cache("resid_post.0")], stop_after="resid_post.0")
        assert ran == [] and res.output is None
        assert torch.equal(res.cache["resid_post.0"], full.cache["resid_post.0"])
        assert hm.deepest_site(["resid_post.0", "resid_pre.1", "embed"]) == "resid_pre.1"
    finally:
        h.remove()
    assert _hook_count(model) == 0


def test_int_positions_during_unpadded_generation_refer_to_the_prompt():
    model = build("llama")
    hm = hooks.wrap(model)
    prompts = torch.tensor([[5, 6, 7, 8, 9, 10]])
    res = hm.generate(prompts, [Cache("resid_post.0", positions=5)], max_new_tokens=3)
    assert res.cache["resid_post.0"].shape == (1, 32)  # only the prefill step holds position 5
    direct = hm.run(prompts, [Cache("resid_post.0", positions=5)]).cache["resid_post.0"]
    torch.testing.assert_close(res.cache["resid_post.0"], direct, rtol=1e-5, atol=1e-6)
