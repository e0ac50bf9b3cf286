"""AtP* corrections (Kramár et al. 2024, arXiv:2403.00745) against known answers: GradDrop
(§3.1.2) on a 2-layer toy with planted cancellation, where plain attribution patching reports 0
for a node whose real patching effect is large and GradDrop recovers it; the QK fix (§3.1.1) on
attention-score nodes, exact where everything after the pattern is linear; agreement() on a
random model."""
import math

import pytest
import torch

import hooks
from interp.patching import activation_patching, agreement, attribution_patching

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _cancelling_toy():
    """One token, attention writes nothing (W_O = 0), metric = logit 1 - logit 2 = e1·resid_final.

    * clean token 1 embeds to 2·e0, corrupt token 2 to 0;
    * mlp_out.0 = relu(e0·r)·e1: 2·e1 on clean, 0 on corrupt;
    * mlp_out.1 = f(y)·e1 with y = e1·r and f(y) = -relu(y + 1/2) + relu(y - 1/2): slope -1 at the
      corrupt point y = 0, flat (saturated) at the clean point y = 2.

    Denoising (clean into corrupt), node mlp_out.0: real effect = [2 + f(2)] - [0 + f(0)] = 1.5;
    AtP = Δ·(direct 1 + indirect f'(0) = -1) = 0; GradDrop: dropping layer 1's write leaves the
    direct path, |2·1| = 2; dropping layer 0 (the node's own write) gives 0; sum / (L-1) = 2.
    Node mlp_out.1: Δ = f(2) - f(0) = -0.5, gradient 1, so AtP = real = -0.5; GradDrop = |−0.5| = 0.5.
    """
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=2, d_model=4, n_ctx=16, d_head=2, n_heads=2, d_mlp=4, d_vocab=16,
                                  act_fn="relu", normalization_type=None, seed=0)
    tl = HookedTransformer(cfg).eval()
    with torch.no_grad():
        for p in tl.parameters():
            p.zero_()
        tl.W_E[1, 0] = 2.0
        m0, m1 = tl.blocks[0].mlp, tl.blocks[1].mlp
        m0.W_in[0, 0], m0.W_out[0, 1] = 1.0, 1.0
        m1.W_in[1, 0], m1.b_in[0], m1.W_out[0, 1] = 1.0, 0.5, -1.0
        m1.W_in[1, 1], m1.b_in[1], m1.W_out[1, 1] = 1.0, -0.5, 1.0
        tl.W_U[1, 1] = 1.0
    return hooks.wrap(tl)


def test_graddrop_recovers_a_planted_cancellation_that_atp_misses():
    hm = _cancelling_toy()
    kw = dict(sites="mlp_out", by="layer", answers=[1, 1], distractors=[2, 2])
    clean, corrupt = [[1], [1]], [[2], [2]]
    real = activation_patching(hm, clean, corrupt, **kw)
    atp = attribution_patching(hm, clean, corrupt, **kw)
    gd = attribution_patching(hm, clean, corrupt, method="graddrop", **kw)
    assert real.attrs["metric_clean"] == pytest.approx(1.0) and real.attrs["metric_corrupt"] == pytest.approx(-0.5)
    assert real["effect"].tolist() == pytest.approx([1.5, -0.5], abs=1e-6)
    assert atp["effect"].tolist() == pytest.approx([0.0, -0.5], abs=1e-6)  # the cancellation: AtP misses layer 0
    assert gd["effect"].tolist() == pytest.approx([2.0, 0.5], abs=1e-6)
    assert gd.attrs["signed"] is False and gd.attrs["backwards"] == 2 and gd.attrs["method"] == "attribution+graddrop"
    top = lambda df: df.loc[df["effect"].abs().idxmax(), "layer"]  # noqa: E731
    assert top(real) == top(gd) == 0 != top(atp)
    ag = agreement(real, gd, k=1)
    assert ag["compared"] == "|effect|" and ag["top_k_overlap"] == 1.0
    assert agreement(real, atp, k=1)["top_k_overlap"] == 0.0
    # "atp*" is the same estimator (the QK fix does not apply to these nodes); normalize is refused
    assert attribution_patching(hm, clean, corrupt, method="atp*", **kw)["effect"].tolist() == gd["effect"].tolist()
    with pytest.raises(hooks.SpecError, match="unsigned"):
        attribution_patching(hm, clean, corrupt, method="graddrop", normalize=True, **kw)
    with pytest.raises(hooks.SpecError, match="'atp'"):
        attribution_patching(hm, clean, corrupt, method="qkv", **kw)


def test_graddrop_and_atp_agreement_on_a_random_model_is_reported():
    """No planted structure: only that both estimates run over the same cells and agreement() gives
    values in range (neither is asserted to beat the other)."""
    from ..hooks.tiny_models import build

    hm = hooks.wrap(build("gpt2"))
    g = torch.Generator().manual_seed(0)
    clean = torch.randint(3, 64, (4, 6), generator=g)
    corrupt = clean.clone()
    corrupt[:, 2] = torch.randint(3, 64, (4,), generator=g)
    kw = dict(sites="head_out", by="layer,head", answers=[5, 6, 7, 8], distractors=[9, 9, 9, 9])
    real = activation_patching(hm, clean.tolist(), corrupt.tolist(), **kw)
    for method in ("atp", "graddrop"):
        est = attribution_patching(hm, clean.tolist(), corrupt.tolist(), method=method, **kw)
        assert list(est.columns) == list(real.columns) and len(est) == len(real) == 8
        ag = agreement(real, est, k=3)
        assert ag["cells"] == 8 and 0.0 <= ag["top_k_overlap"] <= 1.0
        assert all(-1.0 <= ag[k] <= 1.0 for k in ("pearson", "spearman") if not math.isnan(ag[k]))
        if method == "graddrop":
            assert (est["effect"] >= 0).all() and ag["compared"] == "|effect|"


def test_sweep_command_runs_graddrop(demo_lm, pairs_file, tmp_path):
    import json

    import pandas as pd
    from typer.testing import CliRunner

    from interp.cli import app

    from .conftest import induction_pairs
    from .test_patching import _split

    out = tmp_path / "gd"
    r = CliRunner().invoke(app, ["sweep", "--model", str(demo_lm), "--data", str(pairs_file), "--sites", "head_out",
                                 "--by", "layer,head", "--method", "atp*", "--out", str(out)])
    assert r.exit_code == 0, r.output
    df = pd.read_csv(out / "sweep.csv")
    clean, corrupt, ans, dis = _split(induction_pairs())
    want = attribution_patching(hooks.load(demo_lm), clean, corrupt, sites="head_out", by="layer,head", answers=ans,
                                distractors=dis, method="graddrop")
    assert df["effect"].tolist() == pytest.approx(want["effect"].tolist(), abs=1e-5) and (df["effect"] >= 0).all()
    meta = json.loads((out / "sweep.json").read_text())
    assert meta["method"] == "attribution+graddrop" and meta["signed"] is False
    r = CliRunner().invoke(app, ["sweep", "--model", str(demo_lm), "--data", str(pairs_file), "--method", "atp*",
                                 "--normalize", "--out", str(tmp_path / "bad")])
    assert r.exit_code == 2 and "unsigned" in r.output


def _saturated_attention_tl(n_layers):
    """Attention-only, no norms, queries scaled ×8 so the softmax saturates; with one layer the
    metric is affine in the attention pattern (logits = (embed + A·V·W_O)·W_U)."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    torch.manual_seed(0)
    cfg = HookedTransformerConfig(n_layers=n_layers, d_model=16, n_ctx=16, d_head=4, n_heads=4, d_vocab=20,
                                  attn_only=True, normalization_type=None, act_fn=None, seed=0, initializer_range=0.5)
    tl = HookedTransformer(cfg).eval()
    with torch.no_grad():
        for b in tl.blocks:
            b.attn.W_Q.mul_(8.0)
    return hooks.wrap(tl)


def test_qk_fix_is_exact_on_attention_scores_where_plain_atp_linearises_a_saturated_softmax():
    g = torch.Generator().manual_seed(1)
    clean = torch.randint(0, 20, (5, 6), generator=g)
    corrupt = clean.clone()
    corrupt[:, 2] = torch.randint(0, 20, (5,), generator=g)
    clean, corrupt = clean.tolist(), corrupt.tolist()
    kw = dict(sites="attn_scores", answers=[3] * 5, distractors=[4] * 5)
    one = _saturated_attention_tl(1)
    for by in ("layer,head", "layer,head,position"):
        real = activation_patching(one, clean, corrupt, by=by, **kw)
        qk = attribution_patching(one, clean, corrupt, by=by, method="qk", **kw)
        atp = attribution_patching(one, clean, corrupt, by=by, **kw)
        assert real["effect"].abs().max() > 0.4 and qk.attrs["method"] == "attribution+qk"
        assert agreement(real, qk)["max_abs_diff"] < 1e-5, by  # softmax exact, the rest linear: exact
        assert agreement(real, atp)["max_abs_diff"] > 0.4, by  # the linearised saturated softmax: ~0 (0.003)
        assert atp["effect"].notna().all()  # masked (-inf) scores contribute 0, not NaN
    # two layers: exact for the last layer's scores (linear after its pattern), not for layer 0's,
    # whose pattern feeds layer 1's queries and keys
    two = _saturated_attention_tl(2)
    real = activation_patching(two, clean, corrupt, by="layer,head", **kw)
    qk = attribution_patching(two, clean, corrupt, by="layer,head", method="qk", **kw)
    diff = (real["effect"] - qk["effect"]).abs()
    assert diff[real["layer"] == 1].max() < 1e-5 and diff[real["layer"] == 0].max() > 1e-2
    star = attribution_patching(two, clean, corrupt, by="layer,head", method="atp*", **kw)
    assert star.attrs["method"] == "attribution+qk+graddrop" and (star["effect"] >= 0).all()
