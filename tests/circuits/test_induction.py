"""Known answers on the induction LM that `interp demo-lm` trains (seed 0, the demo's settings):
attention scores computed from transformers' eager attention weights find a previous-token head
in layer 0 and induction heads in layer 1, the head-patching sweep finds the same heads, and
attribution patching ranks the same top head per layer. An untrained model of the same
architecture is the control: its scores sit at chance, so these tests can fail."""
import pytest
import torch

import hooks
from interp.head_scores import (attention_patterns, chance_levels, induction_scores, leading_heads,
                                previous_token_scores, score_heads)
from interp.patching import activation_patching, agreement, attribution_patching
from interp.toy_lm import INDUCTION_SYMBOLS, induction_pairs, make_tokenizer, toy_config

SYMBOLS = range(3, 3 + INDUCTION_SYMBOLS)  # token ids of s0..s63


@pytest.fixture(scope="module")
def scores(demo_lm):
    return score_heads(demo_lm, SYMBOLS, bos=1)


@pytest.fixture(scope="module")
def sweeps(demo_lm):
    rows = induction_pairs(32)
    kw = dict(sites="head_out", by="layer,head", answers=[r["answer"] for r in rows],
              distractors=[r["distractor"] for r in rows])
    hm = hooks.load(demo_lm)
    clean, corrupt = [r["clean"] for r in rows], [r["corrupt"] for r in rows]
    return activation_patching(hm, clean, corrupt, **kw), attribution_patching(hm, clean, corrupt, **kw)


def _table(df, col):
    return {(int(r.layer), int(r.head)): float(getattr(r, col)) for r in df.itertuples()}


def test_induction_pairs_put_the_answer_after_the_earlier_occurrence():
    for corrupt in ("swap", "resample"):
        for r in induction_pairs(20, seed=4, corrupt=corrupt):
            c, x = r["clean"].split(), r["corrupt"].split()
            assert len(c) == len(x) and c[-1] == x[-1] and c[r["src"]] == r["answer"] != r["distractor"]
            assert [i for i, t in enumerate(c[:-1]) if t == c[-1]] == [r["src"] - 1]  # one earlier occurrence
            assert x[r["src_corrupt"]] == r["distractor"]
            before = [i for i, t in enumerate(x[:-1]) if t == x[-1]]
            if corrupt == "swap":  # the earlier occurrence moved: now followed by the distractor
                assert before == [r["src_corrupt"] - 1]
            else:  # resampled: only the copy in the tail, no earlier occurrence to follow, no answer
                assert all(i > r["src"] for i in before) and r["answer"] not in x
    with pytest.raises(ValueError, match="'swap' or 'resample'"):
        induction_pairs(1, corrupt="shuffle")


def test_scores_on_planted_patterns():
    """Analytic cases: a head that always looks one back scores 1 as previous-token head, one that
    looks at the token after the earlier occurrence scores 1 as induction head, uniform causal
    attention scores exactly the chance level."""
    n, T = 5, 11  # [bos] r r
    prev = torch.zeros(T, T)
    prev[0, 0] = 1
    prev[torch.arange(1, T), torch.arange(T - 1)] = 1
    ind = prev.clone()
    ind[torch.arange(1 + n, T)] = 0
    ind[torch.arange(1 + n, T), torch.arange(1 + n, T) - n + 1] = 1
    uniform = torch.tril(torch.ones(T, T)) / torch.arange(1, T + 1)[:, None]
    pats = [torch.stack([prev, ind, uniform])[None].expand(3, -1, -1, -1)]  # 1 layer, 3 heads, batch 3
    p, i = previous_token_scores(pats)[0], induction_scores(pats, n)[0]
    chance = chance_levels(n)
    # the induction head looks one back on rows 1..n (the first copy): n of the T-1 rows
    assert p.tolist() == pytest.approx([1.0, n / (T - 1), chance["prev_token"]])
    assert i.tolist() == pytest.approx([0.0, 1.0, chance["induction"]])
    with pytest.raises(ValueError, match="Patterns cover 11 positions"):
        induction_scores(pats, 4)


def test_scores_equal_transformer_lens_head_detector_up_to_its_row_count(demo_lm):
    """Parity with TransformerLens ``head_detector`` ("mul" measure: pattern mass on the detection
    stripe over all T rows) on a probe with distinct tokens, where its stripes are exactly ours."""
    from transformer_lens.head_detector import (compute_head_attention_similarity_score,
                                                get_induction_head_detection_pattern,
                                                get_previous_token_head_detection_pattern)

    n = 7
    g = torch.Generator().manual_seed(3)
    r = torch.stack([torch.randperm(INDUCTION_SYMBOLS, generator=g)[:n] + 3 for _ in range(4)])
    ids = torch.cat([torch.ones(4, 1, dtype=torch.long), r, r], 1)
    pats = attention_patterns(demo_lm, ids)
    T = ids.shape[1]
    ours = {"prev": previous_token_scores(pats) * (T - 1) / T, "ind": induction_scores(pats, n) * n / T}
    for L, a in enumerate(pats):
        for h in range(a.shape[1]):
            for key, det in [("prev", get_previous_token_head_detection_pattern),
                             ("ind", get_induction_head_detection_pattern)]:
                tl = [compute_head_attention_similarity_score(a[b, h], detection_pattern=det(ids[b : b + 1]),
                                                              exclude_bos=False, exclude_current_token=False,
                                                              error_measure="mul") for b in range(4)]
                assert ours[key][L, h].item() == pytest.approx(sum(tl) / 4, abs=1e-5), (key, L, h)


def test_attention_scores_find_a_previous_token_head_and_induction_heads(scores, demo_lm):
    from_hooked = score_heads(hooks.load(demo_lm), SYMBOLS, bos=1)  # a wrapped model: the same weights
    assert from_hooked[["prev_token", "induction"]].to_numpy() == pytest.approx(
        scores[["prev_token", "induction"]].to_numpy(), abs=1e-6)
    chance_prev, chance_ind = scores.attrs["chance_prev_token"], scores.attrs["chance_induction"]
    assert chance_ind == pytest.approx(chance_levels(10)["induction"]) and 0.05 < chance_ind < 0.07
    l0, l1 = scores[scores.layer == 0], scores[scores.layer == 1]
    assert l0.prev_token.max() > max(0.5, 4 * chance_prev)  # a previous-token head in layer 0
    assert l1.induction.max() > max(0.5, 8 * chance_ind)  # induction heads in layer 1
    assert l0.induction.max() < 2 * chance_ind  # layer 0 cannot do induction (no earlier layer to compose with)
    assert l1.prev_token.max() < l0.prev_token.max() / 2


def test_an_untrained_model_has_neither_head():
    """The control: same architecture, random weights, attention near uniform, scores near chance."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(toy_config(len(make_tokenizer(INDUCTION_SYMBOLS)))).eval()
    df = score_heads(model, SYMBOLS, bos=1)
    assert df.prev_token.max() < 2 * df.attrs["chance_prev_token"]
    assert df.induction.max() < 2 * df.attrs["chance_induction"]


def test_head_sweep_finds_the_heads_the_attention_scores_name(sweeps, scores):
    act, _ = sweeps
    gap = act.attrs["metric_clean"] - act.attrs["metric_corrupt"]
    assert act.attrs["metric_clean"] > 2 > -2 > act.attrs["metric_corrupt"]  # it copies; the corrupt answer flips
    eff, prev = _table(act, "effect"), _table(scores, "prev_token")
    # layer 0: the head patching needs most is the top previous-token head (K-composition: it
    # tells the induction head where the answer is), and it restores most of the gap on its own
    top0 = max(range(4), key=lambda h: eff[0, h])
    assert top0 == max(range(4), key=lambda h: prev[0, h]) and eff[0, top0] > 0.5 * gap
    # each layer: the heads that matter (effect > 10% of the clean-corrupt gap) are the heads that
    # lead that layer's attention score (above half the layer's best); layer 1 has several
    # induction heads with near-equal scores (redundant copies), so this is a set, not an arg-max
    for L, col in [(0, "prev_token"), (1, "induction")]:
        matters = {h for h in range(4) if eff[L, h] > 0.1 * gap}
        assert matters == leading_heads(scores, col, L), (L, matters)
    assert max(range(4), key=lambda h: eff[1, h]) in leading_heads(scores, "induction", 1)


def test_attribution_patching_ranks_the_same_top_heads(sweeps):
    act, atp = sweeps
    a, b = _table(act, "effect"), _table(atp, "effect")
    for L in (0, 1):
        assert max(range(4), key=lambda h: a[L, h]) == max(range(4), key=lambda h: b[L, h]), L
    in_l1 = agreement(act[act.layer == 1], atp[atp.layer == 1], k=1)
    assert in_l1["spearman"] >= 0.8 and in_l1["top_k_overlap"] == 1.0
    assert agreement(act, atp, k=1)["spearman"] > 0.5


def test_demo_lm_writes_pairs_and_specs_and_its_ablation_moves_the_answer(demo_lm, tmp_path, capsys):
    """`interp demo-lm` on the already-trained model (it reuses OUT/model): the pairs it writes feed
    `interp run`/`interp sweep`; zero-ablating layer 1's attention (the induction heads) erases
    the logit difference, the tiny layer-0 MLP does not matter."""
    import json
    import shutil

    from interp.demo import SPECS, run_demo

    shutil.copytree(demo_lm, tmp_path / "model")
    summary = run_demo(tmp_path)
    said = [ln for ln in capsys.readouterr().out.splitlines() if "reusing" in ln]
    assert said == [f"reusing the toy induction model in {tmp_path / 'model'}: an earlier run trained it "
                    f"(delete {tmp_path / 'model'} to retrain)"]  # one line: what is reused, from where
    rows = [json.loads(line) for line in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    assert len(rows) == summary["examples"] == 64 and set(rows[0]) == {"clean", "corrupt", "answer", "distractor"}
    assert all((tmp_path / f"{name}.yaml").exists() for name in SPECS)
    ld = {k: v["metrics"]["logit_diff"] for k, v in summary["results"].items()}
    attn1 = ld["ablate_attn_out_1"]
    assert attn1["clean"] > 5 and attn1["delta"] < -0.8 * attn1["clean"]
    assert abs(ld["ablate_mlp_out_0"]["delta"]) < 0.1 * ld["ablate_mlp_out_0"]["clean"]
    assert "logit diff clean" in (tmp_path / "report.md").read_text()
