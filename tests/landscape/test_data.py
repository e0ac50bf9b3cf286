"""MMLU-format loading (local files, HF id plumbing), validation, per-subject caps, SFT split."""
import json

import numpy as np
import pandas as pd
import pytest

from interp.landscape.data import (MCQ, cap_per_subject, load_split, records_from_rows, sft_training_records)
from interp.landscape.errors import DataError, LandscapeInputError

ROWS = [
    {"question": "Which planet is red?", "choices": ["Venus", "Mars", "Earth", "Moon"], "answer": 1,
     "subject": "astronomy"},
    {"question": "What carries oxygen?", "choices": ["plasma", "platelets", "haemoglobin", "bile"], "answer": "C",
     "subject": "biology"},
]
EXPECTED = [MCQ("Which planet is red?", ("Venus", "Mars", "Earth", "Moon"), 1, "astronomy"),
            MCQ("What carries oxygen?", ("plasma", "platelets", "haemoglobin", "bile"), 2, "biology")]


def test_every_local_format_gives_the_same_records(tmp_path):
    (tmp_path / "jl").mkdir()
    (tmp_path / "jl" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    (tmp_path / "pq").mkdir()
    pd.DataFrame([dict(r, answer=e.answer) for r, e in zip(ROWS, EXPECTED)]).to_parquet(tmp_path / "pq" / "test.parquet")
    (tmp_path / "cs").mkdir()  # CSV with one column per letter and letter answers (original MMLU layout)
    pd.DataFrame([{"question": r["question"], **dict(zip("ABCD", r["choices"])), "answer": "ABCD"[e.answer],
                   "subject": r["subject"]} for r, e in zip(ROWS, EXPECTED)]).to_csv(tmp_path / "cs" / "test.csv",
                                                                                     index=False)
    one = tmp_path / "all.json"
    one.write_text(json.dumps([dict(r, split="test") for r in ROWS] + [dict(ROWS[0], split="dev")]))
    for src in (tmp_path / "jl", tmp_path / "pq", tmp_path / "cs", one):
        assert load_split(src, "test") == EXPECTED, src
    assert load_split(one, "dev") == EXPECTED[:1]


def test_hf_dataset_id_goes_through_datasets(monkeypatch):
    import datasets

    calls = []

    def fake(name, config, split):
        calls.append((name, config, split))
        return ROWS

    monkeypatch.setattr(datasets, "load_dataset", fake)
    assert load_split("cais/mmlu", "dev") == EXPECTED
    assert load_split("cais/mmlu:astronomy", "test") == EXPECTED
    assert calls == [("cais/mmlu", "all", "dev"), ("cais/mmlu", "astronomy", "test")]


def test_hf_dataset_unavailable_is_one_clear_error(monkeypatch):
    import datasets

    def offline(*a, **k):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match="offline from the HF cache"):
        load_split("someone/mcq-set", "test")


@pytest.mark.parametrize("answer", [4, "E", -1, "x"])
def test_answer_outside_the_choices(answer):
    with pytest.raises(DataError, match="answer") as e:
        records_from_rows([dict(ROWS[0], answer=answer)])
    assert "row 0" in str(e.value) and isinstance(e.value, ValueError)


@pytest.mark.parametrize("row, msg", [
    ({k: v for k, v in ROWS[0].items() if k != "subject"}, "subject"),
    ({k: v for k, v in ROWS[0].items() if k != "choices"}, "choices"),
    ({k: v for k, v in ROWS[0].items() if k != "answer"}, "answer"),
    (dict(ROWS[0], choices="Venus, Mars"), "JSON list"),
])
def test_malformed_rows(row, msg):
    with pytest.raises(DataError, match=msg):
        records_from_rows([row])


def test_mixed_numbers_of_choices_and_missing_files(tmp_path):
    with pytest.raises(DataError, match="different numbers of choices"):
        records_from_rows([ROWS[0], dict(ROWS[1], choices=["a", "b", "c"], answer=0)])
    with pytest.raises(DataError, match="no dev"):
        load_split(tmp_path, "dev")
    with pytest.raises(DataError, match="does not exist"):
        load_split(tmp_path / "missing.jsonl", "test")
    assert issubclass(DataError, LandscapeInputError)


def test_cap_per_subject_is_seeded_and_keeps_order():
    recs = [MCQ(f"q{s}{i}", ("a", "b"), 0, s) for s in "xyz" for i in range(10 if s != "z" else 3)]
    a, b = cap_per_subject(recs, 4, seed=1), cap_per_subject(recs, 4, seed=1)
    assert a == b and len(a) == 4 + 4 + 3
    assert [recs.index(r) for r in a] == sorted(recs.index(r) for r in a)
    assert cap_per_subject(recs, 4, seed=2) != a
    assert cap_per_subject(recs, None) == recs
    with pytest.raises(DataError):
        cap_per_subject(recs, 0)


def test_sft_training_set_is_dev_plus_validation_with_subject_weights(splits):
    """Paper (utils/dataset_utils.py): all of dev+validation, unbalanced; loss weights
    N / (n_subjects * count) per example; per_subject caps each subject at min(cap, count)."""
    from interp.landscape.data import subject_weights

    dev, val = splits["dev"], splits["validation"]
    train = sft_training_records(dev, val, seed=0)
    assert len(train) == len(dev) + len(val)
    assert sorted(map(repr, train)) == sorted(map(repr, dev + val))
    small = sft_training_records(dev, val[:-2], seed=0)          # one subject now has 2 fewer: kept unbalanced
    counts = pd.Series([r.subject for r in small]).value_counts()
    assert len(small) == len(dev) + len(val) - 2 and counts.max() - counts.min() == 2
    w = np.asarray(subject_weights(small))
    n_subj = len(counts)
    for s_, c in counts.items():
        ws = w[[r.subject == s_ for r in small]]
        assert np.allclose(ws, len(small) / (n_subj * c))          # hand-made: every subject totals N / n_subjects
        assert ws.sum() == pytest.approx(len(small) / n_subj)
    assert w.mean() == pytest.approx(1.0)
    capped = sft_training_records(dev, val, per_subject=7, seed=3)
    assert set(pd.Series([r.subject for r in capped]).value_counts()) == {7}
    assert capped == sft_training_records(dev, val, per_subject=7, seed=3)
    assert len(sft_training_records(dev, val, per_subject=1000)) == len(dev) + len(val)   # min(cap, count)
    with pytest.raises(DataError, match="per_subject must be"):
        sft_training_records(dev, val, per_subject=0)
    with pytest.raises(DataError, match="no dev/validation examples"):
        sft_training_records(dev, val, subjects=["astronomy", "law"])
