"""The real-data route on a tiny LLaVA with its processor: image files → prompt template →
processor → spans → flow / knockout table / patching (what `interp gate ...` does on a real model)."""
from __future__ import annotations

import json

import numpy as np

import hooks
from steering.narrow_gate.ablations import ablation_table, standard_ablations
from steering.narrow_gate.data import load_data
from steering.narrow_gate.flow import attention_flow
from steering.narrow_gate.patching import make_pairs, patch_gate
from steering.narrow_gate.tasks import build_prompt, encode
from tests.hooks.test_vlm_adapters import _tiny_llava_processor, make_llava


def _files(tmp_path):
    from PIL import Image

    rng = np.random.RandomState(0)
    for c in ("w20", "w21"):
        (tmp_path / "cls" / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.randint(0, 255, (8, 8, 3), dtype=np.uint8)).save(tmp_path / "cls" / c / f"{i}.png")
    rows = [{"image": f"cls/w20/{i}.png", "question": "w5 w6", "answers": ["w7"] * 10} for i in range(3)]
    (tmp_path / "vqa.jsonl").write_text("\n".join(json.dumps(r) for r in rows))


def test_llava_processor_route(tmp_path):
    _files(tmp_path)
    proc, _ = _tiny_llava_processor()
    hm = hooks.wrap(make_llava(), proc)
    vqa, task = load_data(tmp_path / "vqa.jsonl")
    cls, ctask = load_data(tmp_path / "cls")
    assert (task, ctask) == ("vqa", "classify") and cls[0]["candidates"] == ["w20", "w21"]
    p = build_prompt(hm, vqa[0], "vqa")
    assert p.startswith("<image>w5 w6\n- Answer the question") and p.endswith("You must answer.")  # authors' prompt
    inputs = encode(hm, vqa, "vqa")
    assert inputs["pixel_values"].shape == (3, 3, 8, 8) and (inputs["input_ids"] == 3).sum().item() == 12
    flow = attention_flow(hm, vqa, batch_size=2)
    assert flow.gate_name == "last_image" and np.allclose(flow.shares_array.sum(1), 1, atol=1e-5)
    df = ablation_table(hm, {"VQA": (vqa, "vqa"), "IN": (cls, "classify")}, standard_ablations(hm.n_layers, n_random=2),
                        batch_size=2)
    assert list(df.columns) == ["ablation", "VQA vqa_accuracy", "IN accuracy"] and len(df) == 4
    res = patch_gate(hm, make_pairs(cls, 4, seed=0), layers=[1], batch_size=4)
    assert int(res.summary.loc[1, "n_pairs"]) == 4
