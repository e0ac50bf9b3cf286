"""``interp dashboard sae|attention`` end to end on a tiny GPT-2 saved to disk with a word-level tokenizer."""
import json

import pytest
from typer.testing import CliRunner

import saes
from interp.cli import app

from .conftest import PLANTED, TOKEN, planted_sae

WORDS = ["<pad>", "<s>", "</s>", "<unk>"] + [f"w{i}" for i in range(4, 64)]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers

    from tests.hooks import tiny_models as TM

    root = tmp_path_factory.mktemp("cli")
    model = TM.build("gpt2")
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", bos_token="<s>",
                                               eos_token="</s>", unk_token="<unk>")
    model.save_pretrained(root / "model")
    tok.save_pretrained(root / "model")
    sae = planted_sae(model.transformer.wte.weight.detach())
    saes.save_sae(sae, root / "sae", metadata={"interp": {"site": "embed", "positions": {"rule": "auto"}}})
    lines = ["w5 w17 w9 w12", "w30 w31 w17", "w8 w9 w10 w11 w12", "w17 w40 w41 w42 w43 w44"]
    (root / "data.txt").write_text("\n".join(lines) + "\n")
    return root


def test_dashboard_sae_command(saved):
    out = saved / "dash"
    r = CliRunner().invoke(app, ["dashboard", "sae", "--sae", str(saved / "sae"), "--model", str(saved / "model"),
                                 "--data", str(saved / "data.txt"), "--out", str(out), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "wrote" in r.output and (out / "index.html").exists()
    d = json.loads((out / "data" / f"latent_{PLANTED:06d}.json").read_text())
    top = d["groups"][0]["contexts"]
    assert sorted((c["example"], c["position"]) for c in top) == [(0, 1), (1, 2), (3, 0)]   # "w17" in text
    assert all(c["tokens"][c["hit"]].strip() == f"w{TOKEN}" for c in top)
    meta = json.loads((out / "data" / "meta.json").read_text())
    assert meta["model"] == str(saved / "model") and meta["rows"] == 18 and meta["site"] == "embed"


def test_dashboard_attention_command(saved):
    out = saved / "attn"
    r = CliRunner().invoke(app, ["dashboard", "attention", "--model", str(saved / "model"), "--out", str(out),
                                 "--prompt", "w5 w6 w7", "--prompt", "w9 w10", "--layers", "0-1", "--heads", "0,3",
                                 "--device", "cpu"])
    assert r.exit_code == 0, r.output
    data = json.loads((out / "data" / "attention.json").read_text())
    assert data["heads"] == [0, 3] and sorted(data["patterns"]) == ["0", "1"]
    w = data["patterns"]["0"][0][0]  # prompt 0, head 0: BOS + 3 words (hooks' prepend_bos default), causal, rows sum to 1
    assert len(w) == 4 and all(abs(sum(row) - 1) < 1e-5 for row in w) and w[0][1] == 0 and w[2][3] == 0
    assert [t.strip() for t in data["tokens"][1]] == ["<s>", "w9", "w10"]


def test_bad_input_is_one_clear_error(saved):
    r = CliRunner().invoke(app, ["dashboard", "attention", "--model", str(saved / "model"), "--out",
                                 str(saved / "x"), "--prompt", "w5", "--layers", "7", "--device", "cpu"])
    assert r.exit_code == 2 and "Layers [7] do not exist" in " ".join(r.output.split())
    r = CliRunner().invoke(app, ["dashboard", "sae", "--sae", str(saved / "nope"), "--model", str(saved / "model"),
                                 "--data", str(saved / "data.txt"), "--out", str(saved / "y")])
    assert r.exit_code == 2 and "is not a directory" in " ".join(r.output.split())


def test_protein_parquet_gives_annotation_tracks(tmp_path):
    """A protein dataset (parquet, mask_<TRACK> columns) on the shipped toy ESM: the index gains the best
    annotation F1, latent pages draw whole-sequence traces with the tracks under them, logits are amino acids."""
    from steering.protein.schema import save_dataset
    from steering.protein.toy_model import toy_model_path
    from steering.protein.toy_world import make_toy_world

    ds = make_toy_world(12, seed=5)
    save_dataset(ds, tmp_path / "prot.parquet")
    sae = saes.make_training_sae(saes.TrainConfig(arch="topk", latents=64, k=4, seed=0), 64)
    saes.save_sae(sae, tmp_path / "sae", metadata={"interp": {"site": "resid_post.1", "positions": {"rule": "auto"}}})
    out = tmp_path / "dash"
    r = CliRunner().invoke(app, ["dashboard", "sae", "--sae", str(tmp_path / "sae"), "--model", str(toy_model_path()),
                                 "--data", str(tmp_path / "prot.parquet"), "--out", str(out), "--device", "cpu",
                                 "--tracks", "ZN_FING,TRANSMEM,COILED", "--latents", "0-15"])
    assert r.exit_code == 0, r.output
    meta = json.loads((out / "data" / "meta.json").read_text())
    assert meta["tracks"] == ["ZN_FING", "TRANSMEM", "COILED"] and meta["rows"] == sum(ds["length"])
    index = (out / "index.html").read_text()
    assert 'data-key="best_f1"' in index and "live latents without a page" in index
    page = next((out / "latents").iterdir())
    d = json.loads((out / "data" / f"latent_{page.stem}.json").read_text())
    assert d["traces"] and set(d["traces"][0]["tracks"]) == {"ZN_FING", "TRANSMEM", "COILED"}
    assert len(d["traces"][0]["acts"]) == ds[d["traces"][0]["example"]]["length"]
    assert {t for t, _ in d["logits"]["top"]} <= set("ACDEFGHIKLMNPQRSTVWY")
    assert page.read_text().count('<svg class="trace"') == len(d["traces"])
