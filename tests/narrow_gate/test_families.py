"""Every analysis end to end on tiny random models of each VLM class (plumbing, spans, shapes).

LLaVA has no end-of-image marker: its gate candidate is the last image token. The others
(Chameleon, both block variants; Janus with a tokenizer that knows <end_of_image>; Emu3) have
an [EOI] span. Known answers here follow from the definitions, not from trained weights.
"""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

import hooks
from steering.narrow_gate import ablations as A
from steering.narrow_gate.flow import GROUPS, attention_flow
from steering.narrow_gate.gap import modality_gap
from steering.narrow_gate.layout import image_layout
from steering.narrow_gate.patching import patch_gate
from steering.narrow_gate.semantic import semantic_localisation
from steering.narrow_gate.tasks import encode, predict, score

from . import tiny_vlms as T

HAVE_CIDER = importlib.util.find_spec("pycocoevalcap") is not None  # CIDEr comes from pycocoevalcap

FAMS = ["llava", "chameleon", "chameleon_swin", "janus", "emu3"]
GATE = {"llava": "last_image", "chameleon": "eoi", "chameleon_swin": "eoi", "janus": "eoi", "emu3": "eoi"}


@pytest.fixture(scope="module", params=FAMS)
def fam(request):
    return request.param, T.build(request.param)


def test_layout_masks(fam):
    name, hm = fam
    exs = T.examples(name, 4)
    inputs = encode(hm, exs, "classify")
    lay = image_layout(hm, inputs)
    assert lay.gate_name == GATE[name]
    assert lay.gate.sum(1).tolist() == [2 if name == "emu3" else 1] * 4  # Emu3: <|extra_201|> + <|image end|>
    n_img = T.FAMILIES[name][1]
    assert lay.image.sum(1).tolist() == [n_img] * 4
    cats = torch.stack(list(lay.categories().values())).long().sum(0)
    assert torch.equal(cats.bool(), lay.side) and int(cats.max()) == 1  # disjoint, cover the image side
    assert lay.text_after.sum(1).tolist() == [len(e["input_ids"]) - e["input_ids"].index(8) for e in exs]
    ids = inputs["input_ids"]
    want = {T.EOI, T.EMU3_EOF} if name == "emu3" else {T.EOI if GATE[name] == "eoi" else T.IMG}
    assert set(ids[lay.gate].tolist()) == want


def test_flow_shares_are_normalised(fam):
    name, hm = fam
    res = attention_flow(hm, T.examples(name, 6), batch_size=4, task="classify")
    assert res.shares_array.shape == (hm.n_layers, len(GROUPS)) and res.n_examples == 6
    np.testing.assert_allclose(res.shares_array.sum(1), 1.0, atol=1e-5)
    inside = [o for o, n in enumerate(res.key_names) if n != "boi" and not n.startswith("pre[")]
    np.testing.assert_allclose(res.per_key[:, inside].sum(1), 1.0, atol=1e-5)  # normalised over the flow keys
    assert ((res.side_mass > 0) & (res.side_mass <= 1)).all()
    if name == "emu3":  # ... last row of visual tokens + end-of-line, <|extra_201|>, <|image end|>
        assert res.key_names[:3] == ["eoi", "eoi[-2]", "last_image"]
        assert res.gate().key in ("eoi", "last_image") or res.gate().key.startswith(("image", "special"))
    elif GATE[name] == "eoi":
        assert res.key_names[0] == "eoi" and res.key_names[1] == "last_image"
    else:
        assert res.key_names[0] == "last_image" and np.allclose(res.shares["eoi"], 0)
    assert res.gate().key in res.key_names


@pytest.mark.parametrize("backend", ["stream", "materialize"])
def test_flow_matches_attention_patterns(fam, backend):
    """The authors' f^l_j recomputed from cached attention patterns: the dataset mean of
    (1/H) Σ_h mean_{i ∈ text} A, normalised over image tokens, in-block specials and [EOI]."""
    name, hm = fam
    exs = T.examples(name, 2)
    res = attention_flow(hm, exs, batch_size=2, task="classify", layers=[1], backend=backend, chunk=3)
    inputs = encode(hm, exs, "classify")
    lay = image_layout(hm, inputs)
    pat = hm.run(inputs, [hooks.Cache("attn_pattern.1", layout="padded")]).cache["attn_pattern.1"]  # B,H,Q,K
    H = pat.shape[1]
    grp, tot = np.zeros(len(GROUPS)), 0.0
    for b in range(2):  # R_j summed per group (rows differ in length: aligned by group, not position)
        raw = pat[b][:, lay.text_after[b]].double().mean(1).sum(0) / H
        keys = lay.flow_keys[b]
        assert (lay.side[b] & ~keys).sum() == (0 if name == "llava" else 1 + (4 if name == "emu3" else 0))
        grp += np.array([float((raw * (lay.categories()[g][b] & keys)).sum()) for g in GROUPS]) / 2
        tot += float((raw * keys).sum()) / 2
    np.testing.assert_allclose(res.shares_array[0], grp / tot, atol=1e-5)
    np.testing.assert_allclose(res.side_mass[0], tot, atol=1e-6)


def test_ablations_cut_the_right_edges(fam):
    name, hm = fam
    exs = T.examples(name, 4)
    inputs = encode(hm, exs, "classify")
    lay = image_layout(hm, inputs)
    for abl in A.standard_ablations(hm.n_layers):
        ivs = abl.interventions(hm, lay)
        if abl.kind == "none":
            assert ivs == []
            continue
        keys = abl.keys(lay)
        assert not (keys & lay.text).any()
        if abl.kind == "eoi":
            assert torch.equal(keys, lay.gate)
        elif abl.kind == "img_text":
            assert torch.equal(keys, lay.side & ~lay.gate)
        else:
            assert keys.sum(1).tolist() == [min(10, int(n)) for n in (lay.image & ~lay.gate).sum(1)]
        # the authors' query sets: all queries for [EOI] and random, text queries for img→text
        assert abl.query_set == ("text" if abl.kind == "img_text" else "all")
        queries = lay.text if abl.kind == "img_text" else inputs["attention_mask"].bool()
        with hm.trace(inputs) as tr:
            tr.add(ivs[0])  # ops on one site run in order: knock out, then read
            pat = tr.cache("attn_pattern.0", layout="padded")
        cut = pat["attn_pattern.0"].permute(0, 2, 1, 3)[queries]  # (queries, H, K)
        kk = keys[queries.nonzero()[:, 0]]  # keys of each query's row
        assert float(cut.permute(0, 2, 1)[kk].abs().max()) == 0.0  # zeroed, all heads
    # [EOI] knockout changes what the text after the image computes, nothing before the image
    clean = hm.run(inputs).logits
    ko = hm.run(inputs, A.Ablation("eoi").interventions(hm, lay)).logits
    before = inputs["attention_mask"].bool() & (lay.side.long().cumsum(1) == 0)
    assert torch.allclose(ko[before], clean[before], atol=1e-5)  # explicit vs sdpa kernels: rounding only
    assert (ko[lay.text_after] - clean[lay.text_after]).abs().max() > 1e-5


def test_ablation_table_and_generation(fam):
    name, hm = fam
    exs = T.examples(name, 6)
    abl = A.standard_ablations(hm.n_layers, windows=(None, 1), mode="zero")
    tasks = {"cls": (exs, "classify"), "vqa": (exs, "vqa")}
    if HAVE_CIDER:
        tasks["cap"] = (exs, "caption")
    abl = [a if a.kind != "random" else A.Ablation("random", last=a.last, n_draws=2) for a in abl]
    df = A.ablation_table(hm, tasks, abl, batch_size=4)
    g = "last image" if name == "llava" else "[EOI]"  # LLaVA's row cuts the last image token: labelled so
    assert list(df.index) == ["none", g, "img→text", "random", f"{g} (last 1)", "img→text (last 1)",
                              "random (last 1)"]
    assert set(df.attrs["draws"]) == {"random", "random (last 1)"}
    assert all(len(v) == 2 for d in df.attrs["draws"].values() for v in d.values())
    assert set(df.columns) == {"ablation", "cls accuracy", "vqa vqa_accuracy"} | ({"cap cider"} if HAVE_CIDER else set())
    assert df.drop(columns="ablation").map(lambda v: 0 <= v).all().all()
    # generation runs with the knockout active on generated tokens too
    preds = predict(hm, exs[:2], "vqa", interventions=lambda i, lay, k: A.Ablation("eoi").interventions(hm, lay),
                    max_new_tokens=3)
    assert len(preds) == 2 and all(isinstance(p, str) for p in preds)
    assert score("vqa", preds, exs[:2])["vqa_accuracy"] >= 0


def test_patching_plumbing(fam):
    name, hm = fam
    a, b = T.examples(name, 4, seed=1, post=[8, 9]), T.examples(name, 4, seed=2, post=[8, 9])
    pairs = list(zip(a, b[1:] + b[:1]))  # different pixels and labels, same text
    res = patch_gate(hm, pairs, layers=[1], batch_size=4)
    s = res.summary
    assert list(s.index) == [1] and int(s["n_pairs"].iloc[0]) == 4
    assert 0 <= float(s["overlap"].iloc[0]) <= 1.0 + 1e-6
    # patching a run with itself changes nothing: no flips, overlap with itself 1
    same = patch_gate(hm, [(e, e) for e in a], layers=[0, 1], mode="attn_input", batch_size=4).pairs
    assert not same["flipped"].any() and np.allclose(same["overlap"], 1.0, atol=1e-5)
    # patching layer 0's residual at the gate with another image's: the gate token's own embedding (same id)
    if GATE[name] == "eoi":
        r0 = patch_gate(hm, pairs, layers=[0], batch_size=4).pairs
        assert np.allclose(r0["diff_patched"], r0["diff_clean"], atol=1e-5)


def test_gap_and_semantic(fam):
    name, hm = fam
    exs = T.examples(name, 24)
    gap = modality_gap(hm, exs, tokens_per_example=8, batch_size=8, task="classify", protocol="same_prompt")
    assert list(gap.index) == list(range(hm.n_layers))
    assert ((gap["cos_q1"] <= gap["cos_median"]) & (gap["cos_median"] <= gap["cos_q3"])).all()
    assert gap["homogeneity"].between(0, 1).all() and (gap["n_clusters"] >= 1).all()
    sem = semantic_localisation(hm, exs, k=5, batch_size=8)
    assert list(sem.columns) == ["eoi", "last_image", "mean_image"] and sem.shape[0] == hm.n_layers
    assert sem.map(lambda v: 0 <= v <= 1).all().all()
