"""An nnsight ``LanguageModel`` wrapped by hooks.wrap: its own tokenizer, and nnsight untouched.

Known answers on a tiny GPT-2 saved locally and loaded by nnsight from that directory:
the wrapped model's caches equal those of wrapping the HF model directly with the same
tokenizer, and after our traces close (normally or by an exception) every module's ``forward``
is the object nnsight left there and an nnsight trace still reads the same hidden states.
"""
from __future__ import annotations

import pytest
import torch

import hooks

nnsight = pytest.importorskip("nnsight")
transformers = pytest.importorskip("transformers")

from tests.hooks.test_transformer_lens import tiny_tokenizer  # noqa: E402

TEXTS = ["the cat sat on a mat", "a dog ran"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("gpt2")
    tok = tiny_tokenizer(path)
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=2, n_head=4,
                                  bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                  pad_token_id=tok.pad_token_id)
    transformers.GPT2LMHeadModel(cfg).eval().save_pretrained(path)
    return path


def forwards(model):
    return {n: m.__dict__.get("forward") for n, m in model.named_modules()}


def hook_count(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def nnsight_resid(lm, text):
    with lm.trace(text):
        out = lm.transformer.h[1].output.save()
    out = out[0] if isinstance(out, tuple) else out
    return out.detach()


def load_nnsight(kind, path):
    if kind == "LanguageModel":
        return nnsight.LanguageModel(str(path), device_map="cpu", dispatch=True)
    return nnsight.TransformersModel(str(path), task="text-generation", device_map="cpu", dispatch=True)


@pytest.mark.filterwarnings("ignore:LanguageModel is deprecated")
@pytest.mark.parametrize("kind", ["LanguageModel", "TransformersModel"])  # nnsight 0.8 renamed the first
def test_language_model_wrapped_with_its_own_tokenizer(saved, kind):
    lm = load_nnsight(kind, saved)
    hm = hooks.wrap(lm)
    assert hm.tokenizer is lm.tokenizer and hm.model is lm._module and hm.adapter.name == "gpt2"
    ref_model = transformers.GPT2LMHeadModel.from_pretrained(saved).eval()
    ref = hooks.wrap(ref_model, transformers.AutoTokenizer.from_pretrained(saved))
    c = hm.run(TEXTS, [hooks.Cache("resid_post.1", positions="last"), hooks.Cache("logits", positions=0)]).cache
    r = ref.run(TEXTS, [hooks.Cache("resid_post.1", positions="last"), hooks.Cache("logits", positions=0)]).cache
    assert torch.allclose(c["resid_post.1"], r["resid_post.1"], atol=1e-6)
    assert torch.allclose(c["logits"], r["logits"], atol=1e-5)
    assert hm.prepare(["the cat"])["input_ids"][0, 0].item() == lm.tokenizer.bos_token_id  # the BOS policy


@pytest.mark.filterwarnings("ignore:LanguageModel is deprecated")
def test_our_cleanup_leaves_nnsight_tracing_intact(saved):
    lm = nnsight.LanguageModel(str(saved), device_map="cpu", dispatch=True)
    text = "the cat sat"
    before_resid = nnsight_resid(lm, text)
    before_fwd, before_hooks = forwards(lm._module), hook_count(lm._module)
    hm = hooks.wrap(lm, prepend_bos=False)  # nnsight feeds the tokenizer's ids (no BOS added by this tokenizer)
    ours = hm.run([text], [hooks.Cache("resid_post.1")]).cache["resid_post.1"]
    assert torch.allclose(ours, before_resid, atol=1e-6)
    with pytest.raises(RuntimeError, match="boom"):
        with hm.trace([text]) as tr:
            tr.steer("resid_post.0", vector=torch.ones(32), scale=3.0)
            raise RuntimeError("boom")
    after = forwards(lm._module)
    assert all(after[n] is before_fwd[n] for n in before_fwd)  # nnsight's forwards (if any) are left alone
    assert hook_count(lm._module) == before_hooks
    assert torch.allclose(nnsight_resid(lm, text), before_resid, atol=0)
    # and nnsight interventions still act
    with lm.trace(text):
        lm.transformer.h[0].mlp.output[:] = 0
        zeroed = lm.transformer.h[1].output.save()
    zeroed = zeroed[0] if isinstance(zeroed, tuple) else zeroed
    assert not torch.allclose(zeroed, before_resid)
    mlp_zero = hm.run([text], [hooks.Ablate("mlp_out.0", how="zero"), hooks.Cache("resid_post.1")]).cache["resid_post.1"]
    assert torch.allclose(mlp_zero, zeroed, atol=1e-5)
