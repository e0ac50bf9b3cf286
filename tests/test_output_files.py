"""Output files: readable by the group (the mode a plain open()/mkdir() gives under the umask,
not mkstemp's/mkdtemp's/safetensors' owner-only 0600/0700), and p/q values that underflowed
printed as "< 1e-300" (never "0.0e+00")."""
from __future__ import annotations

import os
import stat

import pytest
import torch


@pytest.fixture(params=[0o022, 0o027])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _modes(root):
    out = {}
    for dirpath, dirs, files in os.walk(root):
        out[dirpath] = stat.S_IMODE(os.stat(dirpath).st_mode)
        for f in files:
            out[os.path.join(dirpath, f)] = stat.S_IMODE(os.stat(os.path.join(dirpath, f)).st_mode)
    return out


def _assert_umask_modes(root, mask):
    modes = _modes(root)
    assert modes
    for p, m in modes.items():
        want = (0o777 if os.path.isdir(p) else 0o666) & ~mask
        assert m == want, f"{p}: {oct(m)} != {oct(want)}"


def test_saved_sae_checkpoint_and_shard_follow_the_umask(umask, tmp_path):
    import saes
    from saes import checkpoint as C
    from saes.cache import write_shard

    x = torch.randn(512, 8, generator=torch.Generator().manual_seed(0))
    store = saes.ActivationStore.from_tensor(x, batch_size=32, buffer_size=128)
    seen = {}

    def look(step, row):  # a checkpoint was written at step 2; its directory and files
        if step == 3:
            seen["ckpt"] = _modes(C.latest(tmp_path / "sae" / "checkpoints"))

    saes.fit_sae(store, out=tmp_path / "sae", arch="topk", k=2, latents=8, tokens=32 * 4, batch_size=32,
                 checkpoint_every=2, on_step=look, progress=False)
    _assert_umask_modes(tmp_path / "sae", umask)  # cfg.json, sae_weights.safetensors, sparsity, metrics.jsonl
    assert any(p.endswith(".safetensors") for p in seen["ckpt"])
    for p, m in seen["ckpt"].items():
        assert m == (0o777 if not os.path.splitext(p)[1] else 0o666) & ~umask, p
    (tmp_path / "shards").mkdir()
    write_shard(tmp_path / "shards", "s.safetensors", [torch.zeros(2, 3)])
    assert stat.S_IMODE(os.stat(tmp_path / "shards" / "s.safetensors").st_mode) == 0o666 & ~umask


def test_save_pretrained_atomic_follows_the_umask(umask, tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    from hooks.loading import save_pretrained_atomic

    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=20, n_positions=16))
    save_pretrained_atomic(model, None, tmp_path / "m")
    _assert_umask_modes(tmp_path / "m", umask)


def test_protein_report_tables_follow_the_umask(umask, tmp_path):
    import pandas as pd

    from steering.protein.pipeline_report import _atomic_df

    _atomic_df(pd.DataFrame({"a": [1, 2]}), tmp_path / "t.csv", "csv")
    assert stat.S_IMODE(os.stat(tmp_path / "t.csv").st_mode) == 0o666 & ~umask


def test_format_q():
    from hooks.formatting import format_q

    assert format_q(0.0) == "< 1e-300" and format_q(0) == "< 1e-300"   # exact zero: an underflow
    assert format_q(5e-324) == "< 1e-300"                               # subnormal
    assert format_q(1e-300) == "1.0e-300" and format_q(3.21e-5) == "3.2e-05"
    assert format_q(0.5, digits=2) == "5.00e-01"
    assert format_q(None) == "nan" and format_q(float("nan")) == "nan" and format_q(torch.tensor(0.0).item()) == "< 1e-300"


def test_every_atomic_writer_follows_the_umask(umask, tmp_path):
    """The writers routed through hooks.io.atomic_path (text, JSON, safetensors, jsonl, CSV) land
    with the umask's mode and leave no temp file behind."""
    from hooks.io import write_json_atomic, write_text_atomic
    from interp.landscape.extract import Representations, save_representations
    from interp.landscape.synthetic import make_synthetic_mcq, write_synthetic_mcq
    from saes.cache import write_state_json
    from steering.narrow_gate.report import write_text

    write_text_atomic(tmp_path / "a" / "t.txt", "x")
    write_json_atomic(tmp_path / "a" / "j.json", {"a": 1})
    write_state_json(tmp_path / "a" / "m.json", {"a": 1})
    write_text(tmp_path / "a" / "r.md", "| a |")
    save_representations(tmp_path / "a" / "reps.safetensors",
                         Representations({0: torch.zeros(2, 3)}, torch.zeros(2, 4), {"k": 1}))
    write_synthetic_mcq(tmp_path / "a", {k: v[:2] for k, v in make_synthetic_mcq(2, 2).items()})
    _assert_umask_modes(tmp_path / "a", umask)
    assert not [p for p in os.listdir(tmp_path / "a") if p.startswith(".")]


def test_atomic_path_keeps_the_old_file_when_the_writer_fails(tmp_path):
    from hooks.io import atomic_path, write_text_atomic

    p = write_text_atomic(tmp_path / "r.json", "old")
    with pytest.raises(RuntimeError):
        with atomic_path(p) as tmp:
            tmp.write_text("half")
            raise RuntimeError("writer died")
    assert p.read_text() == "old" and os.listdir(tmp_path) == ["r.json"]


def test_cache_state_json_keeps_its_format_and_is_fsynced(tmp_path, monkeypatch):
    """The activation cache's manifest (and the checkpoints' run.json/manifest.json) kept their
    on-disk bytes when they moved onto hooks.io: indent 1, no trailing newline; and they are
    fsynced before the rename (a resumable state must survive a power cut)."""
    import hooks.io
    from saes.cache import write_state_json

    synced = []
    real = os.fsync
    monkeypatch.setattr(hooks.io.os, "fsync", lambda fd: (synced.append(fd), real(fd))[1])
    p = write_state_json(tmp_path / "manifest.json", {"version": 1, "shards": [{"rows": 2}], "complete": False})
    assert p.read_text() == '{\n "version": 1,\n "shards": [\n  {\n   "rows": 2\n  }\n ],\n "complete": false\n}'
    assert len(synced) == 1
    hooks.io.write_json_atomic(tmp_path / "r.json", {"a": 1})
    assert len(synced) == 1  # results files: no fsync unless asked
