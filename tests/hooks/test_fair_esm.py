"""fair-esm ESM-2 adapter: known answers on a tiny randomly initialised ESM2 (CPU, seconds)."""
import argparse
from dataclasses import dataclass

import pytest
import torch

esm = pytest.importorskip("esm")

import hooks  # noqa: E402
from hooks import attention  # noqa: E402
from hooks.adapters import fair_esm as FE  # noqa: E402

SEQS = ["MKTAYIAKQR", "GSHM", "MKLLVVAGC"]  # different lengths -> right padding


def build(seed=0):
    torch.manual_seed(seed)
    alphabet = esm.data.Alphabet.from_architecture("ESM-1b")
    model = esm.model.esm2.ESM2(num_layers=2, embed_dim=32, attention_heads=4, alphabet=alphabet).eval()
    with torch.no_grad():  # norms start at 1/0 and out_proj biases at 0: perturb so every term matters
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model, alphabet


@pytest.fixture(scope="module")
def esm_hm():
    model, alphabet = build()
    return hooks.wrap(model, alphabet)


def tokens_of(alphabet, seqs):
    return alphabet.get_batch_converter()([(str(i), s) for i, s in enumerate(seqs)])[2]


def hook_count(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def by_hand_attn_out(layer, resid_pre, pattern):
    """out_proj(sum_k P[b,h,q,k] v[b,k,h]) with v = v_proj(LN(resid_pre)); all B×... layouts."""
    sa = layer.self_attn
    v = sa.v_proj(layer.self_attn_layer_norm(resid_pre))  # (B, T, E)
    B, T, E = v.shape
    v = v.view(B, T, sa.num_heads, sa.head_dim)
    z = torch.einsum("bhqk,bkhd->bqhd", pattern, v).reshape(B, T, E)
    return sa.out_proj(z)


def test_matches_adapter_and_lists_sites(esm_hm):
    assert esm_hm.adapter.name == "fair_esm"
    s = esm_hm.sites
    assert s["attn_pattern.1"] == "B×4×P×P" and s["head_out.0"] == "B×P×4×8" and s["logits"] == "B×P×33"
    assert esm_hm.attention_enabled


@torch.no_grad()
def test_cache_equals_fair_esm_representations(esm_hm):
    model = esm_hm.model
    tok = tokens_of(model.alphabet, SEQS)
    out = model(tok, repr_layers=[0, 1, 2], need_head_weights=True)
    res = esm_hm.run(SEQS, [hooks.Cache("*")])
    c, reps, n = res.cache, out["representations"], model.num_layers
    assert torch.equal(res.inputs["input_ids"], tok)
    # representations[0] is what enters layer 0 (token-dropout rescale, padding zeroed): our embed
    assert torch.equal(c["embed"], reps[0]) and torch.equal(c["resid_pre.0"], reps[0])
    raw = model.embed_tokens(tok)
    real = tok.ne(model.padding_idx)
    torch.testing.assert_close(c["embed"][real], (0.88 * raw)[real])  # no <mask> in SEQS: factor 1 - 0.15*0.8
    assert bool((c["embed"][~real] == 0).all())
    # representations[L + 1] = resid_post.L, except the last one, which fair-esm final-norms
    assert torch.equal(c["resid_post.0"], reps[1])
    assert torch.equal(c["final"], reps[n])
    assert not torch.allclose(c[f"resid_post.{n - 1}"], reps[n])
    torch.testing.assert_close(model.emb_layer_norm_after(c[f"resid_post.{n - 1}"]), reps[n])
    assert torch.equal(res.logits, out["logits"]) and torch.equal(c["logits"], out["logits"])
    # residual bookkeeping and heads
    for L in range(n):
        torch.testing.assert_close(c[f"resid_mid.{L}"], c[f"resid_pre.{L}"] + c[f"attn_out.{L}"])
        torch.testing.assert_close(c[f"resid_post.{L}"], c[f"resid_mid.{L}"] + c[f"mlp_out.{L}"])
        layer = model.layers[L]
        torch.testing.assert_close(layer.self_attn.out_proj(c[f"head_out.{L}"].flatten(2)), c[f"attn_out.{L}"])
        # our pattern is fair-esm's own need_head_weights output (B, L, H, T, T) on real queries
        pat = c[f"attn_pattern.{L}"]
        torch.testing.assert_close(pat.permute(0, 2, 1, 3)[real], out["attentions"][:, L].permute(0, 2, 1, 3)[real])
        torch.testing.assert_close(torch.softmax(c[f"attn_scores.{L}"], -1), pat)


@torch.no_grad()
def test_capturing_attention_changes_nothing(esm_hm):
    clean = esm_hm.run(SEQS).logits
    res = esm_hm.run(SEQS, [hooks.Cache("attn_scores.*"), hooks.Cache("attn_pattern.*")])
    torch.testing.assert_close(res.logits, clean, rtol=0, atol=1e-6)


@torch.no_grad()
def test_zero_ablate_attn_out_equals_zeroed_out_proj(esm_hm):
    L = 1
    ablated = esm_hm.run(SEQS, [hooks.Ablate(f"attn_out.{L}")]).logits
    ref, _ = build()
    ref.load_state_dict(esm_hm.model.state_dict())
    ref.layers[L].self_attn.out_proj.weight.zero_()
    ref.layers[L].self_attn.out_proj.bias.zero_()
    tok = tokens_of(ref.alphabet, SEQS)
    expected = ref(tok)["logits"]
    real = tok.ne(ref.padding_idx)
    torch.testing.assert_close(ablated[real], expected[real])
    assert not torch.allclose(ablated[real], esm_hm.run(SEQS).logits[real])


@torch.no_grad()
def test_patch_with_own_cache_is_identity_and_resid_pre_patch_transplants_run(esm_hm):
    clean = esm_hm.run(SEQS, [hooks.Cache("resid_post.*"), hooks.Cache("attn_out.*")])
    patched = esm_hm.run(SEQS, [hooks.Patch(["resid_post.*", "attn_out.*"], source=clean.cache)])
    assert torch.equal(patched.logits, clean.logits)
    a, b = ["MKTAYIAK", "GSHMLV"], ["WWYYKKRR", "AAGGCC"]  # same lengths row by row
    res = esm_hm.run(a, [hooks.Patch("resid_pre.1", source=b)])
    target = esm_hm.run(b).logits
    real = res.inputs["attention_mask"]  # padding positions are not selected by "all" (and never read)
    assert torch.equal(res.logits[real], target[real])
    assert not torch.allclose(esm_hm.run(a).logits[real], target[real])


@torch.no_grad()
def test_knockout_mask_all_but_self_is_attention_to_own_value(esm_hm):
    L = 1
    model = esm_hm.model
    res = esm_hm.run(SEQS, [
        hooks.Knockout(layers=[L], queries="all", keys="others", mode="mask"),
        hooks.Cache([f"resid_pre.{L}", f"attn_out.{L}", f"attn_pattern.{L}"]),
    ])
    real = res.inputs["attention_mask"]
    pat = res.cache[f"attn_pattern.{L}"].permute(0, 2, 1, 3)[real]  # (N real queries, H, K)
    eye = torch.eye(real.shape[1])[None].expand(real.shape[0], -1, -1)[real]  # (N, K)
    assert torch.equal(pat, eye[:, None, :].expand_as(pat))
    sa = model.layers[L].self_attn
    v_self = sa.v_proj(model.layers[L].self_attn_layer_norm(res.cache[f"resid_pre.{L}"]))
    torch.testing.assert_close(res.cache[f"attn_out.{L}"][real], sa.out_proj(v_self)[real])


@torch.no_grad()
def test_knockout_zero_leaves_rest_unnormalised(esm_hm):
    L = 0
    clean = esm_hm.run(SEQS, [hooks.Cache(f"attn_pattern.{L}")]).cache[f"attn_pattern.{L}"]
    res = esm_hm.run(SEQS, [
        hooks.Knockout(layers=[L], queries="all", keys=1, mode="zero"),  # first residue (after <cls>)
        hooks.Cache([f"attn_pattern.{L}", f"resid_pre.{L}", f"attn_out.{L}"]),
    ])
    pat = res.cache[f"attn_pattern.{L}"]  # (B, H, Q, K)
    real = res.inputs["attention_mask"]
    rq = real[:, None, :].expand(pat.shape[:3])  # real queries, (B, H, Q)
    assert bool((pat[..., 1][rq] == 0).all())
    assert torch.equal(pat[..., [0, *range(2, pat.shape[-1])]][rq], clean[..., [0, *range(2, pat.shape[-1])]][rq])
    torch.testing.assert_close(pat.sum(-1)[rq], 1 - clean[..., 1][rq])  # not renormalised
    expected = by_hand_attn_out(esm_hm.model.layers[L], res.cache[f"resid_pre.{L}"], pat)
    torch.testing.assert_close(res.cache[f"attn_out.{L}"][real], expected[real])


def test_exception_inside_trace_leaves_no_hooks(esm_hm):
    model = esm_hm.model
    before = hook_count(model)

    def boom(x):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        with esm_hm.trace(SEQS) as tr:
            tr.cache("resid_post.*")
            tr.knockout(layers=[0, 1], keys=0, mode="mask")
            tr.edit("mlp_out.1", fn=boom)  # raises inside the forward, after attention handlers ran
    assert hook_count(model) == before and attention.active_handlers() == 0
    with pytest.raises(ValueError, match="user"):
        with esm_hm.trace(SEQS) as tr:
            tr.cache("attn_pattern.*")
            raise ValueError("user code")
    assert hook_count(model) == before and attention.active_handlers() == 0


@torch.no_grad()
def test_user_hook_survives_trace(esm_hm):
    model = esm_hm.model
    calls = []
    h = model.layers[0].register_forward_hook(lambda m, a, o: calls.append(1))
    try:
        esm_hm.run(SEQS, [hooks.Cache("resid_post.0"), hooks.Knockout(layers=[0], keys=0)])
        assert len(calls) == 1
        model(tokens_of(model.alphabet, SEQS))
        assert len(calls) == 2
    finally:
        h.remove()


@torch.no_grad()
def test_residue_cls_eos_spans_in_right_padded_batch(esm_hm):
    res = esm_hm.run(SEQS, [hooks.Cache("resid_post.1", positions="residues")])
    flat = res.cache["resid_post.1"]
    assert flat.shape == (sum(map(len, SEQS)), 32)
    tok = res.inputs["input_ids"]
    lens = torch.tensor([len(s) for s in SEQS])
    pos = torch.arange(tok.shape[1])[None]
    residue_mask = (pos >= 1) & (pos <= lens[:, None])
    full = esm_hm.run(SEQS, [hooks.Cache("resid_post.1")]).cache["resid_post.1"]
    assert torch.equal(flat, full[residue_mask])
    spans = esm_hm.run(SEQS, [hooks.Cache("final", positions="cls"), hooks.Cache("mlp_out.0", positions="eos")]).cache
    assert torch.equal(spans["final"], esm_hm.run(SEQS, [hooks.Cache("final")]).cache["final"][:, 0])
    eos = esm_hm.run(SEQS, [hooks.Cache("mlp_out.0")]).cache["mlp_out.0"][torch.arange(3), lens + 1]
    assert torch.equal(spans["mlp_out.0"], eos)
    k = esm_hm.run(SEQS, [hooks.Cache("embed", positions=hooks.token("K", missing="skip"))]).cache["embed"]
    assert k.shape[0] == sum(s.count("K") for s in SEQS)
    assert any("K" not in s for s in SEQS)  # so the default refuses, naming the row
    with pytest.raises(hooks.errors.PositionError, match=r"does not occur in batch row\(s\) \[1\]"):
        esm_hm.run(SEQS, [hooks.Cache("embed", positions=hooks.token("K"))])


def test_batches_and_errors(esm_hm):
    tok = tokens_of(esm_hm.model.alphabet, SEQS)
    a = esm_hm.prepare(SEQS)
    assert torch.equal(a["input_ids"], tok) and torch.equal(a["attention_mask"], tok.ne(1))
    assert torch.equal(esm_hm.prepare({"tokens": tok})["input_ids"], tok)
    assert torch.equal(esm_hm.prepare([("x", s) for s in SEQS])["input_ids"], tok)
    rows = [t[t.ne(1)] for t in tok]  # unpadded token rows, padded again on the right
    assert torch.equal(esm_hm.prepare(rows)["input_ids"], tok)
    assert torch.equal(esm_hm.prepare([r.tolist() for r in rows])["input_ids"], tok)
    with pytest.raises(hooks.HookError, match="masked language model"):
        esm_hm.generate(SEQS)
    with pytest.raises(hooks.HookError, match="protein strings"):
        esm_hm.prepare(3.5)


@torch.no_grad()
def test_attention_dispatch_is_per_instance_and_reversible():
    model, alphabet = build(1)
    other, _ = build(1)
    tok = tokens_of(alphabet, SEQS)
    before = model(tok)["logits"]
    hm = hooks.wrap(model, alphabet)
    assert "forward" in vars(model.layers[0].self_attn) and "forward" not in vars(other.layers[0].self_attn)
    hm.run(SEQS, [hooks.Knockout(layers="all", keys=0, mode="mask")])
    assert torch.equal(model(tok)["logits"], before)
    FE.remove_attention_dispatch(model)
    assert "forward" not in vars(model.layers[0].self_attn)
    assert torch.equal(model(tok)["logits"], before)


# -- checkpoint loading ------------------------------------------------------------------------
def save_real_format(model, path, **extra):
    """Write ``model`` as fair-esm's ESM-2 files are laid out: fairseq keys, cfg["model"] Namespace,
    contact-regression weights in a separate ``<stem>-contact-regression.pt``."""
    state = model.state_dict()
    weights = {}
    for k, v in state.items():
        if k.startswith("contact_head."):
            continue
        prefix = "encoder." if k.startswith("lm_head.") else "encoder.sentence_encoder."
        weights[prefix + k] = v
    cfg_model = argparse.Namespace(
        _name="ESM2", encoder_layers=model.num_layers, encoder_embed_dim=model.embed_dim,
        encoder_ffn_embed_dim=4 * model.embed_dim, encoder_attention_heads=model.attention_heads,
        token_dropout=model.token_dropout, dropout=0.0,
    )
    torch.save({"args": None, "cfg": {"_name": None, "common": {"fp16": False}, "model": cfg_model},
                "model": weights, "extra_state": {"epoch": 1}, **extra}, path)
    reg = {k: v for k, v in state.items() if k.startswith("contact_head.")}
    torch.save({"model": reg}, path.with_name(f"{path.stem}-contact-regression.pt"))


@dataclass
class NotAWeight:
    x: int = 1


@torch.no_grad()
def test_checkpoint_round_trip_weights_only(tmp_path, monkeypatch):
    model, alphabet = build(2)
    path = tmp_path / "esm2_t2_tiny.pt"
    save_real_format(model, path)
    calls = []
    real_load = torch.load

    def spy(*a, **kw):
        calls.append(kw.get("weights_only"))
        return real_load(*a, **kw)

    monkeypatch.setattr(torch, "load", spy)
    hm = hooks.load(str(path))
    assert calls == [True, True]  # model + contact regression, never weights_only=False
    assert type(hm.model).__name__ == "ESM2" and hm.adapter.name == "fair_esm"
    tok = tokens_of(alphabet, SEQS)
    assert torch.equal(hm.run(SEQS).logits, model(tok)["logits"])
    # by name from the torch hub cache (no network)
    old = torch.hub.get_dir()
    try:
        torch.hub.set_dir(str(tmp_path / "hub"))
        (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
        save_real_format(model, tmp_path / "hub" / "checkpoints" / "esm2_t2_tiny.pt")
        assert torch.equal(hooks.load("esm:esm2_t2_tiny").run(SEQS).logits, model(tok)["logits"])
        with pytest.raises(hooks.HookError, match="not in the torch hub cache"):
            hooks.load("esm:esm2_t99_missing")
    finally:
        torch.hub.set_dir(old)


def test_checkpoint_with_pickled_objects_needs_explicit_unsafe_opt_in(tmp_path):
    model, alphabet = build(3)
    path = tmp_path / "esm2_t2_odd.pt"
    save_real_format(model, path, trainer_state=NotAWeight())  # an arbitrary pickled object
    with pytest.raises(hooks.HookError, match="unsafe_allow_pickle=True"):
        hooks.load(str(path))
    hm = FE.load_fair_esm(path, unsafe_allow_pickle=True)  # the explicit, documented-unsafe opt-in
    with torch.no_grad():
        assert torch.equal(hm.run(SEQS).logits, model(tokens_of(alphabet, SEQS))["logits"])
    with pytest.raises(hooks.HookError, match="does not exist"):
        hooks.load(str(tmp_path / "nope.pt"))
