"""Path patching: identities that pin down the three-step algorithm."""
import pytest

import hooks
from interp.metrics import get_metric, metric_batch
from interp.patching import activation_patching, path_patching

from .conftest import induction_pairs


@pytest.fixture(scope="module")
def setup(demo_lm):
    hm = hooks.load(demo_lm)
    rows = induction_pairs(8)
    clean, corrupt = [r["clean"] for r in rows], [r["corrupt"] for r in rows]
    kw = dict(answers=[r["answer"] for r in rows], distractors=[r["distractor"] for r in rows])
    both = hm.prepare(clean + corrupt)
    B = len(clean)
    c_in, x_in = {k: v[:B] for k, v in both.items()}, {k: v[B:] for k, v in both.items()}
    m = get_metric("logit_diff")
    mb = metric_batch(hm, x_in, **kw)
    base = m(hm.run(x_in).logits, mb)
    effect = lambda ivs: float((m(hm.run(x_in, ivs).logits, mb) - base).mean())  # noqa: E731
    return hm, clean, corrupt, kw, c_in, x_in, effect


def test_last_layer_sender_to_the_final_residual_is_activation_patching(setup):
    hm, clean, corrupt, kw, c_in, _, effect = setup
    df = path_patching(hm, clean, corrupt, senders=[(1, h) for h in range(4)], receivers="resid_post.1", **kw)
    for r in df.itertuples():
        assert r.effect == pytest.approx(effect([hooks.Patch("head_out.1", source=c_in, heads=int(r.head))]), abs=1e-4)


def test_direct_path_to_the_next_layer_freezes_everything_else(setup):
    hm, clean, corrupt, kw, c_in, x_in, effect = setup
    df = path_patching(hm, clean, corrupt, senders=[(0, 3), (0, 1)], receivers="resid_pre.1", freeze_mlps=True, **kw)
    for r in df.itertuples():
        want = effect([hooks.Patch("head_out.0", source=c_in, heads=int(r.head)), hooks.Patch("mlp_out.0", source=x_in)])
        assert r.effect == pytest.approx(want, abs=1e-4)
    free = path_patching(hm, clean, corrupt, senders=[(0, 3)], receivers="resid_pre.1", **kw)
    assert free.effect.iloc[0] != pytest.approx(df.effect.iloc[0], abs=1e-4)  # the MLP path matters


def test_head_receivers_and_errors(setup):
    hm, clean, corrupt, kw, *_ = setup
    df = path_patching(hm, clean, corrupt, senders="all", receivers=[f"head_out.1:{h}" for h in range(4)], **kw)
    assert len(df) == 4 and set(df.layer) == {0} and df.attrs["forwards"] == 2  # 4 senders stacked: 2 forwards
    one = path_patching(hm, clean, corrupt, senders="all", receivers=[f"head_out.1:{h}" for h in range(4)],
                        memory_budget=1, **kw)  # below one sender's estimate: one sender per forward pair
    assert one.attrs["forwards"] == 8 and one["effect"].tolist() == pytest.approx(df["effect"].tolist(), abs=1e-5)
    # receivers = every head of layer 1 plus the MLP path recomputing: the sender's whole effect on layer 1's
    # heads; the top sender is the same head that activation patching ranks first
    act = activation_patching(hm, clean, corrupt, sites="head_out.0", by="layer,head", **kw)
    assert int(df.sort_values("effect").iloc[-1]["head"]) == int(act.sort_values("effect").iloc[-1]["head"])
    with pytest.raises(hooks.SpecError, match="No sender head"):
        path_patching(hm, clean, corrupt, senders="all", receivers=["head_out.0:1"], **kw)
    with pytest.raises(hooks.SpecError, match="not upstream"):
        path_patching(hm, clean, corrupt, senders=[(1, 0)], receivers=["head_out.1:1"], **kw)
    with pytest.raises(hooks.SpecError, match="only applies to head_out"):
        path_patching(hm, clean, corrupt, senders=[(0, 1)], receivers=["resid_pre.1:2"], **kw)


def test_fast_path_patching_equals_the_reference_path(setup):
    """Step 2 starting at the senders' layer and step 3 at the first receiver (modules before them
    replayed from the base run) give the table of the full forwards; both directions."""
    hm, clean, corrupt, kw, *_ = setup
    for recv, direction, freeze in [("resid_post.1", "denoising", False), (["head_out.1:0", "head_out.1:3"], "noising", True)]:
        args = dict(senders="all", receivers=recv, direction=direction, freeze_mlps=freeze, **kw)
        fast = path_patching(hm, clean, corrupt, **args)
        ref = path_patching(hm, clean, corrupt, fast=False, **args)
        assert fast.attrs["replay_off"] == {} and fast.attrs["replayed_modules"]["head_out.1" if recv == "resid_post.1" else "head_out.0"] >= 1
        assert ref["effect"].abs().max() > 1e-2
        assert fast["effect"].tolist() == pytest.approx(ref["effect"].tolist(), abs=1e-5)
    assert not any("forward" in m.__dict__ for m in hm.model.modules())
