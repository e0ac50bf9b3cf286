"""Clean-vs-intervened evaluation: masked-LM objective on ESM, next-token on causal LMs."""
import torch

import hooks
from hooks.objectives import lm_targets
from interp.evaluate import compare
from interp.metrics import mlm_targets

from .hooks.tiny_models import build


def _esm_data():
    g = torch.Generator().manual_seed(0)
    return [[0, *torch.randint(4, 24, (n,), generator=g).tolist(), 2] for n in (12, 7, 9, 15)]


def test_masked_lm_targets_only_touch_residues_and_are_seeded():
    hm = hooks.wrap(build("esm"))
    inputs = hm.prepare(_esm_data())
    a, targets, where = lm_targets(hm, inputs, seed=3)
    b, _, where2 = lm_targets(hm, inputs, seed=3)
    assert torch.equal(where, where2) and torch.equal(a["input_ids"], b["input_ids"])
    ids = inputs["input_ids"]
    assert not where[:, 0].any() and not (where & (ids == 2)).any() and not (where & (ids == 1)).any()
    assert (where.sum(1) >= 1).all()
    assert (a["input_ids"][where] == 32).all() and torch.equal(targets[where], ids[where])


def test_compare_esm_masked_lm_and_noop_vs_ablation():
    hm = hooks.wrap(build("esm"))
    data = _esm_data()
    noop = compare(hm, data, [hooks.Steer("resid_post.0", vector=torch.ones(32), scale=0.0)], batch_size=2, progress=False)
    s = noop["summary"]
    assert s["objective"] == "masked_lm_ce" and s["delta_loss"] == 0 and s["top1_changed"] == 0
    expected = sum(int(mlm_targets(hm, hm.prepare(data[i:i + 2]), 0)[2].sum()) for i in (0, 2))  # per-row draws
    assert s["tokens"] == expected
    abl = compare(hm, data, [hooks.Ablate("mlp_out.*")], batch_size=2, progress=False)["summary"]
    assert abl["delta_loss"] != 0 and abl["clean_loss"] == s["clean_loss"]
