"""SAE files (ours and SAELens's), atomic saves, bad files, the `sae` CLI group and a light `import saes`."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

import saes
from saes.cli import register
from saes.errors import SAEFileError

from .conftest import token_rows


def saelens_topk(hook_name="blocks.0.hook_resid_post", d=32, seed=0):
    from sae_lens import TopKSAE, TopKSAEConfig

    torch.manual_seed(seed)
    sae = TopKSAE(TopKSAEConfig(d_in=d, d_sae=64, k=4))
    with torch.no_grad():
        sae.b_enc.normal_()
    sae.cfg.metadata.hook_name = hook_name
    return sae


def test_saelens_saved_sae_loads_and_splices_on_a_tl_model(tl, tmp_path):
    sae = saelens_topk()
    sae.save_model(str(tmp_path / "theirs"))                        # written by SAELens itself
    ours = saes.load_sae(tmp_path / "theirs")
    x = torch.randn(8, 32)
    assert torch.equal(ours.encode(x), sae.encode(x)) and saes.info_of(ours) == {}
    assert saes.site_of(ours) == "resid_post.0"                      # TL hook name → canonical site
    rows = token_rows(4, seed=30, vocab=50)
    assert torch.equal(tl.run(rows, [saes.splice(ours)]).logits, tl.run(rows).logits)
    m = saes.evaluate_sae(ours, tl, rows, positions="all")
    assert m["site"] == "resid_post.0" and m["tokens"] == sum(map(len, rows)) and m["l0"] <= 4


def test_bad_sae_files_give_one_clear_error(tmp_path):
    with pytest.raises(SAEFileError, match="not a directory"):
        saes.load_sae(tmp_path / "missing")
    sae = saelens_topk()
    saes.save_sae(sae, tmp_path / "s")
    weights = tmp_path / "s" / "sae_weights.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[:100])
    with pytest.raises(SAEFileError, match="corrupt"):
        saes.load_sae(tmp_path / "s")
    weights.write_bytes(good)
    (tmp_path / "s" / "cfg.json").write_text("{not json")
    with pytest.raises(SAEFileError, match="not valid JSON"):
        saes.load_sae(tmp_path / "s")
    (tmp_path / "s" / "cfg.json").unlink()
    with pytest.raises(SAEFileError, match="incomplete.*interrupted"):
        saes.load_sae(tmp_path / "s")


def test_interrupted_save_keeps_the_previous_sae(tmp_path, monkeypatch):
    old = saelens_topk(seed=1)
    saes.save_sae(old, tmp_path / "s", metadata={"note": "old"})
    new = saelens_topk(seed=2)

    def broken(self, path):
        (Path(path) / "sae_weights.safetensors").write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(type(new), "save_model", broken)
    with pytest.raises(OSError, match="disk full"):
        saes.save_sae(new, tmp_path / "s")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]        # the temp directory is gone
    back = saes.load_sae(tmp_path / "s")
    assert torch.equal(back.W_enc, old.W_enc) and back.cfg.metadata.note == "old"


@pytest.fixture(scope="module")
def cli_model(tmp_path_factory):
    from interp.toy_lm import sample_texts
    from tests.hooks.tiny_models import save_toy_llama

    root = tmp_path_factory.mktemp("cli")
    save_toy_llama(root / "toy")
    (root / "train.txt").write_text("\n".join(sample_texts(120, seed=1)))
    (root / "test.txt").write_text("\n".join(sample_texts(20, seed=2)))
    return root


def test_cli_train_then_eval(cli_model, tmp_path):
    app = typer.Typer()
    register(app)
    out = tmp_path / "sae"
    args = ["sae", "train", "--model", str(cli_model / "toy"), "--site", "resid_post.1", "--data",
            str(cli_model / "train.txt"), "--arch", "topk", "--k", "4", "--latents", "64", "--tokens", "640",
            "--batch-size", "64", "--buffer-size", "256", "--checkpoint-every", "4", "--log-every", "2",
            "--device", "cpu", "--out", str(out)]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "tokens/s" in r.output and "L0" in r.output
    lines = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [2, 4, 6, 8, 10] and lines[-1]["metrics/l0"] == 4
    info = saes.info_of(saes.load_sae(out))
    assert info["positions"]["rule"] == "auto" and 1 in info["positions"]["exclude_token_ids"]   # <bos> left out
    r = CliRunner().invoke(app, ["sae", "eval", "--sae", str(out), "--model", str(cli_model / "toy"), "--data",
                                 str(cli_model / "test.txt"), "--device", "cpu", "--json", str(tmp_path / "m.json")])
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "m.json").read_text())
    for key in ("l0", "fvu", "mse", "dead_fraction", "loss_recovered", "loss_clean", "loss_sae", "loss_zero"):
        assert key in m and key in r.output
    assert m["l0"] == 4 and m["objective"] == "next_token_ce" and m["site"] == "resid_post.1"
    r = CliRunner().invoke(app, args[:5] + ["resid_post.7"] + args[6:-1] + [str(tmp_path / "x")])
    assert r.exit_code == 2 and "Unknown site 'resid_post.7'" in " ".join(r.output.split())
    r = CliRunner().invoke(app, ["sae", "eval", "--sae", str(tmp_path / "nope"), "--model", str(cli_model / "toy"),
                                 "--data", str(cli_model / "test.txt"), "--device", "cpu"])
    assert r.exit_code == 2 and "is not a directory" in " ".join(r.output.split())


def test_import_saes_is_light():
    code = ("import sys, saes, saes.cli; "
            "print(sorted(m for m in ('transformer_lens', 'nnsight', 'sae_lens', 'transformers') if m in sys.modules))")
    root = str(Path(__file__).resolve().parents[2])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root).stdout
    assert out.strip() == "[]"


def test_public_names_resolve_in_any_order():
    code = ("import saes; saes.SAESplice; saes.evaluate_sae; assert callable(saes.splice) and "
            "saes.splice.__name__ == 'splice', saes.splice; import saes.splicing")
    root = str(Path(__file__).resolve().parents[2])
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)
