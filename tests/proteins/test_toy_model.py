"""The toy ESM-2 model: shipped weights load and know the planted features; training is seeded."""
import json

import pytest
import torch
from typer.testing import CliRunner

from steering.protein.alphabet import ESM_VOCAB, MASK_ID, background_probs
from steering.protein.toy_model import DEFAULT_DIR, LOG_NAME, TrainConfig, evaluate_mlm, load_toy_model, mask_batch
from steering.protein.train_loop import train_toy_model
from steering.protein.toy_world import toy_records

TINY = dict(layers=1, d_model=16, heads=2, ffn=32, batch_size=4, n_train=40, n_eval=16, eval_every=0,
            log_every=1, warmup=2, threads=1)


@pytest.fixture(scope="module")
def shipped():
    if not (DEFAULT_DIR / "model.safetensors").exists():
        pytest.skip("no shipped toy protein model (run `interp toy train-protein-model`)")
    return load_toy_model()


def test_shipped_model_is_a_small_esm2_with_the_esm_vocabulary(shipped):
    cfg = shipped.model.config
    assert cfg.model_type == "esm" and cfg.position_embedding_type == "rotary" and cfg.token_dropout is False
    assert cfg.vocab_size == 33 and cfg.mask_token_id == MASK_ID and shipped.n_layers >= 3
    assert shipped.tokenizer.convert_ids_to_tokens(list(range(33))) == list(ESM_VOCAB)
    assert (DEFAULT_DIR / "model.safetensors").stat().st_size < 6e6
    log = json.loads((DEFAULT_DIR / LOG_NAME).read_text())
    assert log["steps"] == log["loss_curve"][-1]["step"] and log["train_seconds"] > 0
    assert log["loss_curve"][-1]["loss"] < log["loss_curve"][0]["loss"]


def test_shipped_model_predicts_the_planted_features(shipped):
    recs = toy_records(150, seed=2_000_001)           # a world it never saw
    ev = evaluate_mlm(shipped.model, recs, seed=5)
    reg = ev["regions"]
    assert ev["loss"] < ev["background_entropy"] - 0.2
    assert reg["ZN_FING_skeleton"]["accuracy"] > 0.7 and reg["COILED_d"]["accuracy"] > 0.6
    # the TM core is predicted at twice the accuracy of guessing the commonest background residue
    # (the model's own "background" accuracy may exceed chance: flanks, M1 and linkers are predictable)
    assert reg["TRANSMEM"]["accuracy"] > 2 * max(background_probs().values())
    assert reg["background"]["accuracy"] < 0.2        # background stays unpredictable


def test_mask_batch_masks_residues_only():
    g = torch.Generator().manual_seed(0)
    ids = torch.tensor([[0] + [5] * 40 + [2, 1, 1], [0] + [4] * 10 + [2] + [1] * 32])
    res = (ids > 3)
    x, labels = mask_batch(ids, res, 0.5, g)
    picked = labels != -100
    assert not (picked & ~res).any() and picked[1].any()
    assert 0.3 < picked[0].float().sum() / 40 < 0.7
    assert (x[picked] == MASK_ID).float().mean() > 0.6 and torch.equal(labels[picked], ids[picked])
    assert torch.equal(x[~picked], ids[~picked])


def test_training_is_seeded_and_logged(tmp_path):
    a = train_toy_model(tmp_path / "a", TrainConfig(steps=3, **TINY), log=lambda *_: None, probe=False)
    b = train_toy_model(tmp_path / "b", TrainConfig(steps=3, **TINY), log=lambda *_: None, probe=False)
    assert [p["loss"] for p in a["loss_curve"]] == [p["loss"] for p in b["loss_curve"]]
    from safetensors.torch import load_file

    wa, wb = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    log = json.loads((tmp_path / "a" / LOG_NAME).read_text())
    assert log["steps"] == 3 and len(log["loss_curve"]) == 3 and log["config"]["seed"] == 0
    assert set(log["final_eval"]["regions"]) >= {"ZN_FING_skeleton", "TRANSMEM", "COILED", "background"}
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted(
        ["config.json", "model.safetensors", "tokenizer_config.json", "vocab.txt", LOG_NAME])
    hm = load_toy_model(tmp_path / "a")
    assert hm.n_layers == 1 and "resid_post.0" in hm.sites


def test_minutes_budget_calibrates_the_step_count(tmp_path):
    tc = TrainConfig(steps=None, minutes=1e-5, **dict(TINY, log_every=100))
    res = train_toy_model(tmp_path / "m", tc, log=lambda *_: None, probe=False)
    assert res["steps"] == res["steps_planned"] == 51      # 50 timed steps, then the (exhausted) budget


def test_cli_train_writes_model_log_and_results(tmp_path):
    from interp.cli import app

    out = tmp_path / "m"
    args = ["toy", "train-protein-model", "--out", str(out), "--steps", "2", "--batch-size", "4", "--n-train", "30",
            "--n-eval", "24", "--layers", "2", "--d-model", "16", "--heads", "2", "--ffn", "32", "--eval-every", "0",
            "--warmup", "1", "--threads", "1", "--results-md", str(tmp_path / "R.md")]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    md = (tmp_path / "R.md").read_text()
    assert "Linear probe F1" in md and "| ZN_FING |" in md and "--steps 2 " in md
    assert "interp toy train-protein-model --device cuda" in r.output     # tells what to run on a GPU
    log = json.loads((out / LOG_NAME).read_text())
    assert set(log["probe"]["f1"]) == {"ZN_FING", "TRANSMEM", "COILED"}
    assert log["probe"]["sites"] == ["embed", "resid_post.0", "resid_post.1"]
    if not torch.cuda.is_available():
        r = CliRunner().invoke(app, ["toy", "train-protein-model", "--out", str(out), "--device", "cuda", "--steps", "1"])
        assert r.exit_code == 2 and "torch.cuda.is_available() is False" in " ".join(r.output.split())


def test_toy_group_is_shared_and_help_stays_light():
    import subprocess
    import sys

    import typer

    from steering.protein.cli import register

    app = typer.Typer()
    other = typer.Typer()
    other.command("train-gate-models")(lambda: None)
    app.add_typer(other, name="toy")
    register(app)
    assert [g.name for g in app.registered_groups].count("toy") == 1
    names = [c.name for c in other.registered_commands]
    assert names == ["train-gate-models", "train-protein-model"]
    code = ("import sys, steering.protein.cli, interp.cli; from typer.testing import CliRunner; "
            "r = CliRunner().invoke(interp.cli.app, ['proteins', '--help']); assert r.exit_code == 0, r.output; "
            "print(sorted(m for m in ('transformer_lens', 'nnsight') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
    code = ("import sys, steering.protein, steering.protein.cli; "
            "print(sorted(m for m in ('torch', 'transformers', 'datasets', 'Bio') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
