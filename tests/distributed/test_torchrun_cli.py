"""``torchrun --standalone --nproc_per_node 2 -m interp sae train ...`` (gloo chosen automatically on CPU)
ends at the weights of the same command run as one process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    from interp.toy_lm import sample_texts
    from tests.hooks.tiny_models import save_toy_llama

    root = tmp_path_factory.mktemp("torchrun")
    save_toy_llama(root / "toy")
    (root / "train.txt").write_text("\n".join(sample_texts(60, seed=1)))
    return root


def _args(toy, out, cache):
    return ["sae", "train", "--model", str(toy / "toy"), "--site", "resid_post.1", "--data", str(toy / "train.txt"),
            "--arch", "topk", "--k", "4", "--latents", "64", "--tokens", "384", "--batch-size", "64",
            "--buffer-size", "128", "--model-batch-size", "4", "--checkpoint-every", "2", "--log-every", "2",
            "--out", str(out), "--cache-dir", str(cache)]


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}


@pytest.mark.slow
def test_torchrun_two_processes_equal_one_process(toy, tmp_path):
    from safetensors.torch import load_file

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "interp"]
    proc = subprocess.Popen(cmd + _args(toy, tmp_path / "two", tmp_path / "cache2"), cwd=ROOT, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:  # torchrun and its workers share the session we started: end that group only
            os.killpg(proc.pid, 9)
            proc.wait()
    assert proc.returncode == 0, out[-3000:]
    assert out.count("tokens/s") == 1  # the table comes from rank 0 only
    man = json.loads((tmp_path / "cache2" / "manifest.json").read_text())
    assert man["world"] == 2 and {s["rank"] for s in man["shards"]} == {0, 1}
    a = load_file(str(tmp_path / "two" / "sae_weights.safetensors"))
    # one process through the same cache (its shard layout fixes the shuffled stream; the harvest's equality as a
    # set with a one-process cache is tests/distributed/test_harvest_and_ddp.py)
    three = subprocess.run([sys.executable, "-m", "interp"] + _args(toy, tmp_path / "three", tmp_path / "cache2"),
                           cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=240)
    assert three.returncode == 0, three.stderr[-2000:]
    c = load_file(str(tmp_path / "three" / "sae_weights.safetensors"))
    assert set(a) == set(c) and "W_dec" in a
    for k in a:
        torch.testing.assert_close(a[k], c[k], rtol=1e-5, atol=1e-6, msg=k)
    info = json.loads((tmp_path / "two" / "cfg.json").read_text())["metadata"]["interp"]["summary"]
    assert info["world"] == 2
