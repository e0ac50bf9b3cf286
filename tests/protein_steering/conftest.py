"""Shared fixtures: a tiny ESM-2 trained on the toy protein world in seconds, and an SAE on it."""
import contextlib
from pathlib import Path

import pytest
import torch


@contextlib.contextmanager
def threads(n: int = 1):
    """One torch thread: on a shared 2-core machine, 2 threads spin against other jobs (7x slower here)."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@pytest.fixture(autouse=True)
def one_thread():
    with threads(1):
        yield


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """2 layers, d=32, 120 steps on 300 toy proteins (seconds on a CPU; knows little, but is a real MLM)."""
    from steering.protein.toy_model import TrainConfig
    from steering.protein.train_loop import train_toy_model

    out = tmp_path_factory.mktemp("tiny_protein_model") / "model"
    tc = TrainConfig(seed=0, layers=2, d_model=32, heads=2, ffn=64, steps=120, batch_size=32, lr=3e-3, warmup=10,
                     n_train=300, n_eval=20, eval_every=0, log_every=1000)
    with threads(1):
        train_toy_model(out, tc, log=lambda *a: None, probe=False)
    return out


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    from steering.protein.toy_model import load_toy_model

    return load_toy_model(tiny_model_dir)


@pytest.fixture(scope="session")
def tiny_sae_dir(tiny_model, tmp_path_factory) -> Path:
    import saes

    from steering.protein.toy_world import toy_records

    seqs = [r.sequence for r in toy_records(60, seed=5)]
    out = tmp_path_factory.mktemp("tiny_sae") / "sae"
    with threads(1):
        saes.train_sae(tiny_model, seqs, "resid_post.1", positions="residues", out=out, arch="topk", k=4, latents=64,
                       tokens=4096, batch_size=512, buffer_size=2048, lr=3e-3, model_batch_size=30, progress=False)
    return out
