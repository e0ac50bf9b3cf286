"""`interp toy train-gate-models` is seeded and reproducible (a reduced-size retrain; the shipped
models are not retrained in CI)."""
from __future__ import annotations

import json

import torch
from typer.testing import CliRunner

from steering.narrow_gate.toy import load_toy_model
from steering.narrow_gate.toy.train import train_gate_model

SMALL = dict(steps=24, batch_size=16, hidden_size=16, layers=2, heads=2, lr=1e-2)


def test_training_is_seeded_and_reproducible():
    a, sa = train_gate_model("gated", seed=3, log=lambda *x: None, **SMALL)
    b, sb = train_gate_model("gated", seed=3, log=lambda *x: None, **SMALL)
    for (n, p), (_, q) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert torch.equal(p, q), n
    assert [h["loss"] for h in sa["history"]] == [h["loss"] for h in sb["history"]]
    assert sa["history"][-1]["loss"] < sa["history"][0]["loss"]  # it learns
    c, _ = train_gate_model("gated", seed=4, log=lambda *x: None, **SMALL)
    assert not torch.equal(c.model.state_dict()["lm_head.weight"], a.model.state_dict()["lm_head.weight"])


def test_train_command_saves_loadable_models(tmp_path):
    from interp.cli import app

    r = CliRunner().invoke(app, ["toy", "train-gate-models", "--out", str(tmp_path), "--steps", "4", "--seed", "1"])
    assert r.exit_code == 0, r.output
    for kind in ("gated", "free"):
        d = tmp_path / kind
        assert (d / "model.safetensors").exists() and (d / "config.json").exists()
        stats = json.loads((d / "train_stats.json").read_text())
        assert stats["kind"] == kind and stats["steps"] == 4
        hm = load_toy_model(kind, path=d)
        assert hm.adapter.name == "chameleon" and hm.n_layers == 4
        assert next(hm.model.parameters()).dtype == torch.float32


def test_shipped_models_are_small():
    from steering.narrow_gate.toy.world import TOY_MODEL_DIR

    for kind in ("gated", "free"):
        f = TOY_MODEL_DIR / kind / "model.safetensors"
        assert f.exists() and f.stat().st_size < 400_000
        stats = json.loads((TOY_MODEL_DIR / kind / "train_stats.json").read_text())
        assert stats["kind"] == kind and stats["seed"] == (0 if kind == "gated" else 1)
