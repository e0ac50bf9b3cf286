"""PROSITE conversion, TM segments, composition, pseudo-perplexity and the rate test: known answers."""
import numpy as np
import pytest
import torch

from steering.protein.scoring import (PS00028, PatternError, compare_rates, composition, find_motif,
                                      prosite_to_regex, pseudo_perplexity, score_sequences, tm_segments)


def test_ps00028_matches_the_toy_worlds_regex_on_toy_proteins():
    from steering.protein.toy_world import find_ps00028, toy_records

    recs = toy_records(40, seed=3)
    rx = prosite_to_regex(PS00028)
    assert rx.pattern == "(?=(C(?:.){2,4}C(?:.){3}[LIVMFYWC](?:.){8}H(?:.){3,5}H))"
    for r in recs:
        assert find_motif(r.sequence, rx) == find_ps00028(r.sequence)
    assert sum(bool(find_motif(r.sequence, rx)) for r in recs) == sum(
        any(f.type == "ZN_FING" for f in r.features) for r in recs)


@pytest.mark.parametrize("pattern,seq,spans", [
    ("<M-x-K", "MAKMAK", [(0, 3)]),                     # N-terminal anchor: only the first
    ("K-x-[G>]", "AKAGKA", [(1, 4), (4, 6)]),           # [G>]: G or the C terminus
    ("A-{P}-A", "AAAPAA", [(0, 3)]),                    # none-of
    ("C-x(2)-C", "CAACAAC", [(0, 4), (3, 7)]),          # overlapping matches count
    ("H-x(3,5)-H>", "HAAAHAAAAAH", [(4, 11)]),          # C-terminal anchor (H at 0 is 4 short of the end)
    ("R-G-D.", "ARGDRGD", [(1, 4), (4, 7)]),            # trailing period
])
def test_prosite_syntax_known_answers(pattern, seq, spans):
    assert find_motif(seq, pattern) == spans


@pytest.mark.parametrize("bad", ["", "C-x(2,4", "C--C", "M-<K", "K>-A", "[G>]-A", "c-x"])
def test_bad_patterns_raise_one_clear_error(bad):
    with pytest.raises(PatternError):
        prosite_to_regex(bad)
    assert issubclass(PatternError, ValueError)


def test_tm_segments_and_composition():
    # 19 I (KD 4.5) between D runs (KD -3.5): a window holds at most 6 D for mean >= 1.6 -> starts 24..36
    assert tm_segments("D" * 30 + "I" * 19 + "D" * 30) == [(24, 55)]
    assert tm_segments("L" * 19 + "D" * 30 + "V" * 19) == [(0, 24), (43, 68)]     # L: <= 5 D, V: <= 6 D
    assert tm_segments("L" * 18) == [] and tm_segments("D" * 40) == []
    comp = composition(["AAC", "C"])
    assert comp["A"] == 0.5 and comp["C"] == 0.5 and abs(sum(comp.values()) - 1) < 1e-12


def test_compare_rates_matches_scipy():
    from scipy.stats import fisher_exact

    r = compare_rates(30, 100, 5, 100)
    assert r["p_value"] == pytest.approx(fisher_exact([[30, 70], [5, 95]], alternative="greater")[1], rel=1e-12)
    assert r["steered_rate"] == 0.3 and r["baseline_rate"] == 0.05 and r["p_value"] < r["p_two_sided"]
    assert compare_rates(5, 100, 5, 100)["p_value"] > 0.5
    with pytest.raises(ValueError):
        compare_rates(3, 2, 0, 1)


def test_pseudo_perplexity_equals_a_one_by_one_loop(tiny_model):
    from steering.protein.align import encode_sequences
    from steering.protein.alphabet import MASK_ID

    seqs = ["MKTAYIAKQRQISFVKSHFSRQ", "MCPECGKSFSQKSDLVKHQRTH", "MLLV"]
    got = pseudo_perplexity(tiny_model, seqs, batch_size=7)
    assert np.allclose(got, pseudo_perplexity(tiny_model, seqs, batch_size=1000), rtol=1e-6)
    for s, g in zip(seqs, got):
        enc = encode_sequences([s])
        nll = 0.0
        for i in range(len(s)):
            x = enc.input_ids.clone()
            x[0, i + 1] = MASK_ID
            with torch.no_grad():
                logits = tiny_model.model(input_ids=x, attention_mask=enc.attention_mask).logits
            lp = torch.log_softmax(logits[0, i + 1], -1)
            nll -= float(lp[enc.input_ids[0, i + 1]])
        assert g == pytest.approx(np.exp(nll / len(s)), rel=1e-5)
    summ = score_sequences(seqs, model=tiny_model)["summary"]
    assert summ["motif_count"] == 1 and summ["pppl_mean"] == pytest.approx(float(np.mean(got)), rel=1e-6)
