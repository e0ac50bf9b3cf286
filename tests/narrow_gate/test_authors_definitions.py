"""One known-answer test per definition taken from the authors' code
(RitAreaSciencePark/Narrow-gate, clean_branch: paper_experiments/Tab1_AblationVQA.py,
Tab1_AblationCaptioning.py, Fig2_CosSim_Hom.py, Fig3_CrossAttention.py, src/ablation.py,
src/activations.py, src/metrics/overlap.py, evaluation_task/vqa/eval/eval_vqa.py), each on a
hand-computed case where our earlier definition gives a different number."""
from __future__ import annotations

import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from steering.narrow_gate import ablations as A
from steering.narrow_gate import tasks
from steering.narrow_gate.errors import MissingDependencyError
from steering.narrow_gate.flow import FlowResult, flow_from_sums
from steering.narrow_gate.layout import ImageLayout, image_layout, is_native
from steering.narrow_gate.metrics import vqa_score

from . import tiny_vlms as T


def _layout(rows):
    """ImageLayout from per-row role strings: b = BOS/text, B = BOI, i = image, E = EOI, t = text after."""
    def m(ch):
        return torch.tensor([[c in ch for c in r] for r in rows])
    am = m("bBiEt")
    image, eoi, text = m("i"), m("E"), m("bt")
    side = am & ~text
    last = torch.zeros_like(image)
    for b, r in enumerate(rows):
        last[b, r.rindex("i")] = True
    return ImageLayout(am, text, image, side, eoi, side & ~image & ~eoi, last, eoi, "eoi")


# -- flow: normalise the dataset-mean attention over image tokens + EOI (Fig3_CrossAttention.py) ------------
def test_flow_normalises_the_dataset_mean_over_image_tokens_and_eoi():
    lay = _layout(["bBiiEtt", "bBiiEtt"])
    # mean attention per text query and head on (BOS, BOI, img1, img2, EOI): example A looks at the
    # image a lot (mostly BOI), example B a little
    raw = torch.tensor([[0.1, 0.5, 0.1, 0.1, 0.2, 0, 0], [0.9, 0.0, 0.05, 0.05, 0.0, 0, 0]])
    n_q, H = torch.tensor([2, 2]), 4
    sums = {0: raw * 2 * H}
    res = flow_from_sums(sums, n_q, H, lay, [0])
    # dataset mean: img1 .075, img2 .075, EOI .1 -> total .25 (BOS, BOI out): shares .3 / .3 / .4
    np.testing.assert_allclose(res.shares_array[0], [0.0, 0.3, 0.3, 0.4], atol=1e-9)
    np.testing.assert_allclose(res.side_mass, [0.25], atol=1e-9)
    assert res.key_names == ["eoi", "last_image", "image[-3]", "boi"]
    # our earlier per-example normalisation over every image-side key (BOI in "special") differs:
    # A: BOI .556, img .111, img .111, EOI .222; B: img .5, img .5 -> means .278 / .306 / .306 / .111
    old = flow_from_sums(sums, n_q, H, lay, [0], normalize="per_example")
    np.testing.assert_allclose(old.shares_array[0], [5 / 18, 11 / 36, 11 / 36, 1 / 9], atol=1e-9)


def test_gate_weights_layers_by_their_text_to_image_mass():
    # layer 0: the text looks at the image (mass .5), 90% via EOI; layer 1: mass .001, all on the last image token
    res = FlowResult([0, 1], np.zeros((2, 4)), np.array([[0.9, 0.1], [0.0, 1.0]]), ["eoi", "last_image"],
                     np.array([0.5, 0.001]), 10)
    g = res.gate()
    assert g.key == "eoi" and g.share == pytest.approx(0.45 / 0.501)
    u = res.gate(weights="uniform")  # the unweighted mean would call the last image token the gate
    assert u.key == "last_image" and u.share == pytest.approx(0.55)


# -- Emu3's [EOI] is the pair <|extra_201|> + <|image end|> (src/activations.py: @end-image-emu) ------------
def test_emu3_eoi_pair_is_ablated_together():
    hm = T.build("emu3")
    exs = T.examples("emu3", 2)
    inputs = tasks.encode(hm, exs, "classify")
    lay = image_layout(hm, inputs)
    ids = inputs["input_ids"]
    assert lay.gate_name == "eoi" and lay.eoi.sum(1).tolist() == [2, 2]
    assert sorted(ids[lay.eoi].tolist()) == sorted([T.EMU3_EOF, T.EOI] * 2)
    assert torch.equal(A.Ablation("eoi").keys(lay), lay.eoi)
    img_text = A.Ablation("img_text").keys(lay)
    assert not (img_text & lay.eoi).any() and (ids[img_text] == T.EMU3_EOF).sum() == 0


# -- random baseline: ALL queries -> 10 image tokens, mean over draws (Tab1_AblationVQA.py, src/ablation.py) --
def test_random_baseline_cuts_all_queries_and_averages_draws(monkeypatch):
    lay = _layout(["bB" + "i" * 30 + "Ett"])
    a = A.Ablation("random")
    assert a.n_draws == 5 and a.query_set == "all" and A.Ablation("img_text").query_set == "text"
    assert A.Ablation("eoi").query_set == "all"
    ko = a.interventions(SimpleNamespace(n_layers=2), lay)[0]
    assert ko.queries == "all" and int(ko.keys.sum()) == 10
    draws = [a.keys(lay, 0, d) for d in range(5)]
    assert all(int(k.sum()) == 10 and not (k & ~lay.image).any() for k in draws)
    assert len({tuple(k.nonzero()[:, 1].tolist()) for k in draws}) == 5  # five different draws
    calls = []

    def fake_evaluate(hm, examples, task, interventions=None, **kw):
        calls.append(interventions)
        return {"m": float(len(calls) - 1)}  # draw d scores d

    monkeypatch.setattr(tasks, "evaluate", fake_evaluate)
    monkeypatch.setattr(A, "gate_name_of", lambda *a, **k: "eoi")
    df = A.ablation_table(SimpleNamespace(n_layers=2), {"": ([{}], "classify")}, [A.Ablation("random")])
    assert df.loc["random", "m"] == pytest.approx(2.0)  # mean of 0..4
    assert df.attrs["draws"] == {"random": {"m": [0.0, 1.0, 2.0, 3.0, 4.0]}}


# -- official VQA accuracy: mean over 10 leave-one-annotator-out subsets (eval_vqa.py::evaluate_VQA) --------
@pytest.mark.parametrize("n_match,want", [(3, 0.9), (2, 0.6), (1, 0.3), (4, 1.0), (0, 0.0), (10, 1.0)])
def test_official_vqa_accuracy(n_match, want):
    # 3 matches: 7 subsets keep all 3 (-> 1), 3 subsets keep 2 (-> 2/3): (7 + 2) / 10 = 0.9, not min(3/3, 1) = 1
    assert vqa_score("Two", ["2"] * n_match + ["3"] * (10 - n_match)) == pytest.approx(want)


# -- task prompts, generation lengths (Tab1_AblationVQA.py / Tab1_AblationCaptioning.py, "prompt" mode) -----
def _fake_hm(adapter="chameleon", vision=None):
    cfg = SimpleNamespace(vision_config=SimpleNamespace(model_type=vision)) if vision else SimpleNamespace()
    return SimpleNamespace(adapter=SimpleNamespace(name=adapter), model=SimpleNamespace(config=cfg), processor=None,
                           tokenizer=SimpleNamespace(image_token="<image>"))


def test_table1_prompts_are_the_authors():
    ex = {"image": "x.png", "question": "What is it?"}
    rules = ("- Answer the question using a single word, number, or short phrase. Use as few words as possible."
             "- If the answer is a number, report it as a number, i.e. 2, not Two, and only include the number "
             "without any unit.- If the question is Yes/No, answer with Yes/No, and nothing else (no likely, "
             "unknown, etc.).- You cannot answer that the question is unanswerable. You must answer.")
    assert tasks.build_prompt(_fake_hm(), ex, "vqa") == "<image>What is it?\n" + rules
    assert tasks.build_prompt(_fake_hm("llava", "pixtral"), ex, "vqa") == "[INST]<s><image>What is it?" + rules + "[/INST]"
    assert tasks.build_prompt(_fake_hm(), ex, "caption") == "<image>Provide a one-sentence caption for the provided image."
    assert tasks.build_prompt(_fake_hm("janus"), ex, "caption") == (
        '"<image>USER:Provide a one-sentence caption for the provided image. \nASSISTANT:"')
    assert tasks.MAX_NEW_TOKENS == {"vqa": 20, "caption": 60}
    assert tasks.CHAMELEON_COMPLETION["vqa"] is False and tasks.CHAMELEON_COMPLETION["caption"] is True
    with pytest.warns(UserWarning, match="chat template"):
        p = tasks.build_prompt(_fake_hm("emu3"), ex, "vqa")
    assert p == "USER:<image>\nWhat is it?Answer the question using a single word or phrase. ASSISTANT:"


# -- modality gap: |cos| between different examples' image and text tokens (residual_stream.py) -------------
def test_modality_gap_cosine_is_the_authors():
    from steering.narrow_gate.gap import K_AUTHORS, Z_AUTHORS, authors_cosine_stats

    assert (Z_AUTHORS, K_AUTHORS) == (1.65, 16)
    e1, e2 = torch.tensor([1.0, 0]), torch.tensor([0, 1.0])
    img = torch.stack([e1, e2, (e1 + e2) / 2 ** 0.5])
    txt = torch.stack([e1, -e2, e2])
    X = torch.cat([txt, img])
    mod = torch.tensor([0, 0, 0, 1, 1, 1])
    s = authors_cosine_stats(X, mod)
    # pairs i > j only: (img1, txt0) = 0, (img2, txt0) = .707, (img2, txt1) = -.707 -> |.|; (img0, txt0) = 1 is left out
    assert s["n_pairs"] == 3 and s["cos_median"] == pytest.approx(2 ** -0.5) and s["cos_q1"] == pytest.approx(0)
    assert s["cos_q3"] == pytest.approx(2 ** -0.5)


def test_modality_gap_prompts_and_tokens_follow_the_protocol():
    from steering.narrow_gate.gap import collect_authors_tokens, modality_gap, modality_prompts
    from steering.narrow_gate.toy import load_toy_model, make_examples

    hm = load_toy_model("gated")
    exs = make_examples(40, seed=5)
    it, ti = modality_prompts(hm, exs[:1])
    assert it[0].startswith("<s> <racm3:break>") and ti[0].startswith("<s> what") and ti[0].endswith("<eoss>")
    reps, mod, owner = collect_authors_tokens(hm, exs, layers=[0], batch_size=40)
    assert mod.tolist() == [0] * 40 + [1] * 40
    # layer-0 residuals identify the token: no text sample is BOS (the authors' text_tokens[1:])
    import hooks

    r0 = hm.run("<s>", [hooks.Cache("resid_post.0", layout="flat")]).cache["resid_post.0"][0]  # BOS at position 0
    assert not torch.isclose(reps[0][:40], r0, atol=1e-4).all(1).any()
    gap = modality_gap(hm, exs, layers=[0, 3], batch_size=40)
    assert gap.attrs["protocol"] == "authors" and (gap["n_pairs"] == 40 * 39 // 2).all()


# -- label overlap on raw Euclidean distances (src/metrics/overlap.py: dadapy Data(coordinates=...)) --------
def test_label_overlap_uses_raw_euclidean_distances(monkeypatch):
    from steering.narrow_gate import semantic

    # class 0 near the origin at 0° and 45°, class 1 far out at 3° and 19°: neighbours by position
    # keep the classes apart (overlap 1), neighbours by angle (L2-normalised) mix them
    X = torch.tensor([[1.0, 0.0], [1.0, 1.0], [10.0, 0.5], [10.0, 3.5]], dtype=torch.float64)
    reps = {r: {0: X} for r in semantic.REPS}
    monkeypatch.setattr(semantic, "gate_representations", lambda *a, **k: reps)
    exs = [{"label": c} for c in (0, 0, 1, 1)]
    raw = semantic.semantic_localisation(None, exs, k=1)
    assert (raw.loc[0] == 1.0).all()
    normed = semantic.semantic_localisation(None, exs, k=1, normalize=True)
    assert (normed.loc[0] < 1.0).all()


# -- which models are native: the paper's latest version (arXiv 2412.06646v4) -------------------------------
def test_native_classification_and_llava_label():
    assert [is_native(_fake_hm(a)) for a in ("chameleon", "emu3", "janus", "llava")] == [True, True, False, False]
    assert not is_native(_fake_hm("llava", "pixtral"))
    assert A.Ablation("eoi", gate_name="last_image").label == "last image"
    assert A.Ablation("eoi", last=8).label == "[EOI] (last 8)"


# -- CIDEr: fail before any work ----------------------------------------------------------------------------
def test_cider_is_checked_before_any_generation(monkeypatch):
    monkeypatch.setitem(sys.modules, "pycocoevalcap", None)
    monkeypatch.setitem(sys.modules, "pycocoevalcap.cider", None)
    monkeypatch.setitem(sys.modules, "pycocoevalcap.cider.cider", None)
    untouchable = object()  # any use of the model would raise AttributeError, not this error
    with pytest.raises(MissingDependencyError, match="pycocoevalcap"):
        A.ablation_table(untouchable, {"COCO": ([{"image": "x"}], "caption")})
    with pytest.raises(MissingDependencyError):
        tasks.predict(untouchable, [{"image": "x"}], "caption")


# -- Emu3 steering across aspect ratios ----------------------------------------------------------------------
def test_emu3_patching_across_aspect_ratios():
    from steering.narrow_gate.patching import patch_gate

    hm = T.build("emu3")
    square = T.examples("emu3", 2, seed=1, post=[8, 9])
    wide = []
    for e in T.examples("emu3", 2, seed=2, post=[8, 9]):  # an 8×16 image: 4 rows of 8 codes + end-of-line
        ids = e["input_ids"]
        b, t = ids.index(T.BOI), ids.index(T.EOI)
        block = [T.BOI] + T.EMU3_HEADER + [T.IMG] * 36 + [T.EMU3_EOF, T.EOI]
        wide.append({**e, "input_ids": ids[:b] + block + ids[t + 1:], "pixel_values": torch.randn(3, 8, 16),
                     "image_sizes": torch.tensor([8, 16])})
    res = patch_gate(hm, list(zip(square, wide)), layers=[1], batch_size=2)
    assert int(res.summary.loc[1, "n_pairs"]) == 2 and 0 <= float(res.summary.loc[1, "overlap"]) <= 1 + 1e-6


# -- the semantic step is skipped (not exit 2) with fewer than 31 labelled examples ------------------------
def test_flow_command_skips_semantic_under_31_labels(tmp_path):
    from typer.testing import CliRunner

    from interp.cli import app

    r = CliRunner().invoke(app, ["gate", "flow", "--model", "toy:gated", "--data", "toy", "--n", "20", "--no-gap",
                                 "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "semantic step skipped" in " ".join(r.output.split()) and "31" in r.output
    assert (tmp_path / "flow_shares.csv").exists() and not (tmp_path / "semantic_overlap.csv").exists()
