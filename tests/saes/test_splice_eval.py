"""Splicing (error term, clamping, latents) and evaluation, with known answers on GPT-2, ESM-2 and TL tiny models."""
import pytest
import torch

import hooks
import saes
from hooks.objectives import lm_targets

from .conftest import protein_seqs, token_rows


def identity_sae(d=32):
    """A StandardSAE with W_enc = [I, -I], W_dec = [I; -I]: relu(x) - relu(-x) = x exactly."""
    from sae_lens import StandardSAE, StandardSAEConfig

    sae = StandardSAE(StandardSAEConfig(d_in=d, d_sae=2 * d))
    eye = torch.eye(d)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], 1))
        sae.W_dec.copy_(torch.cat([eye, -eye], 0))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


def random_sae(d=32, seed=0):
    return saes.make_training_sae(saes.TrainConfig(arch="topk", latents=64, k=4, seed=seed), d)


def cases(request):
    name = request.param
    model = request.getfixturevalue(name)
    data = {"gpt2": token_rows(6, seed=20), "esm": protein_seqs(6, seed=21), "tl": token_rows(6, seed=22, vocab=50)}[name]
    return name, model, data


@pytest.fixture(params=["gpt2", "esm", "tl"])
def model_and_data(request):
    return cases(request)


@torch.no_grad()
def test_error_term_without_clamps_leaves_logits_unchanged(model_and_data):
    name, model, data = model_and_data
    clean = model.run(data).logits
    sae = random_sae()
    edit = saes.splice(sae, "resid_post.0", "all")
    assert torch.equal(model.run(data, [edit]).logits, clean)
    sp = saes.SAESplice(sae, keep_latents=True)
    res = model.run(data, [hooks.Edit("resid_post.0", "all", sp), hooks.Cache("resid_post.0", "all", layout="flat")])
    assert torch.equal(res.logits, clean)                                   # reading latents changes nothing
    acts = res.cache["resid_post.0"]
    assert sp.latents[0].shape == (acts.shape[0], 64) and torch.equal(sp.latents[0], sae.encode(acts))
    recon = model.run(data, [saes.splice(sae, "resid_post.0", "all", error_term=False)]).logits
    assert not torch.allclose(recon, clean)                                 # without the error term it does change


@torch.no_grad()
def test_clamp_sets_the_latent_only_at_the_chosen_positions(gpt2):
    rows = token_rows(3, seed=23, lo=6)
    sae = identity_sae()
    clamp = saes.splice(sae, "resid_post.0", [2, 3], clamp={5: 7.5, 37: 0.0})  # latent 5 = relu(x_5), 37 = relu(-x_5)
    clean = gpt2.run(rows, [hooks.Cache("resid_post.0", layout="padded")])
    res = gpt2.run(rows, [clamp, hooks.Cache("resid_post.0", layout="padded")])
    before, after = clean.cache["resid_post.0"], res.cache["resid_post.0"]
    at = torch.zeros(before.shape[:2], dtype=torch.bool)
    at[:, 2:4] = True                                                       # right padding, rows have >= 7 tokens
    assert torch.equal(after[at][:, 5], torch.full((at.sum(),), 7.5))
    keep = torch.ones(32, dtype=torch.bool)
    keep[5] = False
    torch.testing.assert_close(after[at][:, keep], before[at][:, keep], rtol=0, atol=1e-6)
    assert torch.equal(after[~at], before[~at])
    assert torch.equal(res.logits[:, :2], clean.logits[:, :2])              # causal: earlier positions untouched
    assert not torch.allclose(res.logits[:, 2:4], clean.logits[:, 2:4])
    scaled = gpt2.run(rows, [saes.splice(sae, "resid_post.0", [2], scale={5: 0.0, 37: 0.0}),
                             hooks.Cache("resid_post.0", layout="padded")]).cache["resid_post.0"]
    assert torch.equal(scaled[:, 2, 5], torch.zeros(3))
    with pytest.raises(saes.ConfigError, match="out of range"):
        saes.splice(sae, "resid_post.0", clamp={64: 1.0})


@pytest.mark.parametrize("name", ["gpt2", "esm"])
def test_evaluation_known_answers(name, request):
    model = request.getfixturevalue(name)
    data = token_rows(12, seed=24) if name == "gpt2" else protein_seqs(12, seed=25)
    perfect = saes.evaluate_sae(identity_sae(), model, data, site="resid_post.0", batch_size=5)
    assert perfect["fvu"] == 0 and perfect["mse"] == 0 and perfect["explained_variance"] == 1
    assert perfect["loss_sae"] == perfect["loss_clean"] and perfect["loss_recovered"] == 1
    assert perfect["l0"] == 32 and perfect["dead_fraction"] == 0
    zero = identity_sae()
    with torch.no_grad():
        zero.W_dec.zero_()
    nothing = saes.evaluate_sae(zero, model, data, site="resid_post.0", batch_size=5)
    assert nothing["loss_recovered"] == pytest.approx(0, abs=1e-9) and nothing["loss_zero"] != nothing["loss_clean"]
    assert nothing["fvu"] > 1 - 1e-9
    if name == "gpt2":
        assert perfect["objective"] == "next_token_ce" and perfect["tokens"] == sum(len(r) - 1 for r in data)
        assert perfect["loss_tokens"] == sum(len(r) - 1 for r in data)
    else:
        assert perfect["objective"] == "masked_lm_ce" and perfect["tokens"] == sum(map(len, data))
        masked = sum(int(lm_targets(model, model.prepare(data[i:i + 5]), j)[2].sum())
                     for j, i in enumerate(range(0, 12, 5)))            # seed + batch index, as evaluate_sae does
        assert perfect["loss_tokens"] == masked > 0


def test_sae_of_the_wrong_width_is_one_clear_error():
    """A width mismatch names both widths (issue 15), instead of a raw matmul RuntimeError."""
    import hooks
    from saes.errors import ActivationError
    from saes.splicing import splice
    from sae_lens import StandardSAE, StandardSAEConfig

    from tests.hooks.tiny_models import build

    hm = hooks.wrap(build("gpt2"))  # d_model 32
    sae = StandardSAE(StandardSAEConfig(d_in=48, d_sae=64))
    sp = splice(sae, site="resid_post.0")
    with pytest.raises(ActivationError, match="reads 48-dimensional activations but the site .* gives 32"):
        hm.run(torch.tensor([[3, 4, 5]]), [sp])
