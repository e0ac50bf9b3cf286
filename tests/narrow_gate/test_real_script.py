"""bench/narrow_gate_real.py (the real-model Table 1 recipe) on tiny random models through the same
code path: loading (a missing model is reported and skipped), flow gate, knockout table, and the
comparison with the paper's numbers."""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

from . import tiny_pixtral as TP
from . import tiny_vlms as T

HAVE_CIDER = importlib.util.find_spec("pycocoevalcap") is not None


def _script():
    p = Path(__file__).resolve().parents[2] / "bench" / "narrow_gate_real.py"
    spec = importlib.util.spec_from_file_location("narrow_gate_real", p)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_real_script_on_tiny_models(tmp_path):
    R = _script()
    built = {"facebook/chameleon-7b": lambda: T.build("chameleon")}

    def load_model(model_id, dtype, device):
        if model_id not in built:
            raise OSError(f"{model_id} is not in the local cache")
        return built[model_id]()

    datasets = {"VQAv2": ("vqav2", "vqa")} | ({"COCO": ("coco-karpathy", "caption")} if HAVE_CIDER else {})
    logs = []
    out = R.run(["chameleon-7b", "pixtral-12b"], n=3, batch_size=3, datasets=datasets, out=tmp_path, n_draws=2,
                load_model=load_model, load_data=lambda spec, n, seed, task: T.examples("chameleon", n),
                log=logs.append)
    assert list(out["results"]) == ["chameleon-7b"] and "pixtral-12b" in out["skipped"]
    comp = out["comparison"].set_index(["dataset", "ablation"])
    assert comp.loc[("VQAv2", "none"), "paper"] == 0.51 and comp.loc[("VQAv2", "[EOI]"), "paper"] == 0.25
    assert math.isnan(comp.loc[("VQAv2", "random"), "paper"])
    assert comp.loc[("VQAv2", "none"), "diff"] == pytest.approx(comp.loc[("VQAv2", "none"), "ours"] - 0.51)
    assert set(comp.index.get_level_values("ablation")) == {"none", "[EOI]", "img→text", "random"}
    assert (tmp_path / "table1.csv").exists() and (tmp_path / "gates.json").exists()
    assert any("weights not available" in m for m in logs) and any("gate" in m for m in logs)


def test_real_script_rows_for_pixtral_and_cpu_guard(capsys):
    R = _script()
    res = R.run_model("pixtral-12b", TP.build(), {"VQAv2": (TP.examples(4), "vqa")}, batch_size=2, n_draws=1)
    comp = res["comparison"].set_index("ablation")
    assert comp.loc["img→text", "paper"] == 0.37 and comp.loc["[EOI]", "paper"] == 0.79
    assert res["gate"]["key"] in ("eoi", "last_image") or res["gate"]["key"].startswith(("image", "special"))
    import torch

    if not torch.cuda.is_available():
        assert R.main(["--models", "chameleon-7b"]) == 0
        assert "No GPU here" in capsys.readouterr().out
