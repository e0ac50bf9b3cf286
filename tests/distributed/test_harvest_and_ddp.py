"""Distributed harvesting and data-parallel SAE training on 2 gloo ranks (CPU) against one process.

Known answers: the 2-rank cache holds exactly the single-process cache's rows (as a set, bit for bit);
DDP training at the same global batch and seed ends at the single-process weights (float tolerance: only
the summation order of the gradient differs); a run whose rank 1 is SIGKILLed mid-training resumes from
rank 0's checkpoint with ONE process and ends at the same weights.
"""
from __future__ import annotations

import json
import os
import signal

import pytest
import torch

from tests.distributed.launch import run_ranks

SITE = "resid_post.0"
TRAIN = dict(arch="topk", latents=64, k=4, batch_size=32, buffer_size=128, tokens=32 * 8, lr=3e-3, log_every=2,
             dead_feature_window=3, feature_sampling_window=4, seed=0)


def _model():
    import hooks
    from tests.hooks import tiny_models as TM

    return hooks.wrap(TM.build("gpt2"))


def _rows():
    from tests.saes.conftest import token_rows

    return token_rows(45, seed=3)


def _store(cache):
    import saes

    return saes.ActivationStore.from_cache(cache, batch_size=TRAIN["batch_size"], buffer_size=TRAIN["buffer_size"], seed=0)


def _harvest_and_train(r, w, out):
    from saes import distributed as D
    from saes.train import fit_sae

    man = D.harvest(_model(), _rows(), SITE, out / "cache", model_batch_size=4, shard_rows=48, progress=False)
    res = fit_sae(_store(out / "cache"), out=out / "sae", checkpoint_every=0, **TRAIN)
    return {"manifest": man, "state": {k: v.detach().clone() for k, v in res.training_sae.state_dict().items()},
            "log": res.log, "summary": res.summary}


def _train_and_die(r, w, out, base):
    from saes.train import fit_sae

    def kill(step, row):
        if r == 1 and step == 5:
            os.kill(os.getpid(), signal.SIGKILL)  # a real crash: no cleanup, no exception

    fit_sae(_store(base / "cache"), out=base / "killed", checkpoint_every=2, on_step=kill, **TRAIN)
    return None


def _all_rows(cache):
    from safetensors.torch import load_file

    man = json.loads((cache / "manifest.json").read_text())
    return torch.cat([load_file(str(cache / s["file"]))["activations"] for s in man["shards"]]), man


def _rowset(t):
    return sorted(map(tuple, t.tolist()))


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    return out, run_ranks(_harvest_and_train, 2, out)


def test_two_rank_harvest_is_the_single_process_cache_as_a_set(ddp_run, tmp_path):
    from saes.cache import cache_activations

    out, (r0, r1) = ddp_run
    assert r0["manifest"] == r1["manifest"]
    man = r0["manifest"]
    assert man["complete"] and man["world"] == 2 and {s["rank"] for s in man["shards"]} == {0, 1}
    assert [m["rank"] for m in man["ranks"]] == [0, 1] and all(m["rows"] > 0 for m in man["ranks"])
    assert not list((out / "cache").glob("manifest.rank*")) and not list((out / "cache").glob(".*tmp*"))
    single = cache_activations(_model(), _rows(), SITE, tmp_path / "one", model_batch_size=4, shard_rows=48,
                               progress=False)
    got, _ = _all_rows(out / "cache")
    ref, _ = _all_rows(tmp_path / "one")
    assert got.shape == ref.shape == (single["rows"], 32) and man["rows"] == single["rows"]
    assert _rowset(got) == _rowset(ref)
    assert man["identity"] == single["identity"]
    # every model batch was run by exactly one rank
    batches = sorted(tuple(b) for s in man["shards"] for b in s["example_ranges"])
    assert batches == [(i, min(i + 4, 45)) for i in range(0, 45, 4)]
    # the manifest checksums are real: the merged cache reads through the ordinary reader
    store = _store(out / "cache")
    assert next(store).shape == (32, 32)


def test_ddp_weights_equal_single_process_training(ddp_run):
    from saes.train import fit_sae

    out, (r0, r1) = ddp_run
    ref = fit_sae(_store(out / "cache"), checkpoint_every=0, **TRAIN)
    assert r0["summary"]["world"] == 2 and ref.summary["world"] == 1 and r0["summary"]["steps"] == 8
    for name, p in ref.training_sae.state_dict().items():
        assert torch.equal(r0["state"][name], r1["state"][name]), name       # ranks agree exactly
        torch.testing.assert_close(r0["state"][name], p, rtol=1e-5, atol=1e-6, msg=name)
    init = __import__("saes.train", fromlist=["x"]).make_training_sae(
        __import__("saes.train", fromlist=["x"]).TrainConfig(**TRAIN), 32).state_dict()
    assert not torch.allclose(init["W_dec"], ref.training_sae.state_dict()["W_dec"])  # training moved the weights
    # metrics are those of the global batch
    for a, b in zip(r0["log"], ref.log):
        assert a["step"] == b["step"]
        for key in ("losses/mse_loss", "losses/auxiliary_reconstruction_loss", "metrics/explained_variance",
                    "metrics/l0", "sparsity/dead_features", "sparsity/mean_passes_since_fired",
                    "details/n_training_samples"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), key
    # dead latents appear and the AuxK loss acts on them: per-rank (unreduced) counters would change the weights
    assert max(row["sparsity/dead_features"] for row in ref.log) > 0
    assert max(row["losses/auxiliary_reconstruction_loss"] for row in ref.log) > 0
    saved = json.loads((out / "sae" / "cfg.json").read_text())
    assert saved["metadata"]["interp"]["summary"]["world"] == 2


def test_killed_rank_resumes_with_one_process_to_the_same_weights(ddp_run):
    from saes.train import fit_sae

    out, _ = ddp_run
    with pytest.raises(RuntimeError, match="rank failed") as err:
        run_ranks(_train_and_die, 2, out / "die", out)
    assert "SIGKILL" in repr(err.value.__cause__) or "signal" in repr(err.value.__cause__), err.value.__cause__
    ckpts = sorted(p.name for p in (out / "killed" / "checkpoints").iterdir())
    assert ckpts and ckpts[-1] == "step_000000004", ckpts
    resumed = fit_sae(_store(out / "cache"), out=out / "killed", checkpoint_every=2, **TRAIN)
    assert resumed.resumed_from == 4 and resumed.summary["session_steps"] == 4
    ref = fit_sae(_store(out / "cache"), checkpoint_every=0, **TRAIN)
    for name, p in ref.training_sae.state_dict().items():
        torch.testing.assert_close(resumed.training_sae.state_dict()[name], p, rtol=1e-5, atol=1e-6, msg=name)
    steps = [json.loads(ln)["step"] for ln in (out / "killed" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6, 8]  # nothing lost, nothing doubled


def _harvest_dies(r, w, out, base):
    import saes.activations as A
    from saes import distributed as D

    calls = {"n": 0}
    real = A.collect

    def collect(*a, **kw):
        calls["n"] += 1
        if r == 1 and calls["n"] == 4:  # rank 1 dies after writing some shards
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*a, **kw)

    A.collect = collect
    D.harvest(_model(), _rows(), SITE, base / "partial", model_batch_size=4, shard_rows=8, progress=False)


def _harvest(r, w, out, base):
    from saes import distributed as D

    return D.harvest(_model(), _rows(), SITE, base / "partial", model_batch_size=4, shard_rows=8, progress=False)


@pytest.mark.slow
def test_interrupted_harvest_resumes_per_rank_and_refuses_another_world_size(ddp_run, tmp_path):
    from saes.cache import cache_activations
    from saes.errors import CacheError

    out, _ = ddp_run
    with pytest.raises(RuntimeError, match="rank failed"):
        run_ranks(_harvest_dies, 2, tmp_path / "a", tmp_path)
    partial = json.loads((tmp_path / "partial" / "manifest.rank001.json").read_text())
    assert not partial["done"] and partial["next_batch"] > 0 and partial["shards"]
    kept = {s["file"]: s["sha256"] for s in partial["shards"]}
    with pytest.raises(CacheError, match="partial cache being written by 2 processes"):
        cache_activations(_model(), _rows(), SITE, tmp_path / "partial", model_batch_size=4, shard_rows=8,
                          progress=False)
    man = run_ranks(_harvest, 2, tmp_path / "b", tmp_path)[0]
    assert man["complete"] and all(kept[s["file"]] == s["sha256"] for s in man["shards"] if s["file"] in kept)
    got, _ = _all_rows(tmp_path / "partial")
    ref, _ = _all_rows(out / "cache")
    assert _rowset(got) == _rowset(ref)  # nothing lost, nothing doubled
