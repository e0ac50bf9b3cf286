"""Each landscape default pinned to Doimo et al. 2024 as their code implements it
(diegodoimo/geometry_icl_finetuning), on hand-made cases."""
import math
import warnings

import numpy as np
import pytest
import torch

from interp.landscape.data import MCQ
from interp.landscape.prompts import HEADER, FewShotPrompter, build_prompt, macro_accuracy
from interp.landscape.sft import SFTConfig, lr_factor, train_lora, warmup_steps
from interp.landscape.synthetic import make_tiny_llama


def q(i, subject="astronomy", answer=0):
    return MCQ(question=f"question {i}?", choices=("a", "b", "c", "d"), answer=answer, subject=subject)


def test_shots_are_the_first_k_dev_examples_shuffled_per_question_by_one_seeded_stream():
    """utils/dataset_utils.py construct_prompt: indices = rng.permutation(k) for every question."""
    dev = [q(i) for i in range(5)]
    test = [q(100 + i) for i in range(4)]
    prompts = FewShotPrompter(dev, 3, seed=7).prompts(test)
    rng = np.random.default_rng(7)
    for p, t in zip(prompts, test):
        order = rng.permutation(3)
        expect = build_prompt(t, [dev[i] for i in order])
        assert p == expect
    assert "question 3?" not in "".join(prompts)                    # only the first k dev examples
    orders = {tuple(int(s) for s in __import__("re").findall(r"question (\d)\?", p)) for p in prompts}
    assert len(orders) > 1                                             # the order changes between questions
    plain = FewShotPrompter(dev, 3, shuffle=False).prompts(test)
    assert plain[0] == build_prompt(test[0], dev[:3])
    assert FewShotPrompter(dev, 3, seed=7).prompts(test) == prompts   # seeded


def test_sft_prompts_carry_no_subject_header_but_test_prompts_do():
    """construct_prompt_train: question + choices + 'Answer:' only."""
    r = q(0)
    assert build_prompt(r, header=False) == "question 0?\nA. a\nB. b\nC. c\nD. d\nAnswer:"
    assert FewShotPrompter(k=0).prompts([r])[0] == HEADER.format(subject=" astronomy") + build_prompt(r, header=False)


def test_sft_recipe_defaults_are_the_papers():
    """submit_finetune / finetune.py / utils/optimizer_utils.py."""
    c = SFTConfig()
    assert (c.r, c.lora_alpha, c.lora_dropout, c.lr, c.epochs, c.batch_size, c.weight_decay) == \
        (64, 16, 0.1, 1e-4, 1, 16, 0.0)
    assert c.max_grad_norm is None                       # --clip_grad_norm defaults to -1: off
    assert c.warmup_ratio == 0.05 and c.warmup_cap == 3 and c.min_lr_ratio == 0.01 and c.weight_subjects
    assert warmup_steps(c, 1000) == 3 and warmup_steps(c, 40) == 2      # min(int(0.05 * total), 3)


def test_lr_schedule_is_get_scheduler():
    """min(linear ramp 0.01 -> 1 over w steps, cosine 1 -> 0.01 over the rest), by hand."""
    T, w, m = 100, 3, 0.01
    assert lr_factor(0, T, w, m) == pytest.approx(0.01)
    assert lr_factor(1, T, w, m) == pytest.approx(0.01 + 0.99 / 3)
    assert lr_factor(3, T, w, m) == pytest.approx(1.0)
    mid = 3 + (T - 3) / 2
    assert lr_factor(int(mid), T, w, m) == pytest.approx(m + 0.5 * (1 - m) * (1 + math.cos((int(mid) - 3) / 97 * math.pi)))
    assert lr_factor(T, T, w, m) == pytest.approx(0.01)
    assert lr_factor(0, T, 0, m) == pytest.approx(1.0)             # no warm-up: start at the full rate


def test_training_uses_headerless_prompts_and_no_clipping(splits, tokenizer, monkeypatch):
    """Spy on the loop: prompts without header, no gradient clipping by default."""
    import interp.landscape.sft as sft

    seen = []
    real = sft._batch

    def spy(tok, prompts, device):
        seen.extend(prompts)
        return real(tok, prompts, device)

    def no_clip(*a, **k):
        raise AssertionError("gradient clipping is off by default (the paper's --clip_grad_norm -1)")

    monkeypatch.setattr(sft, "_batch", spy)
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", no_clip)
    model = make_tiny_llama(tokenizer, hidden_size=16, n_layers=1, seed=0)
    train = splits["dev"][:6]
    _, hist = train_lora(model, tokenizer, train, SFTConfig(r=2, batch_size=3, epochs=1))
    assert seen and not any(p.startswith("The following are") for p in seen)
    assert len(hist["lr"]) == 2 and hist["lr"][0] == pytest.approx(1e-4 * lr_factor(0, 2, 0, 0.01))   # no warm-up


def test_macro_accuracy_is_the_mean_of_per_subject_accuracies():
    logits = torch.tensor([[1.0, 0, 0, 0]] * 5)          # always predicts A
    answers = [0, 0, 0, 1, 0]                             # subject x: 3/4 right, subject y: 1/1
    subjects = ["x", "x", "x", "x", "y"]
    assert macro_accuracy(logits, answers, subjects) == pytest.approx((0.75 + 1.0) / 2)


def test_maxk_capped_at_n_minus_1_warns():
    from interp.landscape.analysis import LandscapeConfig, layer_landscape
    from interp.landscape.errors import LandscapeWarning

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 5))
    subj, lett = ["a", "b"] * 20, ["A", "B", "C", "D"] * 10
    with pytest.warns(LandscapeWarning, match="maxk=100 capped at N - 1 = 39"):
        m = layer_landscape(X, subj, lett, LandscapeConfig(k=4, maxk=100, device="cpu"))
    assert m["maxk_used"] == 39 and m["maxk_capped"] == 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error", LandscapeWarning)
        m = layer_landscape(X, subj, lett, LandscapeConfig(k=4, maxk=20, device="cpu"))
    assert m["maxk_used"] == 20 and m["maxk_capped"] == 0.0


def test_paper_sites_and_labels(tokenizer):
    """helpers_extract.get_target_layers + repr_analysis.py: labels 1..L-1 = input norms of
    blocks 1..L-1, L = final norm, L+1 = logits; resid_post.i is labelled i + 1."""
    import hooks
    from interp.landscape.sites import paper_sites

    hm = hooks.wrap(make_tiny_llama(tokenizer, hidden_size=16, n_layers=3, seed=0), tokenizer)
    assert paper_sites(hm) == {1: "model.layers.1.input_layernorm", 2: "model.layers.2.input_layernorm",
                               3: "final", 4: "logits"}
    assert paper_sites(hm, first=0)[0] == "model.layers.0.input_layernorm"
    assert paper_sites(hm, "resid_post") == {1: "resid_post.0", 2: "resid_post.1", 3: "resid_post.2"}
    assert paper_sites(hm, "resid_pre") == {1: "resid_pre.1", 2: "resid_pre.2"}
    # label i = the residual stream after i blocks, normalised: input norm of block i == RMSNorm(resid_post.(i-1))
    res = hm.run(["question 1?"], [hooks.Cache(["model.layers.1.input_layernorm", "resid_post.0"], positions="last")])
    norm = hm.model.model.layers[1].input_layernorm
    torch.testing.assert_close(res.cache["model.layers.1.input_layernorm"], norm(res.cache["resid_post.0"]))
