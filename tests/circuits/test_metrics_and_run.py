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
    # the text column: hooks.data's one picking rule ("clean" last), with its errors naming the fix
    assert split_rows([{"clean": "a", "corrupt": "b", "prompt": "c"}])[0] == ["c"]
    assert split_rows([{"clean": "a", "corrupt": "b"}])[0] == ["a"]
    assert split_rows([{"q": "a", "text": "b"}], text_key="q")[0] == ["a"]
    with pytest.raises(hooks.HookError, match=r"No text column found .*'clean'.*--text-key.*Columns: \['answer', 'q'\]"):
        split_rows([{"q": "a", "answer": "b"}])
    with pytest.raises(hooks.HookError, match=r"Column 'zz' not found; available: \['answer', 'q'\].*--text-key"):
        split_rows([{"q": "a", "answer": "b"}], text_key="zz")


# -- masked LMs: the loss is the masked-LM loss --------------------------------------------------
BERT_WORDS = "the cat sat on mat a dog ran to park big red small blue".split()


def _tiny_bert(tmp_path, with_tokenizer=True):
    """BertForMaskedLM from a config, with a BertTokenizer over a local vocabulary file."""
    import transformers as T

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + BERT_WORDS
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    torch.manual_seed(0)
    cfg = T.BertConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                       vocab_size=len(vocab), max_position_embeddings=64)
    model = T.BertForMaskedLM(cfg).eval()
    return hooks.wrap(model, T.BertTokenizer(str(tmp_path / "vocab.txt")) if with_tokenizer else None)


def _hand_mlm_loss(logits, targets, where):
    return torch.stack([torch.nn.functional.cross_entropy(logits[b, where[b]], targets[b, where[b]])
                        for b in range(logits.shape[0])])


def test_masked_lm_loss_is_scored_at_seeded_masked_tokens_by_hand(tmp_path):
    from interp.evaluate import compare
    from interp.metrics import MLM_RATE, mlm_targets

    bert = _tiny_bert(tmp_path)
    texts = ["the cat sat on the mat", "a dog ran to the big red park the small blue mat"]
    inp = bert.prepare(texts)
    ids, am = inp["input_ids"], inp["attention_mask"].bool()
    mb = metric_batch(bert, inp, seed=0)
    where, run = mb["where"], mb["run_inputs"]["input_ids"]
    special = (ids == bert.tokenizer.cls_token_id) | (ids == bert.tokenizer.sep_token_id) | ~am
    assert MLM_RATE == 0.15 and not (where & special).any() and where.any(1).all()
    assert torch.equal(run, ids.masked_fill(where, bert.tokenizer.mask_token_id))
    assert torch.equal(metric_batch(bert, inp, seed=0)["where"], where)  # seeded: the same masks again
    assert not torch.equal(metric_batch(bert, inp, seed=1)["where"], where)
    alone = metric_batch(bert, bert.prepare(texts[:1]), seed=0)["where"][0]  # any batch, any padding
    assert torch.equal(alone, where[0, : len(alone)])
    n0 = int(am[0].sum())
    left = {k: torch.stack([inp[k][0].roll(len(am[0]) - n0), inp[k][1]]) for k in ("input_ids", "attention_mask")}
    assert torch.equal(metric_batch(bert, left, seed=0)["where"], torch.stack([where[0].roll(len(am[0]) - n0), where[1]]))
    g = torch.Generator().manual_seed(5)  # the rate: 15% of 300 rows x 30 real tokens, ±3 standard errors
    many = torch.randint(5, 5 + len(BERT_WORDS), (300, 32), generator=g)
    many[:, 0], many[:, -1] = bert.tokenizer.cls_token_id, bert.tokenizer.sep_token_id
    frac = float(metric_batch(bert, {"input_ids": many, "attention_mask": torch.ones_like(many)})["where"].float().mean()) * 32 / 30
    assert abs(frac - 0.15) < 3 * (0.15 * 0.85 / 9000) ** 0.5
    logits = bert.run(run).logits
    got = get_metric("loss")(logits, mb)
    torch.testing.assert_close(got, _hand_mlm_loss(logits, ids, where))
    # what used to be reported (next-token loss on the unmasked ids) is not this
    nxt = bert.run(inp).logits
    old = torch.stack([torch.nn.functional.cross_entropy(nxt[b, : int(am[b].sum()) - 1], ids[b, 1 : int(am[b].sum())])
                       for b in range(2)])
    assert (old - got).abs().min() > 1e-3
    assert mlm_targets(bert, inp, seed=0)[2].equal(where)

    # interp run: the summary loss is this masked-LM loss; an edit of the last layer's output at a
    # masked position moves it, at an unmasked real position (bidirectional, but nothing after the
    # last block mixes positions) it cannot
    one = [{"text": texts[1]}]
    w1 = metric_batch(bert, bert.prepare([texts[1]]), seed=0)["where"][0]
    pm = int(w1.nonzero()[0])
    pu = int((~w1 & ~special[1]).nonzero()[0])
    at = lambda p: compare(bert, one, [Ablate("resid_post.1", positions=p, how="zero")], metrics=["loss"], progress=False)  # noqa: E731
    s_m, s_u = at(pm)["summary"], at(pu)["summary"]
    assert s_m["objective"] == "masked_lm_ce" and s_m["tokens"] == int(w1.sum())
    assert s_m["clean_loss"] == pytest.approx(float(got[1]), abs=1e-5)
    assert abs(s_m["delta_loss"]) > 1e-3 and s_u["delta_loss"] == 0.0
    z = bert.run(run[1:], [Ablate("resid_post.1", positions=pm, how="zero")]).logits
    assert s_m["intervened_loss"] == pytest.approx(float(_hand_mlm_loss(z, ids[1:], where[1:])[0]), abs=1e-5)


def test_masked_lm_sweeps_mask_clean_corrupt_and_patched_runs_alike(tmp_path):
    from interp.patching import activation_patching

    bert = _tiny_bert(tmp_path)
    clean = ["the cat sat on the mat", "a dog ran to the big red park"]
    corrupt = ["the dog sat on the mat", "a cat ran to the big red park"]
    df = activation_patching(bert, clean, corrupt, metric="loss", sites="resid_pre", by="layer")
    both = bert.prepare(clean + corrupt)
    c_ids, x_ids = both["input_ids"][:2], both["input_ids"][2:]
    where = metric_batch(bert, {k: v[2:] for k, v in both.items()})["where"]  # drawn on the base (corrupt) run
    mask = bert.tokenizer.mask_token_id

    def hand(ids):
        logits = bert.run({"input_ids": ids.masked_fill(where, mask), "attention_mask": both["attention_mask"][:2]}).logits
        return float(_hand_mlm_loss(logits, x_ids, where).mean())

    assert df.attrs["metric_clean"] == pytest.approx(hand(c_ids), abs=1e-5)
    assert df.attrs["metric_corrupt"] == pytest.approx(hand(x_ids), abs=1e-5)
    # patching the whole input stream gives the (masked) clean run: the patched runs carry the same masks
    assert df["effect"].iloc[0] == pytest.approx(hand(c_ids) - hand(x_ids), abs=1e-5)

    esm = hooks.wrap(build("esm"))  # ESM: residues only, with the config's mask token
    inp = batch("esm")
    mb = metric_batch(esm, inp)
    assert not (mb["where"] & ~esm.spans(inp["input_ids"], inp["attention_mask"].bool())["residues"]).any()
    assert (mb["run_inputs"]["input_ids"][mb["where"]] == 32).all() and mb["where"].any(1).all()


def test_masked_lm_without_a_mask_token_is_one_clear_error(tmp_path):
    from interp.evaluate import compare
    from interp.patching import activation_patching

    bert = _tiny_bert(tmp_path, with_tokenizer=False)
    assert getattr(bert.model.config, "mask_token_id", None) is None
    ids = [[2, 5, 6, 7, 3], [2, 8, 9, 10, 3]]
    inp = {"input_ids": torch.tensor(ids), "attention_mask": torch.ones(2, 5, dtype=torch.long)}
    mb = metric_batch(bert, inp, clean_logits=bert.run(inp).logits)
    assert get_metric("kl")(bert.run(inp).logits, mb).shape == (2,)  # metrics that need no mask still work
    with pytest.raises(hooks.SpecError, match="needs a mask token.*tokenizer.*config.mask_token_id"):
        get_metric("loss")(bert.run(inp).logits, mb)
    with pytest.raises(hooks.SpecError, match="needs a mask token"):
        activation_patching(bert, ids, [[2, 5, 6, 8, 3], [2, 8, 9, 7, 3]], metric="loss", sites="resid_pre", by="layer")
    with pytest.raises(hooks.SpecError, match="needs a mask token"):
        compare(bert, [{"text": ids[0]}], [Ablate("attn_out.0")], metrics=["kl"], progress=False)
    bert.model.config.mask_token_id = 4  # the fix the message names
    mb = metric_batch(bert, inp)
    assert (mb["run_inputs"]["input_ids"][mb["where"]] == 4).all()
