"""interp zigzag / interp prune, registry extraction, block skipping, the pruning rule and a
planted-redundancy model (near-identity blocks inserted in a small trained LM)."""
import json

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from interp.cli import app
from interp.topology.cli import parse_blocks
from interp.topology.planted import planted_circles
from interp.topology.pruning import (angular_cut, angular_distances, block_influence, influence_cut, skip_blocks,
                                     zigzag_cut, zigzag_scores)

pytest.importorskip("dionysus")


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    from tests.hooks.tiny_models import save_toy_llama

    return save_toy_llama(tmp_path_factory.mktemp("m") / "toy", n_layers=3)


@pytest.fixture(scope="module")
def planted_lm(tmp_path_factory):
    from interp.topology.planted import build_planted_redundancy_lm

    path = tmp_path_factory.mktemp("planted") / "lm"
    return path, build_planted_redundancy_lm(path)


def test_parse_blocks():
    assert parse_blocks("3, 1,7-9") == [1, 3, 7, 8, 9]
    with pytest.raises(ValueError, match="block indices"):
        parse_blocks("a,b")


def test_zigzag_rule_matches_the_authors_formula():
    rng = np.random.default_rng(0)
    L = 6
    beta = rng.integers(1, 9, L)
    ps = np.minimum.outer(beta, beta) - rng.integers(0, 2, (L, L))
    ps = np.minimum(ps, ps.T)
    np.fill_diagonal(ps, beta)
    r, n0 = zigzag_scores(ps, beta)
    ref = np.array([np.mean([ps[i, j] / beta[j] for j in range(L)]) for i in range(L)])
    np.testing.assert_allclose(r, ref)
    assert n0 == 0
    assert zigzag_cut(r, 0.9) == [i for i in range(L - 1) if ref[i] >= 0.9 * ref.max()]


def test_baselines_on_known_states():
    base = torch.randn(50, 8, dtype=torch.float64)
    states = [base, base + 1.0 * torch.randn(50, 8), None, None, None]
    states[2] = states[1] * 2.0                     # block 1 only rescales: cos = 1
    states[3] = states[2] + 1e-3 * torch.randn(50, 8)
    states[4] = states[3] + 3.0 * torch.randn(50, 8)
    bi = block_influence(states)
    assert influence_cut(bi, 2) == [1, 2] and bi[1] == pytest.approx(0, abs=1e-12)
    d = angular_distances(states)
    assert angular_cut(d, 2) == [1, 2] and np.isnan(d[4, 1])


def test_zigzag_cli_on_planted_reps(tmp_path):
    from safetensors.torch import save_file

    clouds = planted_circles([2, 5, None], 7, born_at=[3])
    save_file({f"layer.{i}": torch.tensor(c, dtype=torch.float32) for i, c in enumerate(clouds)}, str(tmp_path / "r.st"))
    out = tmp_path / "o"
    r = CliRunner().invoke(app, ["zigzag", "--reps", str(tmp_path / "r.st"), "--out", str(out), "--k", "4",
                                 "--workers", "1"])
    assert r.exit_code == 0, r.output
    b = pd.read_csv(out / "betti.csv")
    assert b[b.dim == 1].sort_values("layer").betti.tolist() == [3, 3, 2, 3, 3, 2, 2]
    bars = pd.read_csv(out / "bars.csv")
    h1 = bars[(bars.dim == 1) & (bars.death_layer > bars.birth_layer)]
    assert sorted(zip(h1.birth_layer, h1.death_layer)) == [(0, 2), (0, 5), (0, 7), (3, 7)]
    ps = pd.read_csv(out / "persistence_similarity.csv")
    assert ps.query("dim == 1 and layer_a == 0 and layer_b == 4").ps.item() == 2
    plan = json.loads((out / "pruning.json").read_text())
    assert plan["n_blocks"] == 6 and set(plan["cuts"]) == {"0.9", "0.8"}
    for f in ("ps_H1.png", "betti_profile.png", "births_frequency.png", "inter_layer_persistence.png",
              "pruning_scores.png", "summary.csv", "params.json"):
        assert (out / f).stat().st_size > 0
    assert "truncation artefacts" in json.loads((out / "params.json").read_text())["caveat"]


def test_zigzag_cli_bad_input(tmp_path):
    r = CliRunner().invoke(app, ["zigzag", "--out", str(tmp_path)])
    assert r.exit_code != 0 and "--reps" in r.output
    from safetensors.torch import save_file

    save_file({"a": torch.randn(30, 3), "b": torch.randn(30, 3)}, str(tmp_path / "r.st"))
    r = CliRunner().invoke(app, ["zigzag", "--reps", str(tmp_path / "r.st"), "--out", str(tmp_path / "o"),
                                 "--subsets", "4", "--subset-size", "10"])
    assert r.exit_code != 0 and "disjoint subsets" in " ".join(r.output.split())


def test_extraction_at_the_authors_site(tiny_lm):
    import hooks
    from interp.toy_lm import sample_texts
    from interp.topology.extraction import authors_sites, extract_clouds

    hm = hooks.load(tiny_lm)
    assert authors_sites(hm) == [f"model.layers.{i}.post_attention_layernorm" for i in range(3)] + ["final"]
    texts = sample_texts(12, seed=1)
    reps = extract_clouds(hm, texts, batch_size=5, progress=False)
    assert list(reps) == authors_sites(hm) and reps["final"].shape == (12, 32)
    direct = hm.run(texts[:2], [hooks.Cache("model.layers.1.post_attention_layernorm", positions="last")])
    torch.testing.assert_close(reps["model.layers.1.post_attention_layernorm"][:2],
                               direct.cache["model.layers.1.post_attention_layernorm"], rtol=1e-5, atol=1e-6)


def test_skip_blocks_is_block_removal_and_cleans_up(tiny_lm):
    import hooks
    from interp.toy_lm import sample_texts

    hm = hooks.load(tiny_lm)
    texts = sample_texts(3, seed=2)
    with skip_blocks(hm, [1]):
        res = hm.run(texts, [hooks.Cache(["resid_pre.1", "resid_post.1"])])
    torch.testing.assert_close(res.cache["resid_post.1"], res.cache["resid_pre.1"])
    mods = [hm.resolve_sites(f"resid_post.{i}")[0].module for i in range(3)]
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in mods)
    with pytest.raises(RuntimeError, match="boom"):
        with skip_blocks(hm, [0, 2]):
            raise RuntimeError("boom")
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in mods)
    with pytest.raises(hooks.HookError, match="blocks 0..2"):
        with skip_blocks(hm, [5]):
            pass


def test_zigzag_and_prune_commands_on_a_model(tiny_lm, tmp_path):
    from interp.toy_lm import sample_texts

    data = tmp_path / "d.txt"
    data.write_text("\n".join(sample_texts(40, seed=3)))
    out = tmp_path / "z"
    r = CliRunner().invoke(app, ["zigzag", "--model", str(tiny_lm), "--data", str(data), "--out", str(out),
                                 "--k", "4", "--max-dim", "3", "--workers", "1"])
    assert r.exit_code == 0, r.output
    plan = json.loads((out / "pruning.json").read_text())
    assert plan["n_blocks"] == 3 and len(plan["block_influence"]) == 3
    assert pd.read_csv(out / "betti.csv").layer.max() == 3  # 3 blocks + final norm
    r = CliRunner().invoke(app, ["prune", "--model", str(tiny_lm), "--data", str(data), "--blocks", "1",
                                 "--random", "2", "--out", str(tmp_path / "p"),
                                 "--metric", "tests.topology.metric_fixture:top1"])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "p" / "prune.json").read_text())
    assert res["blocks"]["blocks"] == [1] and len([k for k in res if k.startswith("random")]) == 2
    assert 0 <= res["full"]["metric"] <= 1 and res["metric_name"].endswith(":top1")
    r = CliRunner().invoke(app, ["prune", "--model", str(tiny_lm), "--data", str(data), "--blocks", "1",
                                 "--metric", "tests.topology.metric_fixture:nope"])
    assert r.exit_code != 0 and "nope" in r.output
    r = CliRunner().invoke(app, ["prune", "--model", str(tiny_lm), "--data", str(data), "--plan",
                                 str(out / "pruning.json")])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["prune", "--model", str(tiny_lm), "--data", str(data), "--blocks", "7"])
    assert r.exit_code != 0 and "blocks 0..2" in " ".join(r.output.split())


@pytest.mark.slow
def test_planted_redundancy_is_found_and_cheap_to_remove(planted_lm):
    import hooks
    from interp.toy_lm import sample_texts
    from interp.topology.extraction import extract_clouds, residual_sites
    from interp.topology.pipeline import run_zigzag
    from interp.topology.pruning import pruned_loss, pruning_plan, random_cuts

    path, ident = planted_lm
    hm = hooks.load(path)
    texts = sample_texts(300, seed=7)
    clouds = extract_clouds(hm, texts, progress=False)
    hidden = list(extract_clouds(hm, texts, residual_sites(hm), progress=False).values())
    res = run_zigzag(clouds, k=4, max_dim=3, workers=1)
    plan = pruning_plan(res.ps[:, 1], res.betti[:, 1], hidden)
    assert plan["cuts"]["0.9"]["zigzag"] == ident
    assert plan["cuts"]["0.9"]["angular_distance"] == ident and plan["cuts"]["0.9"]["block_influence"] == ident
    controls = [c for c in random_cuts(hm.n_layers, len(ident), 6, seed=1) if c != ident]
    loss = pruned_loss(hm, sample_texts(48, seed=99), {"planted": ident, **{f"r{i}": c for i, c in enumerate(controls)}})
    worst_control = min(loss[f"r{i}"]["delta_loss"] for i in range(len(controls)))
    assert abs(loss["planted"]["delta_loss"]) < 1e-3 < worst_control


def test_prompts_tokenised_as_the_authors(tiny_lm):
    import hooks
    from interp.topology.extraction import extract_clouds, tokenize_prompts

    hm = hooks.load(tiny_lm)
    texts = ["s1 s2 s3 s4 s5", "s6 s7"]
    ids, n_trunc = tokenize_prompts(hm, texts, max_tokens=3)
    assert n_trunc == 1 and [len(x) for x in ids] == [3, 2]
    assert hm.tokenizer.bos_token_id not in ids[0]  # no special tokens
    info = {}
    reps = extract_clouds(hm, texts, "resid_post.1", max_tokens=3, progress=False, info=info)
    direct = hm.run([ids[0]], [hooks.Cache("resid_post.1", positions="last")]).cache["resid_post.1"]
    torch.testing.assert_close(reps["resid_post.1"][:1], direct, rtol=1e-5, atol=1e-6)
    assert info == {"n_truncated": 1}
