"""The fast sweep (changed rows only, modules before the patched site replayed from the base run)
gives the same table as the reference path (every variant's full batch through the whole model),
on HF GPT-2 / Llama / ESM (bidirectional) tiny models and a TransformerLens model, and never
leaves a module's forward replaced."""
import pytest
import torch

import hooks
from interp.patching import activation_patching
from interp.patching.replay import blocks_of, record, swapped_forward

from ..hooks.tiny_models import build


def _tl():
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=3, d_model=16, n_ctx=16, d_head=4, n_heads=4, d_mlp=32, d_vocab=64,
                                  act_fn="gelu", normalization_type="LN", seed=0)
    return HookedTransformer(cfg).eval()


def _data(B=4, P=7, seed=0, ragged=True):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, 30, (B, P), generator=g)
    corrupt = ids.clone()
    corrupt[:, 2] = torch.randint(4, 30, (B,), generator=g)  # one changed token: positions 0-1 unchanged in causal models
    clean = [r[: P - (i % 2 if ragged else 0)] for i, r in enumerate(ids.tolist())]
    corrupt = [r[: len(c)] for r, c in zip(corrupt.tolist(), clean)]
    return clean, corrupt, dict(answers=[5, 6, 7, 8][:B], distractors=[9] * B)


def _hf(family):
    """A tiny random HF model with weights 10× the init scale, so that patching effects are O(1)
    (at the default 0.02 they are ~1e-4, too small for a 1e-5 equality to mean anything)."""
    model = build(family)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.mul_(10)
    return hooks.wrap(model)


_MODELS = {}


def _model(name):
    if name not in _MODELS:
        _MODELS[name] = hooks.wrap(_tl()) if name == "tl" else _hf(name)
    return _MODELS[name]


LAYER_POS, HEAD_POS = "layer,position", "layer,head,position"
CASES = [("gpt2", "denoising", LAYER_POS, "resid_pre"), ("gpt2", "noising", HEAD_POS, "head_out"),
         ("gpt2", "denoising", LAYER_POS, "attn_out"), ("llama", "noising", LAYER_POS, "resid_pre"),
         ("llama", "denoising", HEAD_POS, "head_out"), ("llama", "noising", LAYER_POS, "mlp_out"),
         ("tl", "noising", LAYER_POS, "resid_pre"), ("tl", "denoising", HEAD_POS, "head_out"),
         ("esm", "denoising", HEAD_POS, "head_out")]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("name,direction,by,sites", CASES)
def test_fast_sweep_equals_the_reference_path(name, direction, by, sites):
    hm = _model(name)
    clean, corrupt, kw = _data()
    args = dict(sites=sites, by=by, direction=direction, max_variants=5, **kw)
    fast = activation_patching(hm, clean, corrupt, **args)
    ref = activation_patching(hm, clean, corrupt, fast=False, **args)
    assert fast[["site", "layer", "head", "position"]].equals(ref[["site", "layer", "head", "position"]])
    a, b = torch.tensor(fast["effect"].to_numpy()), torch.tensor(ref["effect"].to_numpy())
    assert torch.equal(a.isnan(), b.isnan()) and ref["effect"].abs().max() > 1e-2
    assert float((a - b).abs().nan_to_num().max()) <= 1e-5
    # the fast path did cut work: every site above layer 0 replays at least the blocks below it,
    # and the rows where the source equals the base run (positions before the changed token) were not run
    att = fast.attrs
    assert att["replay_off"] == {} and all(att["replayed_modules"][f"{sites}.{L}"] >= L for L in range(hm.n_layers))
    assert att["rows_run"] < att["rows_total"] == ref.attrs["rows_run"]
    if name != "esm":  # causal: a patch before the changed token writes what is already there
        assert att["rows_equal_to_base"] >= 2 * len(clean) * hm.n_layers * (4 if "head" in by else 1)
    assert att["forwards"] >= hm.n_layers and not any("forward" in m.__dict__ for m in hm.model.modules())
    if name == "esm":  # bidirectional: no prefix reuse, and the table says why
        assert att["prefix"] == "" and "is_decoder=False" in att["prefix_off"]
    else:  # causal, right padding: only the columns from the first changed one are run
        assert att["prefix"] and att["padded_tokens_run"] < ref.attrs["padded_tokens_run"]


def test_sites_inside_a_block_start_after_the_modules_that_already_ran():
    """GPT-2: for attn_out.1 the blocks below, ln_1 and the attention module itself are replayed (the
    edit runs on the replayed output); for head_out.1 (input of c_proj, inside attn) attn must run."""
    hm = _hf("gpt2")
    clean, corrupt, kw = _data()
    inputs = hm.prepare(corrupt)
    sites = ["attn_out.1", "head_out.1", "mlp_out.1", "resid_pre.1", "resid_mid.1"]
    rep, why, _ = record(hm, inputs, sites, lambda: hm.run(inputs))
    blocks = blocks_of(hm)
    b1 = blocks[1]
    names = {s: [n for n, m in hm.model.named_modules() if m in rep.plan(s)] for s in sites}
    assert why == "" and names["resid_pre.1"] == ["transformer.h.0"]
    assert set(names["attn_out.1"]) == {"transformer.h.0", "transformer.h.1.ln_1", "transformer.h.1.attn"}
    assert set(names["head_out.1"]) == {"transformer.h.0", "transformer.h.1.ln_1"}
    assert set(names["resid_mid.1"]) == {"transformer.h.0", "transformer.h.1.ln_1", "transformer.h.1.attn"}
    assert set(names["mlp_out.1"]) == set(names["resid_mid.1"]) | {"transformer.h.1.ln_2", "transformer.h.1.mlp"}
    assert b1.attn in rep.plan("attn_out.1") and b1.attn not in rep.plan("head_out.1")
    df = activation_patching(hm, clean, corrupt, sites=["attn_out.1", "mlp_out.1"], by="layer,position", **kw)
    ref = activation_patching(hm, clean, corrupt, sites=["attn_out.1", "mlp_out.1"], by="layer,position", fast=False,
                              **kw)
    torch.testing.assert_close(torch.tensor(df["effect"].to_numpy()), torch.tensor(ref["effect"].to_numpy()),
                               atol=1e-5, rtol=0, equal_nan=True)


def test_preconditions_that_fail_fall_back_and_say_why():
    hm = _hf("llama")
    clean, corrupt, kw = _data()
    hm.model.train()  # dropout could differ between replayed and computed rows: no replay
    try:
        df = activation_patching(hm, clean, corrupt, sites="resid_pre", by="layer,position", **kw)
    finally:
        hm.model.eval()
    assert "training mode" in df.attrs["replay_off"] and df.attrs["replayed_modules"] == {}
    ref = activation_patching(hm, clean, corrupt, sites="resid_pre", by="layer,position", fast=False, **kw)
    torch.testing.assert_close(torch.tensor(df["effect"].to_numpy()), torch.tensor(ref["effect"].to_numpy()),
                               atol=1e-5, rtol=0, equal_nan=True)


def test_a_replay_that_does_not_reproduce_the_base_run_is_dropped():
    hm = hooks.wrap(build("gpt2"))
    inputs = hm.prepare(_data()[1])
    rep, _, _ = record(hm, inputs, ["resid_pre.1"], lambda: hm.run(inputs))
    assert rep.plan("resid_pre.1")
    ok = rep.check("resid_pre.1", lambda rows, ctx: torch.zeros(len(rows)), lambda rows: torch.ones(len(rows)))
    assert not ok and rep.plan("resid_pre.1") == [] and "differs" in rep.reasons["resid_pre.1"]


def test_swapped_forwards_are_always_restored():
    """Exactly what was there comes back, also after an exception and over an instance-level
    forward another library set (as accelerate's hooks and nnsight do)."""
    hm = hooks.wrap(build("gpt2"))
    b0, b1 = blocks_of(hm)
    foreign = b1.forward  # a bound method stored on the instance, like accelerate's wrapper
    b1.forward = foreign
    with pytest.raises(RuntimeError, match="boom"):
        with swapped_forward([(b0, lambda *a, **k: None), (b1, lambda *a, **k: None)]):
            assert b0.forward is not type(b0).forward
            raise RuntimeError("boom")
    assert "forward" not in b0.__dict__ and b1.__dict__["forward"] is foreign
    del b1.forward
    inputs = hm.prepare(_data()[1])
    with pytest.raises(ZeroDivisionError):  # a failing forward while recording
        record(hm, inputs, ["resid_pre.1"], lambda: 1 / 0)
    assert not any("forward" in m.__dict__ for m in hm.model.modules())


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_nnsight_wrapped_model_keeps_its_forwards_and_still_traces():
    """nnsight replaces every module's ``forward`` with its own wrapper (an instance attribute):
    the sweep swaps them for the replay and puts back exactly those wrappers."""
    import nnsight

    tl = _tl()
    nm = nnsight.NNsight(tl)
    before = {n: m.__dict__.get("forward") for n, m in tl.named_modules()}
    assert any(f is not None for f in before.values())
    hm = hooks.wrap(tl)
    clean, corrupt, kw = _data()
    df = activation_patching(hm, clean, corrupt, sites="head_out", by="layer,head,position", **kw)
    ref = activation_patching(hm, clean, corrupt, sites="head_out", by="layer,head,position", fast=False, **kw)
    assert sum(df.attrs["replayed_modules"].values()) > 0
    torch.testing.assert_close(torch.tensor(df["effect"].to_numpy()), torch.tensor(ref["effect"].to_numpy()),
                               atol=1e-5, rtol=0, equal_nan=True)
    assert {n: m.__dict__.get("forward") for n, m in tl.named_modules()} == before
    x = torch.tensor(clean[0])[None]
    with nm.trace(x):
        out = nnsight.save(nm.blocks[1].output)
    torch.testing.assert_close(out, tl.blocks[1](tl.blocks[0](tl.hook_embed(tl.embed(x)) + tl.pos_embed(x))))


# -- prefix reuse: only the columns from the first one a patch changes, on the base run's KV cache --------------

def _left_padded(name):
    """A fresh wrapped model that pads on the left (so each row's prefix ends at its own column)."""
    import dataclasses

    hm = hooks.wrap(_tl()) if name == "tl" else _hf(name)
    hm.adapter = dataclasses.replace(hm.adapter, padding_side="left")
    return hm


_LEFT = {}
PREFIX_CASES = [("gpt2", "denoising", HEAD_POS, "head_out", "logit_diff"),
                ("gpt2", "noising", LAYER_POS, "resid_pre", "kl"),
                ("gpt2", "denoising", "layer", "resid_pre", "logit_diff"),
                ("llama", "noising", HEAD_POS, "head_out", "logit_diff"),
                ("llama", "denoising", LAYER_POS, "attn_out", "kl"),
                ("mistral", "denoising", LAYER_POS, "resid_pre", "logit_diff"),
                ("gemma2", "noising", HEAD_POS, "head_out", "logit_diff"),  # sliding window, soft-capped logits
                ("tl", "denoising", HEAD_POS, "head_out", "logit_diff"),
                ("tl", "noising", LAYER_POS, "mlp_out", "logit_diff")]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("name,direction,by,sites,metric", PREFIX_CASES)
def test_prefix_reuse_equals_the_reference_path_with_left_padding(name, direction, by, sites, metric):
    """GPT-2 (learned positions), Llama (rotary), Mistral, Gemma 2 and TransformerLens, left-padded
    ragged rows (each row's cut is at its own column), both directions, last-token and
    all-position (KL) metrics."""
    if name not in _LEFT:
        _LEFT[name] = _left_padded(name)
    hm = _LEFT[name]
    clean, corrupt, kw = _data(P=9)
    inputs = hm.prepare(clean)
    assert not inputs["attention_mask"][:, 0].all() and inputs["attention_mask"][:, -1].all()  # left padding
    args = dict(sites=sites, by=by, direction=direction, metric=metric, **kw)
    fast = activation_patching(hm, clean, corrupt, **args)
    ref = activation_patching(hm, clean, corrupt, fast=False, **args)
    a, b = torch.tensor(fast["effect"].to_numpy()), torch.tensor(ref["effect"].to_numpy())
    assert torch.equal(a.isnan(), b.isnan()) and ref["effect"].abs().max() > 1e-3
    assert float((a - b).abs().nan_to_num().max()) <= 1e-5
    att = fast.attrs
    assert att["prefix"] and att["prefix_off"] == "", att["prefix_off"]
    assert att["padded_tokens_run"] < ref.attrs["padded_tokens_run"]
    if sites in ("head_out", "resid_pre"):  # blocks below the patched layer replayed at the suffix's columns
        assert att["prefix_with_replay"] == [f"{sites}.{L}" for L in range(1, hm.n_layers)]
    assert not any("forward" in m.__dict__ for m in hm.model.modules())


def test_prefix_caches_are_not_changed_by_the_suffix_runs():
    """Each forward gets its own row-selected copy of the cache: the base prefix stays as recorded."""
    from interp.patching.prefix import Prefix, _cache_params, _params, select_rows

    hm = _left_padded("llama")
    inputs = hm.prepare(_data(P=9)[1])
    name = _cache_params(_params(hm))[0]  # whatever this transformers calls it
    pre = Prefix(hm, inputs, name, "returned", "full", True)
    c = 4
    cache = pre.cache(c)
    before = select_rows(cache, 4, torch.arange(4), "transformers")
    flat = lambda o: [t.clone() for t in _tensors(o)]  # noqa: E731
    want = flat(before)
    rows = torch.tensor([3, 3, 0])
    inputs_, kw_ = pre.suffix(rows, c)
    with torch.no_grad():
        hm.run(inputs_, [], **kw_)
    assert all(torch.equal(x, y) for x, y in zip(flat(pre.cache(c)), want)) and len(want) >= 2 * hm.n_layers
    assert cache.get_seq_length() == c


def _tensors(obj, depth=0):
    if isinstance(obj, torch.Tensor):
        return [obj]
    if depth > 5 or isinstance(obj, (str, int, float, type(None), torch.nn.Module)):
        return []
    if isinstance(obj, (list, tuple)):
        return [t for v in obj for t in _tensors(v, depth + 1)]
    if hasattr(obj, "__dict__"):
        return [t for v in vars(obj).values() for t in _tensors(v, depth + 1)]
    return []


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_bidirectional_model_with_a_cache_argument_fails_the_check_and_falls_back():
    """BERT as ``BertLMHeadModel`` with ``is_decoder=False``: its forward takes a cache and its class is
    an LM head, so nothing refuses it up front; the check on the base run (a prefix computed
    without the suffix differs from the full run) turns prefix reuse off, with the reason."""
    import transformers as T

    cfg = T.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=32,
                       max_position_embeddings=32, is_decoder=False)
    torch.manual_seed(0)
    model = T.BertLMHeadModel(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.mul_(10)
    hm = hooks.wrap(model)
    clean, corrupt, kw = _data(P=8)
    args = dict(sites="resid_pre", by="layer,position", **kw)
    fast = activation_patching(hm, clean, corrupt, **args)
    ref = activation_patching(hm, clean, corrupt, fast=False, **args)
    assert fast.attrs["prefix"] == "" and "failed its check" in fast.attrs["prefix_off"], fast.attrs["prefix_off"]
    torch.testing.assert_close(torch.tensor(fast["effect"].to_numpy()), torch.tensor(ref["effect"].to_numpy()),
                               atol=1e-5, rtol=0, equal_nan=True)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_bidirectional_transformer_lens_model_is_refused_with_its_reason():
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=2, d_model=16, n_ctx=16, d_head=4, n_heads=4, d_mlp=32, d_vocab=64,
                                  act_fn="gelu", normalization_type="LN", attention_dir="bidirectional", seed=0)
    hm = hooks.wrap(HookedTransformer(cfg).eval())
    clean, corrupt, kw = _data()
    args = dict(sites="resid_pre", by="layer,position", **kw)
    fast = activation_patching(hm, clean, corrupt, **args)
    assert fast.attrs["prefix"] == "" and "bidirectional" in fast.attrs["prefix_off"]
    ref = activation_patching(hm, clean, corrupt, fast=False, **args)
    torch.testing.assert_close(torch.tensor(fast["effect"].to_numpy()), torch.tensor(ref["effect"].to_numpy()),
                               atol=1e-5, rtol=0, equal_nan=True)


def test_merge_cuts_is_the_cheapest_split():
    """The dynamic programme against every split of the sorted cuts into runs."""
    import itertools

    from interp.patching.batching import merge_cuts

    g = torch.Generator().manual_seed(0)
    for trial in range(20):
        k = int(torch.randint(1, 7, (1,), generator=g))
        cuts = sorted(torch.randperm(15, generator=g)[:k].add(1).tolist())
        rows = torch.randint(1, 40, (k,), generator=g).tolist()
        overhead = int(torch.randint(0, 300, (1,), generator=g))

        def cost(runs):
            return sum(overhead + sum(r for c, r in zip(cuts, rows) if lo <= c <= hi) * (16 - lo) for lo, hi in runs)

        best = min(cost([(cuts[a], cuts[b - 1]) for a, b in zip((0, *ends), (*ends, k))])
                   for n in range(k) for ends in itertools.combinations(range(1, k), n))
        got = merge_cuts(cuts, rows, 16, overhead)
        assert cost(got) == best and [lo for lo, _ in got] == sorted({lo for lo, _ in got})
        assert got[0][0] == cuts[0] and got[-1][1] == cuts[-1]
