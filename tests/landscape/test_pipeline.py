"""End to end on a tiny Llama and synthetic MMLU-format files: every condition, caches, CLI."""
import json

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import hooks
from interp.landscape import LandscapeConfig, run_landscape
from interp.landscape.analysis import METRICS
from interp.landscape.errors import DataError, LandscapeInputError, PromptError
from interp.landscape.extract import load_representations
from interp.landscape.pipeline import parse_shots
from interp.landscape.prompts import FewShotPrompter, letter_accuracy

CFG = LandscapeConfig(k=8, maxk=40, device="cpu")
SFT = {"r": 8, "lr": 3e-3, "epochs": 2, "batch_size": 8}


@pytest.fixture(scope="module")
def run(model_dir, data_dir, tmp_path_factory):
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        hm = hooks.load(model_dir)
        before = {k: v.clone() for k, v in hm.model.state_dict().items()}
        out = tmp_path_factory.mktemp("run")
        logs = []
        res = run_landscape(hm, data_dir, shots="0,1,2", sft=SFT, out=out, batch_size=16, analysis=CFG,
                            log=logs.append)
    finally:
        torch.set_num_threads(n)
    return hm, before, res, out, logs


def test_every_condition_runs_end_to_end(run, splits):
    hm, _, res, out, logs = run
    conds = ["0shot", "1shot", "2shot", "sft"]
    n_layers = hm.n_layers
    assert list(dict.fromkeys(res.table["condition"])) == conds
    # the paper's points: labels 1..L-1 (block input norms), L (final norm), L+1 (logits)
    assert sorted(set(res.table["layer"])) == list(range(1, n_layers + 2))
    assert len(res.table) == len(conds) * (n_layers + 1) * len(METRICS)
    assert res.table["value"].notna().all()
    on_disk = pd.read_csv(out / "landscape.csv")
    assert on_disk.shape == res.table.shape and list(on_disk.columns) == ["condition", "layer", "metric", "value"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_questions"] == len(splits["test"]) and summary["n_train"] == 39
    assert set(summary["accuracy"]) == set(conds) and set(summary["accuracy_macro"]) == set(conds)
    assert summary["site"] == "input_norm" and summary["layer_labels"][str(n_layers + 1)] == "logits"
    for name in ("ari_subjects", "ari_letters", "overlap_subjects", "overlap_letters", "id", "n_clusters",
                 "core_fraction"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000
    assert (out / "sft" / "adapter" / "adapter_model.safetensors").exists()
    hist = json.loads((out / "sft" / "adapter" / "train_history.json").read_text())
    assert hist["loss_after"] < hist["loss_before"]
    assert any("answer loss" in m for m in logs)


def test_cached_representations_are_the_hooked_last_token_states(run, splits):
    hm, _, res, out, _ = run
    r = load_representations(out / "reps" / "2shot.safetensors")
    L = hm.n_layers
    assert sorted(r.layers) == list(range(1, L + 2)) and r.n == len(splits["test"])
    prompts = FewShotPrompter(splits["dev"], 2).prompts(splits["test"][:3])     # seeded per-question shuffle
    norms = [f"model.layers.{i}.input_layernorm" for i in range(1, L)]
    direct = hm.run(prompts, [hooks.Cache(norms + ["final"], positions="last")])  # right padding, no sorting
    for i in range(1, L):
        assert torch.allclose(r.layers[i][:3], direct.cache[f"model.layers.{i}.input_layernorm"], atol=1e-5)
    assert torch.allclose(r.layers[L][:3], direct.cache["final"], atol=1e-5)
    last_pos = direct.inputs["attention_mask"].sum(1) - 1
    assert torch.allclose(r.layers[L + 1][:3], direct.logits[torch.arange(3), last_pos], atol=1e-5)
    # letter logits (extraction asks for the last position only, under left padding) vs the full logits
    ids = json.loads((run[3] / "summary.json").read_text())["letter_ids"]
    last = direct.inputs["attention_mask"].sum(1) - 1
    full = direct.logits[torch.arange(3), last][:, ids]
    assert direct.logits.shape[1] > 1 and torch.allclose(r.letter_logits[:3], full, atol=1e-5)
    answers = [q.answer for q in splits["test"]]
    assert res.accuracy["2shot"] == pytest.approx(letter_accuracy(r.letter_logits, answers))


def test_lora_is_removed_afterwards_and_a_rerun_reuses_the_caches(run, data_dir):
    hm, before, res, out, _ = run
    assert not any("lora" in n for n, _ in hm.model.named_modules())
    after = hm.model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    logs = []
    again = run_landscape(hm, data_dir, shots="0,1,2", sft=SFT, out=out, batch_size=16, analysis=CFG,
                          log=logs.append)
    assert sum("reusing" in m for m in logs) == 8  # 4 representation files + 4 tables
    assert not any("training LoRA" in m for m in logs)
    pd.testing.assert_frame_equal(again.table, res.table)


def test_bad_inputs_fail_before_the_model_is_loaded(data_dir, tmp_path):
    missing_model = tmp_path / "no-model-here"
    with pytest.raises(PromptError, match="has 5 dev example.*6-shot"):
        run_landscape(missing_model, data_dir, shots=[0, 5, 6], out=tmp_path / "o")  # dev has 5 per subject
    with pytest.raises(DataError, match="does not exist"):
        run_landscape(missing_model, tmp_path / "none.jsonl", shots=[0], out=tmp_path / "o")
    with pytest.raises(LandscapeInputError, match="nothing to do"):
        run_landscape(missing_model, data_dir, shots=[], out=tmp_path / "o")
    assert parse_shots("5, 0,2,2") == [0, 2, 5]
    for bad in ("a,b", [-1], [1.5]):
        with pytest.raises(LandscapeInputError, match="non-negative integers"):
            parse_shots(bad)


def test_model_without_tokenizer(model_dir, data_dir, tmp_path):
    hm = hooks.wrap(hooks.load(model_dir).model, None)
    with pytest.raises(PromptError, match="no tokenizer"):
        run_landscape(hm, data_dir, shots=[0], out=tmp_path / "o")


def test_cli(model_dir, data_dir, tmp_path):
    from interp.cli import app

    out = tmp_path / "cli"
    r = CliRunner().invoke(app, ["landscape", "--model", str(model_dir), "--data", str(data_dir), "--shots", "0,1",
                                 "--out", str(out), "--k", "8", "--maxk", "40", "--batch-size", "16",
                                 "--geometry-device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "0-shot" in r.output and "1-shot" in r.output
    assert set(pd.read_csv(out / "landscape.csv")["condition"]) == {"0shot", "1shot"}
    r = CliRunner().invoke(app, ["landscape", "--model", str(model_dir), "--data", str(data_dir), "--shots", "9",
                                 "--out", str(out)])
    assert r.exit_code == 2 and "error" in r.output and "9-shot" in r.output
