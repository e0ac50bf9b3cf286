"""One position convention across backends: the ``prepend_bos`` policy (hooks.hf_backend).

Known answers: an HF GPT-2 and a TransformerLens HookedTransformer holding the same weights
(converted with TL's own ``convert_gpt2_weights``, no weight processing) give the same token ids
for the same texts, the same selected positions (``token("cat")``, ``"last"``, ``0``) and the
same cached ``resid_post`` there, under the default (BOS first) and under ``prepend_bos=False``.
"""
from __future__ import annotations

import pytest
import torch

import hooks
from hooks import token
from hooks.errors import HookError

tl = pytest.importorskip("transformer_lens")
transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.filterwarnings("ignore:HookedTransformer.*deprecated:DeprecationWarning")

from tests.hooks.test_transformer_lens import WORDS, tiny_tokenizer  # noqa: E402

TEXTS = ["the cat sat on a mat", "a big cat ran"]
BOS = 1  # "<bos>" in tiny_tokenizer's vocabulary
D, V = 32, 4 + len(WORDS)


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return tiny_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def pair(tok):
    """(HF GPT-2, TL HookedTransformer) with the same weights."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformer_lens.pretrained.weight_conversions.gpt2 import convert_gpt2_weights

    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=V, n_positions=64, n_embd=D, n_layer=2, n_head=4, bos_token_id=BOS, eos_token_id=2)).eval()
    with torch.no_grad():  # GPT-2 initialises norms to 1/0 and biases to 0: perturb so every term matters
        for p in hf.parameters():
            p.add_(0.05 * torch.randn_like(p))
    cfg = HookedTransformerConfig(n_layers=2, d_model=D, n_ctx=64, d_head=D // 4, n_heads=4, d_mlp=4 * D, d_vocab=V,
                                  act_fn="gelu_new", normalization_type="LN", eps=hf.config.layer_norm_epsilon,
                                  positional_embedding_type="standard")
    model = HookedTransformer(cfg, tokenizer=tok)
    model.load_and_process_state_dict(convert_gpt2_weights(hf, cfg), fold_ln=False, center_writing_weights=False,
                                      center_unembed=False, fold_value_biases=False)
    return hf, model.eval()


def real_rows(inputs):
    return [r[m.bool()].tolist() for r, m in zip(inputs["input_ids"], inputs["attention_mask"])]


def ids_of(tok, text):
    return [tok.convert_tokens_to_ids(w) for w in text.split()]


@pytest.mark.parametrize("prepend_bos", [None, False])
def test_same_text_same_ids_positions_and_activations_on_hf_and_tl(pair, tok, prepend_bos):
    hf, tlm = pair
    a, b = hooks.wrap(hf, tok), hooks.wrap(tlm)  # TL: its own tokenizer (TL may have re-made it)
    kw = {} if prepend_bos is None else {"prepend_bos": prepend_bos}
    want = [([BOS] if prepend_bos is None else []) + ids_of(tok, t) for t in TEXTS]
    assert real_rows(a.prepare(TEXTS, **kw)) == want
    assert real_rows(b.prepare(TEXTS, **kw)) == want
    for sel in (token("cat"), "last", 0, "1:"):
        ra = a.run(TEXTS, [hooks.Cache("resid_post.1", positions=sel, layout="flat")], **kw).cache
        rb = b.run(TEXTS, [hooks.Cache("resid_post.1", positions=sel, layout="flat")], **kw).cache
        assert torch.equal(ra.masks["resid_post.1"].cpu(), rb.masks["resid_post.1"].cpu()), sel
        assert torch.allclose(ra["resid_post.1"], rb["resid_post.1"], atol=1e-4), sel
    first = a.run(TEXTS, [hooks.Cache("resid_pre.0", positions=0)], **kw).cache["resid_pre.0"]
    # position 0 is BOS under the default, "the"/"a" without it: check against the embeddings
    first_ids = torch.tensor([w[0] for w in want])
    emb = hf.transformer.wte(first_ids) + hf.transformer.wpe(torch.zeros_like(first_ids))
    assert torch.allclose(first, emb, atol=1e-6)


def test_policy_per_wrap_and_generate(pair, tok):
    hf, tlm = pair
    a = hooks.wrap(hf, tok, prepend_bos=False)
    assert a.prepend_bos is False and real_rows(a.prepare(["the cat"])) == [ids_of(tok, "the cat")]
    assert real_rows(a.prepare(["the cat"], prepend_bos=True)) == [[BOS, *ids_of(tok, "the cat")]]
    g = hooks.wrap(hf, tok).generate(["the cat"], max_new_tokens=2)
    assert g.sequences[0, 0].item() == BOS and g.prompt_len == 3
    gt = hooks.wrap(tlm).generate(["the cat"], max_new_tokens=2, prepend_bos=False)
    assert gt.prompt_len == 2
    with pytest.raises(HookError, match="prepend_bos must be True or False"):
        hooks.wrap(hf, tok, prepend_bos="yes")


def test_tokenizer_that_adds_bos_itself_is_not_doubled(tmp_path, pair):
    from tokenizers import processors

    hf, _ = pair
    tok = tiny_tokenizer(tmp_path)
    tok._tokenizer.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", BOS)])
    assert tok("the cat")["input_ids"][0] == BOS  # this tokenizer adds BOS (like Llama's)
    hm = hooks.wrap(hf, tok)
    assert real_rows(hm.prepare(["the cat"])) == [[BOS, *ids_of(tok, "the cat")]]
    assert real_rows(hm.prepare(["the cat"], prepend_bos=False)) == [ids_of(tok, "the cat")]
    # a BOS written in the text is the user's: kept under prepend_bos=False, not doubled under True
    assert real_rows(hm.prepare(["<bos> the"], prepend_bos=False))[0][0] == BOS
    plain = tiny_tokenizer(tmp_path / "plain")
    assert real_rows(hooks.wrap(hf, plain).prepare(["<bos> the"])) == [[BOS, *ids_of(plain, "the")]]


def test_token_ids_are_never_changed(pair, tok):
    hf, tlm = pair
    ids = torch.tensor([ids_of(tok, "the cat sat")])
    for hm in (hooks.wrap(hf, tok), hooks.wrap(tlm)):
        assert torch.equal(hm.prepare(ids)["input_ids"], ids)
        assert real_rows(hm.prepare([ids[0].tolist()])) == [ids[0].tolist()]


def test_policy_at_load(tmp_path, pair, tok):
    """``hooks.load(path, prepend_bos=...)`` sets the same policy as ``hooks.wrap``."""
    hf, _ = pair
    hf.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    off = hooks.load(tmp_path, prepend_bos=False)
    assert off.prepend_bos is False and real_rows(off.prepare(["the cat"])) == [ids_of(tok, "the cat")]
    on = hooks.load(tmp_path)
    assert real_rows(on.prepare(["the cat"])) == [[BOS, *ids_of(tok, "the cat")]]
    with pytest.raises(HookError, match="prepend_bos must be True or False"):
        hooks.load(tmp_path, prepend_bos="no")
