"""Training through sae-lens's SAETrainer: known dictionary, SAELens round trip, exact resume, bad checkpoints."""
import json

import pytest
import torch

import saes
from saes import checkpoint as C
from saes.data import fingerprint
from saes.errors import CheckpointError, ConfigError

from .conftest import protein_seqs, token_rows

GPT2_KW = dict(arch="topk", k=4, latents=64, tokens=64 * 30, batch_size=64, buffer_size=512, model_batch_size=16,
               lr=1e-3, log_every=5)


@pytest.fixture(scope="module")
def gpt2_rows():
    return token_rows(200, seed=10)


@pytest.fixture(scope="module")
def gpt2_run(gpt2, gpt2_rows, tmp_path_factory):
    out = tmp_path_factory.mktemp("gpt2") / "sae"
    return saes.train_sae(gpt2, gpt2_rows, "resid_post.0", out=out, **GPT2_KW)


def synthetic(n=40_000, d=32, atoms=48, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    D = torch.randn(atoms, d, generator=g)
    D /= D.norm(dim=1, keepdim=True)
    idx = torch.rand(n, atoms, generator=g).argsort(1)[:, :k]
    s = torch.zeros(n, atoms).scatter_(1, idx, 0.5 + torch.rand(n, k, generator=g))
    return s @ D, D


def best_match(D, W_dec):
    W = W_dec.detach() / W_dec.detach().norm(dim=1, keepdim=True)
    return (D @ W.T).max(1).values.mean().item()


def test_topk_recovers_a_known_dictionary():
    x, D = synthetic()
    cfg = saes.TrainConfig(arch="topk", k=3, latents=64, tokens=80_000, batch_size=256, lr=3e-3, log_every=100,
                           dead_feature_window=50)  # short window: the AuxK loss revives dead latents within the run
    before = best_match(D, saes.make_training_sae(cfg, 32).W_dec)
    res = saes.fit_sae(saes.ActivationStore.from_tensor(x, batch_size=256, buffer_size=4096), cfg)
    assert before < 0.6                                  # a random dictionary does not pass the bar
    assert best_match(D, res.sae.W_dec) >= 0.9           # Gao et al. 2024-style recovery check
    assert res.log[-1]["metrics/l0"] == 3.0 and res.log[-1]["step"] == cfg.steps


def test_gpt2_sae_round_trips_through_sae_lens(gpt2_run, gpt2_rows):
    from sae_lens import SAE

    out = gpt2_run.path
    theirs = SAE.load_from_disk(str(out))
    x = torch.randn(50, 32)
    f = gpt2_run.training_sae.encode(x)
    torch.testing.assert_close(theirs.encode(x), f, rtol=1e-5, atol=1e-6)     # trained weights, folded on save
    torch.testing.assert_close(theirs.decode(f), gpt2_run.training_sae.decode(f), rtol=1e-5, atol=1e-6)
    assert torch.equal(theirs.encode(x), gpt2_run.sae.encode(x))             # load_sae == SAE.load_from_disk
    assert torch.equal(theirs.decode(theirs.encode(x)), gpt2_run.sae.decode(gpt2_run.sae.encode(x)))
    cfg = json.loads((out / "cfg.json").read_text())
    md = cfg["metadata"]
    assert cfg["architecture"] == "topk" and cfg["d_in"] == 32 and cfg["d_sae"] == 64 and cfg["k"] == 4
    assert md["hook_name"] == "resid_post.0" and md["model_name"] == "GPT2LMHeadModel"
    info = md["interp"]
    assert info["site"] == "resid_post.0" and info["positions"]["rule"] == "auto"
    assert info["dataset"] == fingerprint(gpt2_rows) and info["training_tokens"] == 64 * 30
    assert saes.site_of(theirs) == "resid_post.0" and saes.positions_of(theirs) == "auto"
    lines = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [5, 10, 15, 20, 25, 30] and all(r["metrics/l0"] == 4 for r in lines)
    assert (out / "sparsity.safetensors").exists() and not list(out.parent.glob(".*tmp*"))


def test_rerunning_a_finished_run_returns_it_without_training(gpt2, gpt2_run, gpt2_rows):
    steps = []
    again = saes.train_sae(gpt2, gpt2_rows, "resid_post.0", out=gpt2_run.path,
                           on_step=lambda s, r: steps.append(s), **GPT2_KW)
    assert steps == [] and torch.equal(again.sae.W_dec, gpt2_run.sae.W_dec)


def test_esm_sae_trains_on_residues_and_loads_in_sae_lens(esm, tmp_path):
    from sae_lens import SAE

    seqs = protein_seqs(120, seed=11)
    res = saes.train_sae(esm, seqs, "resid_post.1", out=tmp_path / "esm", arch="batchtopk", k=4, latents=48,
                         tokens=48 * 20, batch_size=48, buffer_size=480, lr=1e-3)
    theirs = SAE.load_from_disk(str(tmp_path / "esm"))
    assert json.loads((tmp_path / "esm" / "cfg.json").read_text())["architecture"] == "jumprelu"  # BatchTopK → JumpReLU
    x = torch.randn(20, 32)
    assert torch.equal(theirs.encode(x), res.sae.encode(x))
    assert saes.info_of(theirs)["positions"] == {"rule": "auto", "base": "residues"}


def test_killed_run_resumes_to_the_same_weights(gpt2, gpt2_rows, tmp_path):
    kw = dict(GPT2_KW, checkpoint_every=7)

    class Killed(Exception):
        pass

    def kill(step, row):
        if step == 17:
            raise Killed

    with pytest.raises(Killed):
        saes.train_sae(gpt2, gpt2_rows, "resid_post.0", out=tmp_path / "a", on_step=kill, **kw)
    ckpts = sorted(p.name for p in (tmp_path / "a" / "checkpoints").iterdir())
    assert ckpts == ["step_000000007", "step_000000014"] and not (tmp_path / "a" / "cfg.json").exists()
    resumed = saes.train_sae(gpt2, gpt2_rows, "resid_post.0", out=tmp_path / "a", **kw)
    clean = saes.train_sae(gpt2, gpt2_rows, "resid_post.0", out=tmp_path / "b", **kw)
    assert resumed.resumed_from == 14 and clean.resumed_from is None
    assert not (tmp_path / "a" / "checkpoints").exists()                   # finished: the saved SAE replaces them
    for name, p in clean.training_sae.state_dict().items():
        assert torch.equal(resumed.training_sae.state_dict()[name], p), name
    steps = [json.loads(ln)["step"] for ln in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [5, 10, 15, 20, 25, 30]                   # lines after the checkpoint were replaced, not doubled


def test_corrupt_partial_or_foreign_checkpoints_are_refused(gpt2, gpt2_rows, tmp_path):
    kw = dict(GPT2_KW, tokens=64 * 10, checkpoint_every=4)

    def kill(step, row):
        if step == 9:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        saes.train_sae(gpt2, gpt2_rows, "resid_post.0", out=tmp_path / "r", on_step=kill, **kw)
    last = C.latest(tmp_path / "r" / "checkpoints")
    assert last.name == "step_000000008"
    with pytest.raises(CheckpointError, match="different run.*k: 4 .checkpoint. vs 5"):
        saes.train_sae(gpt2, gpt2_rows, "resid_post.0", out=tmp_path / "r", **dict(kw, k=5))
    weights = last / "sae_weights.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 2])                                  # truncated file
    with pytest.raises(CheckpointError, match="corrupt: sae_weights.safetensors"):
        saes.train_sae(gpt2, gpt2_rows, "resid_post.0", out=tmp_path / "r", **kw)
    weights.write_bytes(good)
    (last / "manifest.json").unlink()                                            # partial checkpoint
    with pytest.raises(CheckpointError, match="partial"):
        saes.train_sae(gpt2, gpt2_rows, "resid_post.0", out=tmp_path / "r", **kw)
    res = saes.train_sae(gpt2, gpt2_rows, "resid_post.0", out=tmp_path / "r", resume=False, **kw)
    assert res.resumed_from is None and res.summary["steps"] == 10


@pytest.mark.parametrize("arch, extra", [("jumprelu", {"l0_coefficient": 0.1}), ("standard", {"l1_coefficient": 1.0})])
def test_other_architectures_train_and_load(arch, extra, tmp_path):
    from sae_lens import SAE

    x, _ = synthetic(n=4096)
    res = saes.fit_sae(saes.ActivationStore.from_tensor(x, batch_size=128, buffer_size=1024), out=tmp_path / arch,
                       arch=arch, latents=48, tokens=128 * 10, batch_size=128, **extra)
    theirs = SAE.load_from_disk(str(tmp_path / arch))
    assert theirs.cfg.architecture() == arch and torch.equal(theirs.encode(x[:8]), res.sae.encode(x[:8]))
    assert res.log[-1]["step"] == 10 and "losses/mse_loss" in res.log[-1]


def test_bad_training_settings(gpt2, gpt2_rows):
    with pytest.raises(ConfigError, match="Unknown architecture 'gated'"):
        saes.train_sae(gpt2, gpt2_rows, "resid_post.0", arch="gated")
    with pytest.raises(ConfigError, match="k must be in 1..latents"):
        saes.train_sae(gpt2, gpt2_rows, "resid_post.0", k=100, latents=64)
    with pytest.raises(ConfigError, match="at least one batch"):
        saes.train_sae(gpt2, gpt2_rows, "resid_post.0", tokens=10, batch_size=64)


def test_latest_checkpoint_skips_and_removes_a_crashed_temp_directory(tmp_path):
    """save_checkpoint builds step_N in hooks.loading.atomic_directory's temp (.step_N.xxxx); a crash
    leaves that temp, which latest() removes and never returns."""
    (tmp_path / "step_000000001").mkdir()
    (tmp_path / ".step_000000002.k3j2").mkdir()
    (tmp_path / ".step_000000002.k3j2" / "cfg.json").write_text("{}")
    assert C.latest(tmp_path) == tmp_path / "step_000000001"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_000000001"]
