"""Shell journey (J3) and import weight: `interp sites`, `interp run`, light `import interp`."""
import json
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from interp.cli import app


@pytest.fixture(scope="module")
def saved_lm(tmp_path_factory):
    from tests.hooks.tiny_models import save_toy_llama

    return save_toy_llama(tmp_path_factory.mktemp("m") / "toy")


def test_import_interp_and_help_stay_light():
    code = ("import sys, interp, interp.cli; from typer.testing import CliRunner; "
            "r = CliRunner().invoke(interp.cli.app, ['--help']); assert r.exit_code == 0, r.output; "
            "print(sorted(m for m in ('transformer_lens', 'nnsight', 'sae_lens', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_sites_command(saved_lm):
    r = CliRunner().invoke(app, ["sites", str(saved_lm)])
    assert r.exit_code == 0, r.output
    assert "resid_post.1" in r.output and "B×P×32" in r.output and "attn_pattern.0" in r.output


def test_run_command_writes_results_and_zero_steer_is_a_no_op(saved_lm, tmp_path):
    from interp.toy_lm import sample_texts

    data = tmp_path / "data.txt"
    data.write_text("\n".join(sample_texts(10, seed=3)))
    noop = tmp_path / "noop.yaml"
    noop.write_text("interventions:\n  - {type: steer, sites: resid_post.0, vector: %s, scale: 0.0}\n" % ([1.0] * 32))
    r = CliRunner().invoke(app, ["run", "--model", str(saved_lm), "--data", str(data), "--spec", str(noop),
                                 "--out", str(tmp_path / "a"), "--batch-size", "4"])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "a" / "results.json").read_text())
    assert res["summary"]["delta_loss"] == 0 and res["summary"]["top1_changed"] == 0
    assert res["summary"]["tokens"] == sum(len(t.split()) - 1 for t in sample_texts(10, seed=3))
    abl = tmp_path / "abl.yaml"
    abl.write_text("- {type: ablate, sites: 'attn_out.*', how: zero}\n")
    r = CliRunner().invoke(app, ["run", "--model", str(saved_lm), "--data", str(data), "--spec", str(abl),
                                 "--out", str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "b" / "results.json").read_text())
    assert res["summary"]["delta_loss"] != 0
    assert (tmp_path / "b" / "batches.csv").read_text().startswith("batch,tokens,clean_loss")


def test_run_command_bad_spec_is_one_clear_error(saved_lm, tmp_path):
    data = tmp_path / "d.txt"
    data.write_text("<bos> s1 s2 | s1 s2\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- {type: cache, sites: resid_post.9}\n")
    r = CliRunner().invoke(app, ["run", "--model", str(saved_lm), "--data", str(data), "--spec", str(bad)])
    assert r.exit_code == 2 and "Unknown site 'resid_post.9'" in " ".join(r.output.split())
    r = CliRunner().invoke(app, ["run", "--model", str(saved_lm), "--data", str(data), "--spec", str(tmp_path / "nope.yaml")])
    assert r.exit_code == 2 and "does not exist" in " ".join(r.output.split())


def test_id_profile_extracts_one_row_per_example_per_layer(saved_lm, tmp_path):
    import hooks
    from interp.id_profile import extract_layer_reps
    from interp.toy_lm import sample_texts

    texts = sample_texts(40, seed=4)
    hm = hooks.load(saved_lm)
    reps = extract_layer_reps(hm, texts, "resid_post.*", "last", batch_size=16, progress=False)
    assert sorted(reps) == ["resid_post.0", "resid_post.1"] and reps["resid_post.1"].shape == (40, 32)
    direct = hm.run(texts[:3], [hooks.Cache("resid_post.1", positions="last")]).cache["resid_post.1"]
    torch.testing.assert_close(reps["resid_post.1"][:3], direct, rtol=1e-5, atol=1e-6)
    data = tmp_path / "d.txt"
    data.write_text("\n".join(texts))
    r = CliRunner().invoke(app, ["id-profile", "--model", str(saved_lm), "--data", str(data), "--out", str(tmp_path / "o"),
                                 "--site", "resid_post.*", "--pool", "last", "--decimation", "1", "--fraction", "0.9"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "o" / "reps.safetensors").exists() and (tmp_path / "o" / "profile.csv").exists()
    import pandas as pd

    prof = pd.read_csv(tmp_path / "o" / "profile.csv")
    assert [str(x) for x in prof["layer"]] == ["resid_post.0", "resid_post.1"] and (prof["id"] > 0).all()
