"""Logit lens and direct logit attribution: analytic identities on tiny models of several families."""
import pytest
import torch

import hooks
from interp.lens import dla, logit_lens, to_str_tokens, top_tokens

from ..hooks.tiny_models import batch, build


@pytest.mark.parametrize("family", ["gpt2", "llama", "gemma"])
def test_lens_at_the_last_layer_is_the_logits_and_dla_sums_to_the_logit_diff(family):
    hm = hooks.wrap(build(family))
    inp = batch(family)
    last = inp["attention_mask"].sum(1) - 1
    logits = hm.run(inp).logits[torch.arange(3), last]
    lens = logit_lens(hm, inp)
    torch.testing.assert_close(lens[f"resid_post.{hm.n_layers - 1}"], logits, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(lens["resid_post.0"], logits, atol=1e-3)
    ans, dis = [5, 6, 7], [9, 9, 8]
    want = logits[torch.arange(3), ans] - logits[torch.arange(3), dis]
    for heads in (False, True):
        df = dla(hm, inp, answers=ans, distractors=dis, heads=heads)
        got = torch.tensor(df.groupby("example")["contribution"].sum().to_numpy(), dtype=torch.float32)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
        assert df["contribution"].abs().max() < 10 * want.abs().max() + 10  # no huge cancelling terms
        if heads:
            assert set(df[df["component"] == "head"]["head"].dropna()) == {0, 1, 2, 3}
    # per-layer attention = the sum of that layer's heads (and output bias)
    per_layer = dla(hm, inp, answers=ans, distractors=dis)
    per_head = dla(hm, inp, answers=ans, distractors=dis, heads=True)
    for L in range(hm.n_layers):
        a = per_layer[(per_layer.component == "attn") & (per_layer.layer == L)].contribution.sum()
        h = per_head[per_head.component.isin(["head", "attn_bias"]) & (per_head.layer == L)].contribution.sum()
        assert a == pytest.approx(h, abs=1e-4)


def test_str_tokens_and_top_tokens(demo_lm):
    hm = hooks.load(demo_lm)
    assert to_str_tokens(hm, "<bos> s1 s2 | s1") == ["<bos>", "s1", "s2", "|", "s1"]
    assert to_str_tokens(hm, ["<bos> s1", "<bos> s3 s4"])[1] == ["<bos>", "s3", "s4"]
    text = "<bos> s1 s2 s3 | s1 s2"
    lens = logit_lens(hm, [text])
    t = top_tokens(hm, lens, k=3)
    assert list(t.columns) == ["site", "rank", "token", "logit"] and len(t) == 6
    best = hm.run([text]).logits[0, -1].argmax()
    assert t[t.site == "resid_post.1"].token.iloc[0] == hm.tokenizer.decode([int(best)])


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_dla_matches_transformer_lens_decompose_resid():
    """Parity with the reference: TransformerLens ``cache.decompose_resid(apply_ln=True)`` projected
    on ``W_U[:, answer] - W_U[:, distractor]`` (its Exploratory Analysis demo) gives the same
    per-component numbers as our per-layer DLA on the same LayerNorm model."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=2, d_model=32, n_ctx=16, d_head=8, n_heads=4, d_mlp=64, d_vocab=50,
                                  act_fn="gelu", normalization_type="LN", seed=0)
    tl = HookedTransformer(cfg).eval()
    hm = hooks.wrap(tl)
    g = torch.Generator().manual_seed(0)
    toks = torch.randint(0, 50, (3, 7), generator=g)
    ans, dis = [5, 6, 7], [9, 9, 8]
    ours = dla(hm, toks.tolist(), answers=ans, distractors=dis)
    with torch.no_grad():
        _, cache = tl.run_with_cache(toks)
        stack, labels = cache.decompose_resid(layer=-1, mode="all", apply_ln=True, pos_slice=-1, return_labels=True)
        direction = tl.W_U[:, ans].T - tl.W_U[:, dis].T  # (B, d)
        ref = (stack[:, :, -1] if stack.dim() == 4 else stack) * direction[None]
        ref = ref.sum(-1)  # (components, B)
    ref = dict(zip(labels, ref))
    ref["embed"] = ref.pop("embed") + ref.pop("pos_embed")
    for name, vals in ref.items():
        if name == "embed":
            got = ours[ours.component == "embed"]
        else:
            L, kind = name.split("_", 1)
            got = ours[(ours.component == kind.replace("_out", "")) & (ours.layer == int(L))]
        torch.testing.assert_close(torch.tensor(got.sort_values("example").contribution.to_numpy(), dtype=torch.float32),
                                   vals.float(), rtol=1e-4, atol=1e-5)
