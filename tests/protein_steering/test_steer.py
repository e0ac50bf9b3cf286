"""Steering: SAE/model checks, error-term-preserving splices, windows, paired arms, files."""
import json

import pytest

import saes
from steering.protein.generate import GenerationConfig, encode_templates
from steering.protein.steer import SteeringError, check_sae, steer_proteins, steering_interventions


def read_fasta(path):
    out, cur = [], None
    for line in path.read_text().splitlines():
        if line.startswith(">"):
            cur = [line[1:], ""]
            out.append(cur)
        else:
            cur[1] += line
    return out


def test_check_sae_accepts_its_model_and_refuses_others(tiny_model, tiny_sae_dir, tmp_path):
    import shutil

    import hooks
    from transformers import EsmForMaskedLM

    from steering.protein.alphabet import esm_tokenizer
    from steering.protein.toy_model import load_toy_model

    sae = saes.load_sae(tiny_sae_dir)
    assert check_sae(tiny_model, sae) == "resid_post.1"
    with pytest.raises(SteeringError, match="trained on 'resid_post.1', not 'resid_post.0'"):
        check_sae(tiny_model, sae, "resid_post.0")
    cfg = tiny_model.model.config.to_dict()
    cfg.update(hidden_size=48, intermediate_size=96)
    from transformers import EsmConfig

    wider = hooks.wrap(EsmForMaskedLM(EsmConfig(**cfg)), esm_tokenizer())
    with pytest.raises(SteeringError, match="32-dim activations but resid_post.1 of this model is 48-dim"):
        check_sae(wider, sae)
    copy = tmp_path / "copy"
    shutil.copytree(tiny_model.model.config._name_or_path, copy)
    other = load_toy_model(copy)
    with pytest.raises(SteeringError, match="trained on another model .*name"):
        check_sae(other, sae)
    assert check_sae(other, sae, allow_other_model=True) == "resid_post.1"
    assert issubclass(SteeringError, ValueError)


def test_window_selects_exactly_those_residues(tiny_sae_dir):
    sae = saes.load_sae(tiny_sae_dir)
    build = steering_interventions(sae, {3: 5.0}, window=(2, 5))
    ids, am = encode_templates(["MKTAYIA", "MK_"])
    (edit,) = build(ids, am)
    # tokens: <cls> residues <eos>; residue i is token i + 1; row 2 has only 3 residues
    assert edit.positions.tolist() == [[False, False, False, True, True, True, False, False, False],
                                       [False, False, False, True, False, False, False, False, False]]
    assert edit.fn.clamp == {3: 5.0} and edit.site == "resid_post.1"
    with pytest.raises(SteeringError):
        steering_interventions(sae, {3: 5.0}, mode="push")
    with pytest.raises(SteeringError):
        steering_interventions(sae, {3: 5.0}, window=(4, 4))
    with pytest.raises(ValueError, match="out of range"):
        steering_interventions(sae, {999: 1.0})


def test_identity_scale_changes_nothing_and_a_clamp_does(tiny_model, tiny_sae_dir, tmp_path):
    sae = saes.load_sae(tiny_sae_dir)
    cfg = GenerationConfig(per_step=2, batch_size=4)
    same = steer_proteins(tiny_model, sae, {5: 1.0}, mode="scale", n=6, length=14, seed=1, config=cfg, pppl_n=0)
    seqs = {arm: [r["sequence"] for r in same["sequences"][arm]] for arm in ("steered", "unsteered")}
    assert seqs["steered"] == seqs["unsteered"]
    assert same["test"]["steered_rate"] == same["test"]["baseline_rate"]
    lat = int(sae.W_dec.norm(dim=1).argmax())
    res = steer_proteins(tiny_model, sae, {lat: 200.0}, n=6, length=14, seed=1, config=cfg, pppl_n=2,
                         out=tmp_path / "steer")
    steered = [r["sequence"] for r in res["sequences"]["steered"]]
    plain = [r["sequence"] for r in res["sequences"]["unsteered"]]
    assert plain == [r["sequence"] for r in same["sequences"]["unsteered"]]      # same seed, same baseline
    assert steered != plain
    fa = read_fasta(tmp_path / "steer" / "steered.fasta")
    assert [s for _, s in fa] == steered and fa[0][0].startswith("steered_0000 motifs=")
    assert [s for _, s in read_fasta(tmp_path / "steer" / "unsteered.fasta")] == plain
    js = json.loads((tmp_path / "steer" / "summary.json").read_text())
    assert js["latents"] == {str(lat): 200.0} and js["n"] == 6 and js["steered"]["pppl_n"] == 2
    assert set(js["test"]) >= {"steered_rate", "baseline_rate", "p_value", "p_two_sided", "odds_ratio"}
    assert "sequences" not in js and not list((tmp_path / "steer").glob(".*tmp*"))
