"""Task metrics with known answers, and the dataset loaders on tiny local files."""
from __future__ import annotations

import json

import numpy as np
import pytest

from steering.narrow_gate import metrics as M
from steering.narrow_gate.data import LazyImage, load_data
from steering.narrow_gate.errors import DatasetError, TaskError


def test_vqa_accuracy_known_answers():
    assert M.vqa_accuracy(["two"], [["2"] * 4 + ["3"] * 6]) == 1.0  # number words, >= 3 matches
    assert M.vqa_accuracy(["3"], [["2"] * 8 + ["3"] * 2]) == pytest.approx(0.6)  # official: 2 matches -> 0.6
    assert M.vqa_accuracy(["A dog."], [["dog"] * 10]) == 1.0  # articles and punctuation
    assert M.vqa_accuracy(["cat", "no"], [["cat"] * 10, ["yes"] * 10]) == 0.5
    assert M.normalize_answer("Don't know!") == "don't know"
    with pytest.raises(TaskError):
        M.vqa_accuracy(["a"], [["a"], ["b"]])


def test_cider_matches_pycocoevalcap_reference():
    pytest.importorskip("pycocoevalcap")
    refs = [["a cat sits on a mat", "the cat is on the mat"], ["a dog runs", "dog running in park"]]
    # coco-caption's own example scale: the same numbers as Cider().compute_score on pre-tokenised text
    from pycocoevalcap.cider.cider import Cider

    want, _ = Cider().compute_score({0: refs[0], 1: refs[1]}, {0: ["a cat on a mat"], 1: ["a dog runs"]})
    assert M.cider(["A cat, on a mat.", "a dog runs"], refs) == pytest.approx(want)
    assert M.cider(["a dog runs", "a cat on a mat"], refs) < want / 5  # swapped captions score low
    assert M.simple_tokenize("A man's hat, (blue).") == "a man 's hat blue"


def test_classification_accuracy():
    assert M.classification_accuracy(["cat", "Dog", "car"], ["cat", "dog", "ship"]) == pytest.approx(2 / 3)


def _png(path, seed=0):
    from PIL import Image

    Image.fromarray(np.random.RandomState(seed).randint(0, 255, (8, 8, 3), dtype=np.uint8)).save(path)


def test_image_folder_loader(tmp_path):
    for c, n in (("n001", 3), ("n002", 2)):
        (tmp_path / c).mkdir()
        for i in range(n):
            _png(tmp_path / c / f"{i}.png", i)
    (tmp_path / "n001" / "notes.txt").write_text("not an image")
    (tmp_path / "classnames.txt").write_text("n001 goldfish\nn002 great white shark\n")
    exs, task = load_data(tmp_path, n=4, seed=0)
    assert task == "classify" and len(exs) == 4
    assert all(e["candidates"] == ["goldfish", "great white shark"] for e in exs)
    assert {e["label_name"] for e in exs} <= {"goldfish", "great white shark"}
    assert isinstance(exs[0]["image"], LazyImage) and exs[0]["image"].load().size == (8, 8)
    again, _ = load_data(tmp_path, n=4, seed=0)
    assert [e["index"] for e in again] == [e["index"] for e in exs]  # seeded subsample


def test_vqa_and_caption_files(tmp_path):
    _png(tmp_path / "a.png")
    rows = [{"image": "a.png", "question": "What color?", "answers": [{"answer": "red"}] * 10}]
    (tmp_path / "vqa.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    exs, task = load_data(tmp_path / "vqa.jsonl")
    assert task == "vqa" and exs[0]["answers"] == ["red"] * 10 and exs[0]["image"].load().size == (8, 8)
    (tmp_path / "cap.json").write_text(json.dumps([{"filepath": "a.png", "sentences": ["a red square", "red"]}]))
    exs, task = load_data(tmp_path / "cap.json")
    assert task == "caption" and exs[0]["captions"] == ["a red square", "red"]


def test_hub_style_datasets_offline(tmp_path):
    """VQAv2 / COCO-Karpathy / Flickr30k column layouts through `datasets` (saved locally, no network)."""
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    im = Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8))
    vqa = datasets.Dataset.from_dict({"image": [im, im], "question": ["q1?", "q2?"],
                                      "answers": [[{"answer": "yes", "answer_id": 1}] * 10, [{"answer": "2"}] * 10],
                                      "multiple_choice_answer": ["yes", "2"]})
    vqa.save_to_disk(tmp_path / "vqa")
    exs, task = load_data(tmp_path / "vqa", n=1, seed=3)
    assert task == "vqa" and len(exs) == 1 and exs[0]["image"].load().size == (8, 8)
    flickr = datasets.Dataset.from_dict({"image": [im] * 3, "caption": [["c1", "c2"]] * 3, "split": ["train", "test", "test"]})
    flickr.save_to_disk(tmp_path / "flickr")
    exs, task = load_data(tmp_path / "flickr")
    assert task == "caption" and exs[0]["captions"] == ["c1", "c2"]
    cls = datasets.Dataset.from_dict({"image": [im] * 2, "label": [0, 1]},
                                     features=datasets.Features({"image": datasets.Image(),
                                                                 "label": datasets.ClassLabel(names=["tench", "goldfish"])}))
    cls.save_to_disk(tmp_path / "cls")
    exs, task = load_data(tmp_path / "cls")
    assert task == "classify" and [e["label_name"] for e in exs] == ["tench", "goldfish"]


def test_datasets_without_images_or_fields_are_one_clear_error(tmp_path):
    (tmp_path / "text.jsonl").write_text('{"question": "q?", "answers": ["a"]}\n')
    with pytest.raises(DatasetError, match="no image column"):
        load_data(tmp_path / "text.jsonl")
    (tmp_path / "noq.jsonl").write_text('{"image": "x.png", "question": "", "answers": ["a"]}\n')
    with pytest.raises(DatasetError, match="lacks a question"):
        load_data(tmp_path / "noq.jsonl", task="vqa")
    with pytest.raises(DatasetError, match="Unknown dataset"):
        load_data("no-such-dataset")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no class sub-folders"):
        load_data(tmp_path / "empty")
