"""Blocks that run on a stream longer than the input (``Site.token_offset``): CPM-Ant prepends a
learned prompt of ``prompt_length`` positions (models/cpmant/modeling_cpmant.py ``CpmAntModel.forward``)
and returns hidden states of the tokens only. Known answers: the sites are the tokens' slice and
equal ``output_hidden_states``; an edit moves exactly the tokens' positions, never the prompt's."""
from __future__ import annotations

import warnings

import pytest
import torch

import hooks
from hooks import Cache, Steer
from hooks.verify import SiteCheckWarning

PROMPT = 4


@pytest.fixture(scope="module")
def cpmant():
    import transformers as T

    torch.manual_seed(0)
    cfg = T.CpmAntConfig(vocab_size=96, hidden_size=32, num_attention_heads=4, dim_head=8, dim_ff=64,
                         num_hidden_layers=2, prompt_types=4, prompt_length=PROMPT, segment_types=4,
                         position_bias_num_buckets=32, position_bias_max_distance=64)
    model = T.CpmAntForCausalLM(cfg).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error", SiteCheckWarning)
        return hooks.wrap(model)


def test_sites_are_the_tokens_slice_of_the_stream(cpmant):
    hm = cpmant
    assert hm.adapter.extra["token_offset"] == PROMPT
    assert hm.site_report["removed"] == {}
    assert "attn_pattern.0" in hm.site_report["absent"] or "attn_pattern.0" in getattr(hm._table, "absent", {})
    ids = torch.randint(5, 90, (2, 6), generator=torch.Generator().manual_seed(1))
    res = hm.run(ids, [Cache(["resid_pre.*", "resid_post.*"], "all")], output_hidden_states=True)
    hs = res.output.hidden_states
    for L in range(2):
        assert res.cache[f"resid_pre.{L}"].shape[:2] == (2, 6)
        assert torch.allclose(res.cache[f"resid_pre.{L}"], hs[L], atol=1e-6)


def test_an_edit_moves_the_tokens_and_leaves_the_prompt(cpmant):
    hm = cpmant
    ids = torch.randint(5, 90, (1, 5), generator=torch.Generator().manual_seed(2))
    raw = "cpmant.encoder.layers.1:input"  # the whole stream (a raw module path has no offset)
    clean = hm.run(ids, [Cache(raw, "all")]).cache[raw]
    assert clean.shape[1] == PROMPT + 5
    v = torch.randn(32, generator=torch.Generator().manual_seed(3))
    got = hm.run(ids, [Steer("resid_pre.1", vector=v, scale=2.0), Cache(raw, "all")])
    moved = got.cache[raw] - clean
    assert torch.equal(moved[:, :PROMPT], torch.zeros_like(moved[:, :PROMPT]))
    assert torch.allclose(moved[:, PROMPT:], (2.0 * v).expand(1, 5, 32), atol=1e-4)
    assert not torch.allclose(got.logits, hm.run(ids).logits)
