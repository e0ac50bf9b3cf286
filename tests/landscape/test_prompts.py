"""Prompt builder against hand-written prompts; letter tokens; letter-logit accuracy."""
import pytest
import torch

from interp.landscape.data import MCQ
from interp.landscape.errors import PromptError
from interp.landscape.prompts import (FewShotPrompter, build_prompt, format_subject, letter_accuracy,
                                      letter_token_ids, predict_letters)

Q = MCQ("  What is the powerhouse of the cell? ", ("nucleus", "mitochondrion ", "ribosome", "vacuole"), 1,
        "high_school_biology")
S1 = MCQ("Which molecule stores genes?", ("DNA", "ATP", "lipid", "water"), 0, "high_school_biology")
S2 = MCQ("Where is chlorophyll?", ("root", "chloroplast", "bone", "blood"), 1, "high_school_biology")

ZERO = ("The following are multiple choice questions (with answers) about high school biology.\n\n"
        "What is the powerhouse of the cell?\n"
        "A. nucleus\nB. mitochondrion\nC. ribosome\nD. vacuole\n"
        "Answer:")
TWO = ("The following are multiple choice questions (with answers) about high school biology.\n\n"
       "Which molecule stores genes?\nA. DNA\nB. ATP\nC. lipid\nD. water\nAnswer: A\n\n"
       "Where is chlorophyll?\nA. root\nB. chloroplast\nC. bone\nD. blood\nAnswer: B\n\n"
       "What is the powerhouse of the cell?\nA. nucleus\nB. mitochondrion\nC. ribosome\nD. vacuole\nAnswer:")


def test_prompts_match_hand_written_ones():
    assert format_subject("high_school_biology") == " high school biology"
    assert build_prompt(Q) == ZERO
    assert build_prompt(Q, [S1, S2]) == TWO
    dev = [S1, S2, MCQ("x", ("a", "b", "c", "d"), 0, "astronomy")]
    assert FewShotPrompter(dev, 0).prompts([Q]) == [ZERO]
    assert FewShotPrompter(dev, 2).prompts([Q]) == [TWO]  # the first k dev examples of the subject, in order
    assert FewShotPrompter(dev, 1).prompt(Q) == TWO.replace(
        "Where is chlorophyll?\nA. root\nB. chloroplast\nC. bone\nD. blood\nAnswer: B\n\n", "")


def test_subject_with_fewer_dev_examples_than_shots():
    p = FewShotPrompter([S1, S2], 5)
    with pytest.raises(PromptError, match="has 2 dev example.*5-shot"):
        p.prompts([Q])
    with pytest.raises(PromptError, match="0 dev"):
        FewShotPrompter([S1], 1).check(["astronomy"])
    with pytest.raises(PromptError):
        FewShotPrompter([S1], -1)


def test_letter_token_ids(tokenizer):
    ids = letter_token_ids(tokenizer)
    assert ids == tokenizer.convert_tokens_to_ids(["A", "B", "C", "D"])
    assert letter_token_ids(tokenizer, ["A", "B"]) == ids[:2]


def test_letter_mapping_errors(tokenizer):
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    with pytest.raises(PromptError, match="no tokenizer"):
        letter_token_ids(None)
    with pytest.raises(PromptError, match="unknown token"):  # 'Z' is not in the vocabulary
        letter_token_ids(tokenizer, ["A", "Z"])
    # a character-level tokenizer: " A" is two tokens (" ", "A") -> no single-token letters
    vocab = {c: i for i, c in enumerate(["<unk>", " ", ":", "A", "B", "C", "D", "n", "s", "w", "e", "r"])}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    chars = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>")
    with pytest.raises(PromptError, match="single token"):
        letter_token_ids(chars)


def test_letter_accuracy_hand_computed():
    logits = torch.tensor([[1.0, 2.0, 0.0, 0.0],   # -> B
                           [3.0, 1.0, 1.0, 1.0],   # -> A
                           [0.0, 0.0, 0.0, 5.0],   # -> D
                           [2.0, 2.0, 1.0, 0.0]])  # tie -> first letter, A
    assert predict_letters(logits).tolist() == [1, 0, 3, 0]
    assert letter_accuracy(logits, [1, 0, 2, 1]) == pytest.approx(2 / 4)
    assert letter_accuracy(logits, [1, 0, 3, 0]) == 1.0
    with pytest.raises(PromptError, match="one row per answer"):
        letter_accuracy(logits, [0, 1])
