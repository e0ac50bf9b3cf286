"""One text-column rule: ``saes.data`` uses ``hooks.data.pick_text_column`` (with its own error
class and the token-id columns of pre-tokenised data)."""
from __future__ import annotations

import json

import pytest

from hooks.data import load_examples, pick_text_column
from hooks.errors import HookError
from saes.data import iter_examples
from saes.errors import DataError


@pytest.mark.parametrize("columns", [["id", "sequence"], ["prompt", "text"], ["seq", "label"], ["text", "input_ids"]])
def test_saes_and_hooks_pick_the_same_column(tmp_path, columns):
    rows = [{c: f"{c}{i}" for c in columns} for i in range(3)]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert list(iter_examples(path)) == load_examples(path) == [r[pick_text_column(columns)] for r in rows]


def test_token_id_columns_are_a_saes_extension():
    assert pick_text_column(["input_ids"], keys=("text", "input_ids")) == "input_ids"
    with pytest.raises(HookError, match="No text column found"):
        pick_text_column(["input_ids"])


def test_saes_errors_are_data_errors_naming_the_columns(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": "a"}) + "\n")
    with pytest.raises(DataError, match=r"No text column found .*--text-key.*Columns: \['question', 'answer'\]"):
        list(iter_examples(path))
    with pytest.raises(DataError, match=r"Column 'body' not found; available: \['question', 'answer'\]\. Pass text_key"):
        list(iter_examples(path, text_key="body"))
    assert list(iter_examples(path, text_key="answer")) == ["a"]
    with pytest.raises(HookError, match=r"Column 'body' not found; available: \['question', 'answer'\]"):
        load_examples(path, text_key="body")
