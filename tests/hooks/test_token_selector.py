"""token(...) selectors: a row without the token is an error naming it (or skipped on request),
a word matches its single-token forms, and a string that is no token is refused up front."""
from __future__ import annotations

import pytest
import torch

import hooks
from hooks import Cache, token
from hooks import positions as P
from hooks.errors import PositionError, SpecError

from .tiny_models import build


def _tokenizer():
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = ["<pad>", "<unk>", "the", "cat", "sat", "dog", "ran", "a"]
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", unk_token="<unk>")


@pytest.fixture(scope="module")
def hm():
    return hooks.wrap(build("gpt2"), _tokenizer())


def test_token_selects_its_positions_in_every_row(hm):
    res = hm.run(["the cat sat", "a cat ran the cat"], [Cache("resid_post.0", positions=token("cat"))])
    m = res.cache.masks["resid_post.0"]
    assert m[0].nonzero().flatten().tolist() == [1] and m[1].nonzero().flatten().tolist() == [1, 4]


def test_row_without_the_token_is_an_error_naming_it(hm):
    with pytest.raises(PositionError, match=r"token\('cat'\) does not occur in batch row\(s\) \[1\].*missing='skip'"):
        hm.run(["the cat sat", "the dog ran"], [Cache("resid_post.0", positions=token("cat"))])


def test_missing_skip_selects_nothing_in_that_row(hm):
    res = hm.run(["the cat sat", "the dog ran"], [Cache("resid_post.0", positions=token("cat", missing="skip"))])
    m = res.cache.masks["resid_post.0"]
    assert m[0].sum() == 1 and m[1].sum() == 0
    assert res.cache["resid_post.0"].shape[0] == 1


def test_unknown_word_is_refused_before_anything_runs(hm):
    with pytest.raises(SpecError, match="not a single token"):
        hm.run(["the cat sat"], [Cache("resid_post.0", positions=token("zebra"))])
    with pytest.raises(SpecError, match="missing="):
        token("cat", missing="drop")


def test_json_round_trip_keeps_missing():
    assert P.normalize({"token": "cat", "missing": "skip"}) == token("cat", "skip")
    assert token("cat", "skip").to_json() == {"token": "cat", "missing": "skip"}
    assert token(5).to_json() == {"token": 5}


def test_token_ids_cover_the_space_prefixed_form():
    class Tok:
        unk_token_id, unk_token = 0, "<unk>"
        vocab = {"dog": 7, "Ġdog": 9}

        def convert_tokens_to_ids(self, t):
            return self.vocab.get(t, 0)

        def encode(self, s, add_special_tokens=False):
            return [self.vocab.get(s.replace(" ", "Ġ"), 0)]

    assert P._token_ids("dog", Tok()) == {7, 9}
    assert P._token_ids(42, None) == {42}
    with pytest.raises(SpecError, match="needs a tokenizer"):
        P._token_ids("dog", None)


def test_ids_only_batch_matches_by_id(hm):
    ids = torch.tensor([[2, 3, 4], [3, 3, 2]])
    m = hm.run(ids, [Cache("embed", positions=token(3))]).cache.masks["embed"]
    assert m.sum(1).tolist() == [1, 2]
