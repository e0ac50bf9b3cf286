"""`interp gate ...` / `interp toy train-gate-models` on the shipped toy models, and one clear
error per kind of bad input (model without an image span, data without images, layer window
beyond the depth)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from interp.cli import app
from steering.narrow_gate.ablations import Ablation, layer_window, standard_ablations
from steering.narrow_gate.errors import ImageSpanError, LayerWindowError, NarrowGateError
from steering.narrow_gate.layout import image_layout
from steering.narrow_gate.toy import load_toy_model, make_examples

run = CliRunner().invoke


def _flat(out: str) -> str:
    return " ".join(out.split())


def test_gate_and_toy_groups_are_registered_and_help_is_light():
    r = run(app, ["gate", "--help"])
    assert r.exit_code == 0 and all(c in r.output for c in ("flow", "ablate", "steer", "toy"))
    r = run(app, ["toy", "--help"])
    assert r.exit_code == 0 and "train-gate-models" in r.output
    code = ("import sys, interp.cli; from typer.testing import CliRunner; "
            "r = CliRunner().invoke(interp.cli.app, ['gate', '--help']); assert r.exit_code == 0; "
            "print(sorted(m for m in ('torch', 'transformers', 'transformer_lens', 'nnsight') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "transformer_lens" not in out and "nnsight" not in out and "transformers" not in out


def test_get_or_add_typer_reuses_an_existing_group():
    import typer

    from steering.narrow_gate.cli import get_or_add_typer

    a = typer.Typer()
    first = get_or_add_typer(a, "toy")
    assert get_or_add_typer(a, "toy") is first and len(a.registered_groups) == 1


def test_ablate_flow_steer_commands_write_outputs(tmp_path):
    r = run(app, ["gate", "ablate", "--model", "toy:gated", "--data", "toy", "--n", "60", "--batch-size", "60",
                  "--windows", "2", "--out", str(tmp_path / "abl")])
    assert r.exit_code == 0, r.output
    for f in ("ablation.csv", "ablation.md", "ablation.png", "results.json"):
        assert (tmp_path / "abl" / f).exists(), f
    res = json.loads((tmp_path / "abl" / "results.json").read_text())
    labels = [row["label"] for row in res["table"]]
    assert labels == ["none", "[EOI]", "img→text", "random", "[EOI] (last 2)", "img→text (last 2)", "random (last 2)"]
    assert "| [EOI] |" in (tmp_path / "abl" / "ablation.md").read_text()
    r = run(app, ["gate", "flow", "--model", "toy:gated", "--data", "toy", "--n", "48", "--batch-size", "48",
                  "--no-gap", "--semantic", "--out", str(tmp_path / "flow")])
    assert r.exit_code == 0, r.output
    gate = json.loads((tmp_path / "flow" / "gate.json").read_text())["gate"]
    assert gate["key"] == "eoi" and "gate: eoi" in _flat(r.output)
    for f in ("flow_shares.csv", "flow_keys.csv", "flow.png", "semantic_overlap.csv"):
        assert (tmp_path / "flow" / f).exists(), f
    r = run(app, ["gate", "steer", "--model", "toy:gated", "--data", "toy", "--n", "32", "--batch-size", "32",
                  "--layers", "2", "--out", str(tmp_path / "steer")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "steer" / "patch_resid.csv").read_text().startswith("layer,flip_rate")


def test_layer_window_beyond_depth_is_one_error(tmp_path):
    with pytest.raises(LayerWindowError, match="beyond the model's depth: it has 4 layers"):
        layer_window(4, last=8)
    with pytest.raises(LayerWindowError):
        standard_ablations(4, windows=(None, 16))
    with pytest.raises(LayerWindowError):
        layer_window(4, layers=[5])
    r = run(app, ["gate", "ablate", "--model", "toy:gated", "--data", "toy", "--n", "8", "--windows", "8",
                  "--out", str(tmp_path)])
    assert r.exit_code == 2 and "beyond the model's depth" in _flat(r.output)


def test_data_without_images_is_one_error(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"question": "what?", "answers": ["x"]}\n')
    r = run(app, ["gate", "flow", "--model", "toy:gated", "--data", str(tmp_path / "d.jsonl"), "--out", str(tmp_path)])
    assert r.exit_code == 2 and "no image column" in _flat(r.output)
    hm = load_toy_model("gated")
    inputs = hm.prepare(["<s> what class ?"])  # a prompt without patch tokens
    with pytest.raises(ImageSpanError, match="No image tokens found in batch row 0"):
        image_layout(hm, inputs)


def test_model_without_image_span_is_one_error(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    import hooks
    from hooks.loading import save_pretrained_atomic
    from steering.narrow_gate.toy.world import make_tokenizer

    torch.manual_seed(0)
    tok = make_tokenizer()
    m = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, num_key_value_heads=2, pad_token_id=0))
    save_pretrained_atomic(m, tok, tmp_path / "llama")
    with pytest.raises(ImageSpanError, match="has no image span"):
        image_layout(hooks.wrap(m, tok), {"input_ids": torch.tensor([[1, 2, 3]])})
    r = run(app, ["gate", "flow", "--model", str(tmp_path / "llama"), "--data", "toy", "--n", "4", "--out",
                  str(tmp_path / "o")])
    assert r.exit_code == 2 and "has no image span" in _flat(r.output)


def test_other_bad_inputs():
    with pytest.raises(NarrowGateError, match="Unknown ablation"):
        Ablation("everything")
    with pytest.raises(NarrowGateError, match="Unknown toy model"):
        load_toy_model("huge")
    hm = load_toy_model("free")
    two = make_examples(1, seed=0)[0]["text"].replace("<eoss>", "<eoss> <racm3:break> IMGIMGAAZ <eoss>")
    with pytest.raises(ImageSpanError, match="end-of-image tokens"):
        image_layout(hm, hm.prepare([two]))
