"""``interp steer protein`` end to end on the tiny model (typer runner), and its one-line errors."""
import json
import shutil

import typer
from typer.testing import CliRunner

from steering.protein import steer_cli


def app():
    a = typer.Typer()
    a.command("noop")(lambda: None)
    steer_cli.register(a)
    return a


def test_steer_protein_command(tiny_model_dir, tiny_sae_dir, tmp_path):
    out = tmp_path / "run"
    r = CliRunner().invoke(app(), ["steer", "protein", "--model", str(tiny_model_dir), "--sae", str(tiny_sae_dir),
                                   "--latent", "3", "--value", "50", "--n", "4", "--length", "12", "--seed", "0",
                                   "--out", str(out), "--per-step", "3", "--pppl-n", "1", "--window", "2:6"])
    assert r.exit_code == 0, r.output
    js = json.loads((out / "summary.json").read_text())
    assert js["window"] == [2, 6] and js["n"] == 4 and js["generation"]["per_step"] == 3
    assert (out / "steered.fasta").read_text().count(">") == 4
    assert "Fisher's exact" in r.output


def test_mismatched_sae_is_one_clear_error(tiny_model_dir, tiny_sae_dir, tmp_path):
    copy = tmp_path / "other_model"
    shutil.copytree(tiny_model_dir, copy)
    r = CliRunner().invoke(app(), ["steer", "protein", "--model", str(copy), "--sae", str(tiny_sae_dir), "--latent",
                                   "3", "--value", "5", "--n", "2", "--length", "8", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "trained on another model" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app(), ["steer", "protein", "--model", str(tiny_model_dir), "--sae", str(tmp_path),
                                   "--latent", "3", "--value", "5", "--out", str(tmp_path / "y")])
    assert r.exit_code == 2 and "incomplete" in r.output
    r = CliRunner().invoke(app(), ["steer", "protein", "--model", str(tiny_model_dir), "--sae", str(tiny_sae_dir),
                                   "--latent", "3", "--latent", "4", "--value", "5", "--out", str(tmp_path / "z")])
    assert r.exit_code == 2 and "one value per latent" in r.output


def test_interp_demo_leaves_the_reuse_line_to_the_sae_trainer(tmp_path, monkeypatch):
    """`interp demo` over an OUT that holds an SAE prints no reuse line of its own: saes.train_sae says
    once what it reuses (tests/protein_steering/test_pipeline.py); the CLI's vaguer duplicate is gone."""
    import steering.protein.pipeline as P
    from interp.cli import app as interp_app

    (tmp_path / "sae").mkdir()
    (tmp_path / "sae" / "cfg.json").write_text("{}")
    seen = {}

    def fake(model, proteins, out, **kw):
        seen["out"] = out
        raise ValueError("stopped here by the test")

    monkeypatch.setattr(P, "run_protein_pipeline", fake)
    r = CliRunner().invoke(interp_app, ["demo", "--out", str(tmp_path)])
    assert seen["out"] == tmp_path and "stopped here by the test" in r.output
    assert "reus" not in r.output, r.output
