"""Pixtral (a LLaVA-class model with a Pixtral vision tower): its processor writes ``[IMG]`` rows
separated by ``[IMG_BREAK]`` and closes the image with ``[IMG_END]``. The spans must make
``[IMG_END]`` the ``eoi`` (the gate candidate the paper ablates) and keep the breaks inside the
image block, so one image is one block."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from steering.narrow_gate import ablations as A
from steering.narrow_gate.flow import attention_flow
from steering.narrow_gate.layout import family, image_layout, is_native
from steering.narrow_gate.tasks import encode

from . import tiny_pixtral as TP


def test_pixtral_spans_put_img_end_as_eoi():
    hm = TP.build()
    exs = TP.examples(3)
    inputs = encode(hm, exs, "classify")
    ids, am = inputs["input_ids"], inputs["attention_mask"]
    assert ids[0].tolist() == [1, 10, 10, 10, 12, 10, 10, 10, 13, 20, 21]  # <s> [IMG]x3 [IMG_BREAK] [IMG]x3 [IMG_END] ...
    spans = hm.spans(ids, am)
    assert torch.equal(spans["eoi"], ids == TP.END)
    assert torch.equal(spans["image"], ids == TP.IMG)
    assert not (spans["text"] & (ids == TP.BRK)).any()  # breaks are inside the block, not text
    assert torch.equal(spans["text"], (ids == 1) | (ids >= 20))
    lay = image_layout(hm, inputs)  # one block per row: no "more than one image block" error
    assert lay.gate_name == "eoi" and torch.equal(lay.gate, ids == TP.END)
    assert torch.equal(lay.special, ids == TP.BRK) and torch.equal(lay.flow_keys, lay.side)
    assert family(hm) == "pixtral" and not is_native(hm)
    # knockouts: [EOI] = [IMG_END]; img→text = every [IMG] and [IMG_BREAK] (the authors' all-image set)
    assert torch.equal(A.Ablation("eoi").keys(lay), ids == TP.END)
    assert torch.equal(A.Ablation("img_text").keys(lay), (ids == TP.IMG) | (ids == TP.BRK))
    res = attention_flow(hm, exs, task="classify", batch_size=3, chunk=4)
    assert res.key_names[:2] == ["eoi", "last_image"] and "special[-5]" in res.key_names
    np.testing.assert_allclose(res.shares_array.sum(1), 1.0, atol=1e-6)
    # grouped-query heads (4 query heads on 2 key/value heads): the streaming sums equal the materialised pattern's
    ref = attention_flow(hm, exs, task="classify", batch_size=3, backend="materialize")
    np.testing.assert_allclose(res.per_key, ref.per_key, atol=1e-6)
    np.testing.assert_allclose(res.side_mass, ref.side_mass, atol=1e-7)
    df = A.ablation_table(hm, {"": (exs, "classify")}, [A.Ablation("none"), A.Ablation("eoi")], batch_size=3)
    assert list(df.index) == ["none", "[EOI]"]


def test_flow_mode_restores_the_attention_implementation_after_an_error():
    from steering.narrow_gate import flow_attention as FA

    hm = TP.build()
    before = hm.model.config._attn_implementation
    mod = hm.resolve_sites(["attn_pattern.0"])[0].module
    col = FA._Collector(torch.ones(1, 11, dtype=torch.bool), 4)
    with pytest.raises(RuntimeError, match="boom"):
        with FA.flow_mode(hm, {id(mod): col}):
            assert hm.model.config._attn_implementation == FA.NAME
            raise RuntimeError("boom")
    assert hm.model.config._attn_implementation == before and not FA._ACTIVE and not FA._DELEGATE
    # a forward whose query count does not match the collector fails with a clear message, and still restores
    inputs = encode(hm, TP.examples(2), "classify")
    with pytest.raises(ValueError, match="Flow queries"):
        FA.text_key_sums(hm, inputs, [0], torch.ones(1, 3, dtype=torch.bool))
    assert hm.model.config._attn_implementation == before and not FA._ACTIVE
