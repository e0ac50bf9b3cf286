"""Metrics that see the answer, the `interp run` regression (Δloss 0 at the last position), and
the intervention-field consistency (heads=, aliases)."""
import json

import pytest
import torch
from typer.testing import CliRunner

import hooks
from hooks import Ablate, Cache, Edit, Intervention, Knockout, Patch, Steer, load_spec
from interp.metrics import get_metric, metric_batch, unaffected_by

from ..hooks.tiny_models import batch, build


def _rows_file(tmp_path, n=12):
    from .conftest import induction_pairs

    rows = [{"text": r["clean"], "answer": r["answer"], "distractor": r["distractor"]} for r in induction_pairs(n)]
    p = tmp_path / "rows.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in rows))
    return p, rows


def test_builtin_metrics_by_hand():
    hm = hooks.wrap(build("llama"))
    inp = batch("llama")
    logits = hm.run(inp).logits
    mb = metric_batch(hm, inp, answers=[5, 6, 7], distractors=[9, 9, 8], clean_logits=logits)
    last = inp["attention_mask"].sum(1) - 1
    at = logits[torch.arange(3), last]
    torch.testing.assert_close(get_metric("logit_diff")(logits, mb), at[:, [5, 6, 7]].diag() - at[:, [9, 9, 8]].diag())
    torch.testing.assert_close(get_metric("answer_logprob")(logits, mb), at.log_softmax(-1)[:, [5, 6, 7]].diag())
    nll = torch.nn.functional.cross_entropy(logits[1, : last[1]], inp["input_ids"][1, 1 : last[1] + 1])
    torch.testing.assert_close(get_metric("loss")(logits, mb)[1], nll)
    assert torch.equal(get_metric("kl")(logits, mb), torch.zeros(3))
    assert torch.equal(get_metric("top1_agreement")(logits, mb), torch.ones(3))
    assert get_metric("interp.metrics:logit_diff")(logits, mb).shape == (3,)
    with pytest.raises(hooks.SpecError, match="Unknown metric"):
        get_metric("logitdiff")
    with pytest.raises(hooks.SpecError, match="needs \\['answer', 'distractor'\\]"):
        get_metric("logit_diff")(logits, metric_batch(hm, inp))


def test_unaffected_check_knows_causal_reach():
    hm = hooks.wrap(build("llama"))
    inp = batch("llama")
    mb = metric_batch(hm, inp, answers=[5, 6, 7], distractors=[9, 9, 8])
    ivs = [Knockout(layers=0, queries="last"), Ablate("attn_out.0", positions="last"), Ablate("attn_out.0", positions=-2),
           Steer("resid_post.0", vector=torch.ones(32), apply_to="new"), Cache("resid_post.0")]
    assert unaffected_by(hm, ivs, get_metric("loss"), mb) == [0, 1, 3]
    assert unaffected_by(hm, ivs, get_metric("logit_diff"), mb) == [3]


def test_run_reports_the_answer_change_and_warns_where_loss_cannot_move(demo_lm, tmp_path):
    """The issue's case: mean-ablation of attn_out.* plus a knockout, both at the last position,
    reported Δloss +0.0000; now logit_diff moves and the loss is flagged as blind to it."""
    from interp.cli import app

    data, rows = _rows_file(tmp_path)
    ref = tmp_path / "ref.txt"
    ref.write_text("\n".join(r["text"] for r in rows))
    spec = tmp_path / "spec.yaml"
    spec.write_text("interventions:\n"
                    f"  - {{type: ablate, sites: 'attn_out.*', positions: last, how: mean, reference: {ref}}}\n"
                    "  - {type: knockout, layers: all, queries: last, keys: all, mode: zero}\n")
    r = CliRunner().invoke(app, ["run", "--model", str(demo_lm), "--data", str(data), "--spec", str(spec),
                                 "--out", str(tmp_path / "o"), "--batch-size", "5"])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "o" / "results.json").read_text())
    s = res["summary"]
    assert abs(s["delta_loss"]) < 1e-5 and s["examples"] == len(rows)
    assert s["metrics"]["logit_diff"]["delta"] < -1.0 and s["metrics"]["logit_diff"]["n"] == len(rows)
    assert s["metrics"]["kl"]["delta"] > 0
    assert any("'loss' cannot change" in w for w in s["warnings"])
    assert not any("'logit_diff'" in w for w in s["warnings"])
    assert "warning" in r.output and "loss" in r.output
    lines = (tmp_path / "o" / "examples.csv").read_text().splitlines()
    assert len(lines) == len(rows) + 1 and lines[0].startswith("example,tokens,logit_diff_clean")
    assert [d["type"] for d in res["spec"]] == ["ablate", "knockout"] and res["spec"][0]["method"] == "mean"
    r = CliRunner().invoke(app, ["run", "--model", str(demo_lm), "--data", str(data), "--spec", str(spec),
                                 "--metric", "nope"])
    assert r.exit_code == 2 and "Unknown metric" in r.output


def test_old_field_names_are_aliases_and_specs_write_the_new_ones():
    a = Ablate("attn_out.0", how="mean", reference=["x"])
    assert a.method == a.how == "mean" and a == Ablate("attn_out.0", method="mean", reference=["x"])
    k = Intervention.from_dict({"type": "knockout", "mode": "mask"})
    assert k.method == "mask" and k.to_dict()["method"] == "mask" and "mode" not in k.to_dict()
    e = load_spec([{"type": "edit", "site": "mlp_out.0", "fn": "torch:neg"}])[0]
    assert e.sites == e.site == "mlp_out.0" and e.to_dict()["sites"] == "mlp_out.0"
    with pytest.raises(hooks.SpecError, match="not both"):
        Ablate("attn_out.0", how="zero", method="zero")
    with pytest.raises(hooks.SpecError, match="heads must be"):
        Ablate("head_out.0", heads=[-1])


def test_heads_on_cache_ablate_patch_steer():
    model = build("llama")
    hm = hooks.wrap(model)
    a, b = batch("llama", seed=1), batch("llama", seed=2)
    real = a["attention_mask"].bool()
    z = hm.run(a, [Cache("head_out.1")]).cache["head_out.1"]  # B, P, H, D
    zb = hm.run(b, [Cache("head_out.1")]).cache["head_out.1"]
    got = hm.run(a, [Cache("head_out.1", heads=[2, 0])]).cache["head_out.1"]
    assert torch.equal(got, z[:, :, [0, 2]])
    pat = hm.run(a, [Cache("attn_pattern.1", heads=3)]).cache["attn_pattern.1"]
    assert pat.shape[1] == 1 and torch.equal(pat[:, 0], hm.run(a, [Cache("attn_pattern.1")]).cache["attn_pattern.1"][:, 3])

    def logits_with_z(znew):
        return hm.run(a, [Edit("head_out.1", fn=lambda acts, v=znew[real]: v)]).logits

    want = z.clone()
    want[:, :, 1] = 0
    torch.testing.assert_close(hm.run(a, [Ablate("head_out.1", heads=1)]).logits, logits_with_z(want), rtol=0, atol=0)
    want = z.clone()
    want[:, :, 2] = zb[:, :, 2]
    torch.testing.assert_close(hm.run(a, [Patch("head_out.1", source=b, heads=2)]).logits, logits_with_z(want), rtol=0, atol=0)
    src = hm.run(b, [Cache("head_out.1", heads=2)]).cache
    torch.testing.assert_close(hm.run(a, [Patch("head_out.1", source=src, heads=2)]).logits, logits_with_z(want), rtol=0, atol=0)
    v = torch.arange(8.0)
    want = z.clone()
    want[:, :, 3] += 2 * v
    torch.testing.assert_close(hm.run(a, [Steer("head_out.1", vector=v, scale=2.0, heads=3)]).logits, logits_with_z(want),
                               rtol=1e-6, atol=1e-6)
    with pytest.raises(hooks.ShapeMismatchError, match="head axis"):
        hm.run(a, [Ablate("resid_post.0", heads=1)])
    with pytest.raises(hooks.ShapeMismatchError, match="has 4 heads"):
        hm.run(a, [Ablate("head_out.0", heads=7)])


def test_csv_rows_carry_answers(tmp_path):
    from interp.rows import read_rows, split_pairs, split_rows

    p = tmp_path / "d.csv"
    p.write_text("clean,corrupt,answer,distractor\n<bos> s1 |,<bos> s2 |,s1,s2\n<bos> s3 |,<bos> s4 |,s3,s4\n")
    assert split_pairs(read_rows(p)) == (["<bos> s1 |", "<bos> s3 |"], ["<bos> s2 |", "<bos> s4 |"], ["s1", "s3"], ["s2", "s4"])
    q = tmp_path / "t.csv"
    q.write_text("text,answer\n<bos> s1 |,s1\n<bos> s3 |,s3\n")
    assert split_rows(read_rows(q)) == (["<bos> s1 |", "<bos> s3 |"], ["s1", "s3"], None)
    with pytest.raises(hooks.HookError, match="'clean' and 'corrupt'"):
        split_pairs(read_rows(q))
