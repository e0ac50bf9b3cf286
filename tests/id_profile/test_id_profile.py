"""interp.id_profile: the defaults are Valeriani et al. 2023's protocol (their code), on hand-made cases."""
import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def hm():
    import hooks
    from transformers import LlamaConfig, LlamaForCausalLM

    from interp.toy_lm import make_tokenizer

    torch.manual_seed(0)
    tok = make_tokenizer()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, pad_token_id=0)
    return hooks.wrap(LlamaForCausalLM(cfg).eval(), tok)


def test_defaults_are_the_papers():
    import inspect

    from interp.id_profile import PAPER, extract_layer_reps, id_profile

    assert PAPER == {"site": "input_norm", "pool": "mean", "fraction": 0.98, "decimation": 1 / 32}
    sig = inspect.signature(extract_layer_reps).parameters
    assert sig["site"].default == "input_norm" and sig["pool"].default == "mean"
    sig = inspect.signature(id_profile).parameters
    assert sig["fraction"].default == 0.98 and sig["decimation"].default == 1 / 32


def test_mean_pooled_input_norm_outputs(hm):
    """Hand-computed: each example's row is the mean over its real tokens of the block's input-norm
    output (src/model.py: reduce_mean(x_norm, axis=1)); the last entry is the final norm."""
    import hooks

    from interp.id_profile import extract_layer_reps
    from interp.toy_lm import sample_texts

    texts = sample_texts(5, seed=1)
    texts[1] = texts[1][: len(texts[1]) // 2]              # different lengths: padding must not enter the mean
    reps = extract_layer_reps(hm, texts, batch_size=4, progress=False)
    assert list(reps) == ["model.layers.0.input_layernorm", "model.layers.1.input_layernorm", "final"]
    for i, t in enumerate(texts):
        full = hm.run([t], [hooks.Cache(list(reps), positions="all", layout="padded")])
        for name in reps:
            torch.testing.assert_close(reps[name][i], full.cache[name][0].float().mean(0), rtol=1e-4, atol=1e-5)
    last = extract_layer_reps(hm, texts, pool="last", batch_size=4, progress=False)
    direct = hm.run(texts[:2], [hooks.Cache("final", positions="last")]).cache["final"]
    torch.testing.assert_close(last["final"][:2], direct.float(), rtol=1e-4, atol=1e-5)


def test_twonn_on_random_subsets_averaged_matches_a_hand_loop():
    """fraction 0.98 of the ratios, 32 random subsets of N/32 points, mean and std/sqrt(n_iter)."""
    from interp.id_profile import id_profile

    def paper_twonn(mus, fraction=0.98):
        """id_overlap_helpers._compute_id_2NN (algorithm "base"): least squares of y = m x through 0."""
        N = len(mus)
        n_eff = int(N * fraction)
        x = np.sort(np.log(mus))[:n_eff]
        y = -np.log(1 - np.arange(1, n_eff + 1) / N)
        return float(x @ y / (x @ x))

    rng = np.random.default_rng(0)
    X = rng.normal(size=(640, 4)) @ rng.normal(size=(4, 30))            # a 4-dimensional plane in 30-d
    df = id_profile({"a": torch.from_numpy(X)}, seed=3)
    row = df.iloc[0]
    assert row["n_subset"] == 20 and row["n_iter"] == 32
    sub_rng = np.random.default_rng(3)
    ids = []
    for _ in range(32):
        idx = sub_rng.choice(640, size=20, replace=False)
        d = np.linalg.norm(X[idx, None] - X[None, idx], axis=-1)
        np.fill_diagonal(d, np.inf)
        r = np.sort(d, 1)[:, :2]
        ids.append(paper_twonn(r[:, 1] / r[:, 0]))
    assert row["id"] == pytest.approx(np.mean(ids), rel=1e-6)
    assert row["id_err"] == pytest.approx(np.std(ids) / np.sqrt(32), rel=1e-6)
    assert 2.5 < row["id"] < 6


def test_too_few_examples_for_the_decimation_is_one_clear_error():
    from interp.id_profile import id_profile

    with pytest.raises(ValueError, match="--decimation 1"):
        id_profile({"a": torch.randn(100, 3)})
    df = id_profile({"a": torch.randn(100, 3)}, decimation=1, fraction=0.9)
    assert df["id_err"].iloc[0] == 0 and df["n_iter"].iloc[0] == 1
