"""saes.annotation_stats: identical numbers to a per-latent scipy/numpy loop; a planted latent wins."""
import numpy as np
import pytest
import torch

from saes.annotation_stats import (AnnotationStatsError, DomainIndex, StatBatch, annotation_stats,
                                   benjamini_hochberg, best_pairs, fisher_greater, hypergeom_sf, latent_max_of,
                                   runs_as_domains)

from .reference_stats import bh_loop, reference_stats

CONCEPTS = ["A", "B", "C"]


def random_world(seed=0, n_prot=24, F=12):
    """Proteins of 5-20 tokens; each concept planted as 0-2 runs; sparse non-negative activations."""
    rng = np.random.default_rng(seed)
    lens = rng.integers(5, 21, n_prot)
    N, C = int(lens.sum()), len(CONCEPTS)
    labels = np.zeros((N, C), bool)
    prot = np.repeat(np.arange(n_prot), lens)
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
    for p in range(n_prot):
        for c in range(C):
            for _ in range(rng.integers(0, 3)):
                a = rng.integers(0, lens[p])
                b = min(lens[p], a + rng.integers(1, 6))
                labels[starts[p] + a:starts[p] + b, c] = True
    acts = rng.exponential(1.0, (N, F)) * (rng.random((N, F)) < 0.35)
    acts[:, 3] = labels[:, 1] * rng.uniform(0.5, 2.0, N)             # a latent tied to concept B
    acts = acts.astype(np.float32)
    return acts, labels, prot, lens


def run_domains(labels, prot):
    """Per concept, the row arrays of each maximal run (the reference's own, loop-based, version)."""
    out = []
    for c in range(labels.shape[1]):
        runs, cur = [], []
        for i in range(len(labels)):
            if labels[i, c] and cur and prot[i] == prot[cur[-1]]:
                cur.append(i)
            else:
                if cur:
                    runs.append(np.array(cur))
                cur = [i] if labels[i, c] else []
        if cur:
            runs.append(np.array(cur))
        out.append(runs)
    return out


def batches_of(acts, labels, prot, lens, per=5, sparse=False):
    edges = np.concatenate([[0], np.cumsum(lens)])[::per].tolist() + [len(acts)]
    out = []
    for a, b in zip(edges[:-1], edges[1:]):
        if a == b:
            continue
        x = torch.from_numpy(acts[a:b])
        out.append(StatBatch(x.to_sparse() if sparse else x, torch.from_numpy(labels[a:b]),
                             protein=torch.from_numpy(prot[a:b])))
    return out


@pytest.mark.parametrize("sparse", [False, True])
def test_matches_per_latent_reference(sparse):
    acts, labels, prot, lens = random_world()
    counts = annotation_stats(batches_of(acts, labels, prot, lens, sparse=sparse), CONCEPTS, acts.shape[1])
    assert np.array_equal(counts.latent_max, acts.max(0))
    assert counts.n_tokens == len(acts) and np.array_equal(counts.n_pos, labels.sum(0))
    m = counts.metrics()
    ref = reference_stats(acts, labels, run_domains(labels, prot))
    assert np.array_equal(counts.n_domains, [len(d) for d in run_domains(labels, prot)])
    for k, v in ref.items():
        np.testing.assert_allclose(m[k], v, rtol=1e-12, atol=0, err_msg=k)
    assert (m["fisher_p"][1, 3] < 1e-20) and m["f1"][1, 3].max() == 1.0  # the tied latent: perfect recall, precision


def test_explicit_overlapping_domains_and_given_max():
    """Feature spans as domains (overlapping, one row in two domains) and a scale from another split."""
    acts, labels, prot, lens = random_world(seed=1, n_prot=6, F=7)
    N = len(acts)
    spans = [(0, 0, 4), (0, 2, 6), (1, 10, 15), (2, 20, 21), (1, 30, 40)]   # (concept, start, end)
    lab = np.zeros((N, 3), bool)
    for c, a, b in spans:
        lab[a:b, c] = True
    rows = np.concatenate([np.arange(a, b) for _, a, b in spans])
    dom = np.concatenate([np.full(b - a, i) for i, (_, a, b) in enumerate(spans)])
    di = DomainIndex(torch.from_numpy(rows), torch.from_numpy(dom), torch.tensor([c for c, _, _ in spans]))
    scale = acts.max(0) * 1.7
    counts = annotation_stats([StatBatch(torch.from_numpy(acts), torch.from_numpy(lab), di)], CONCEPTS, 7,
                              latent_max=scale)
    doms = [[np.arange(a, b) for c, a, b in spans if c == k] for k in range(3)]
    ref = reference_stats(acts, lab, doms, latent_max=scale)
    m = counts.metrics()
    for k, v in ref.items():
        np.testing.assert_allclose(m[k], v, rtol=1e-12, atol=0, err_msg=k)
    assert counts.n_domains.tolist() == [2, 2, 1]


def test_runs_as_domains_known_answer():
    lab = torch.tensor([[1, 0], [1, 1], [0, 1], [1, 1], [1, 0]], dtype=torch.bool)
    d = runs_as_domains(lab, protein=torch.tensor([0, 0, 0, 1, 1]))
    got = sorted((int(c), tuple(d.rows[d.domain == i].tolist())) for i, c in enumerate(d.concept))
    assert got == [(0, (0, 1)), (0, (3, 4)), (1, (1, 2)), (1, (3,))]


def test_fisher_and_bh_match_scipy_and_loop():
    from scipy.stats import fisher_exact

    rng = np.random.default_rng(3)
    N = 60
    K, n = rng.integers(0, N + 1, 40), rng.integers(0, N + 1, 40)
    k = np.array([rng.integers(max(0, a + b - N), min(a, b) + 1) for a, b in zip(K, n)])
    p, odds, log10p = fisher_greater(k, n, K, N)
    for i in range(40):
        o, pr = fisher_exact([[k[i], n[i] - k[i]], [K[i] - k[i], N - K[i] - n[i] + k[i]]], alternative="greater")
        assert p[i] == pytest.approx(pr, rel=1e-12) and (np.isnan(o) and np.isnan(odds[i]) or o == odds[i])
    np.testing.assert_allclose(10 ** log10p, p, rtol=1e-12)
    ps = rng.random((4, 9)) ** 3
    np.testing.assert_allclose(benjamini_hochberg(ps), bh_loop(ps), rtol=1e-15)


def test_hypergeom_sf_matches_scipy_in_every_regime():
    """Upper tail, lower tail (1 - cdf), support edges, a million tokens, and an underflowing tail."""
    from scipy.stats import hypergeom

    rng = np.random.default_rng(5)
    for N in (50, 5000, 1_000_000):
        K, n = rng.integers(0, N // 2, 300), rng.integers(0, N // 3, 300)
        lo, hi = np.maximum(0, n + K - N), np.minimum(n, K)
        k = np.concatenate([lo, hi, lo + 1, (lo + hi) // 2, rng.integers(lo, hi + 1)])
        KK, nn = np.tile(K, 5), np.tile(n, 5)
        p, logp = hypergeom_sf(k, nn, KK, N)          # log-beta start: error grows ~N log N
        rtol = {50: 1e-12, 5000: 1e-10}.get(N, 2e-8)
        np.testing.assert_allclose(p, hypergeom.sf(k - 1, N, KK, nn), rtol=rtol, atol=1e-300)
    p, logp = hypergeom_sf(5000, 5000, 5000, 1_000_000)          # all draws positive: ~1e-10000
    assert p == 0.0 and logp == pytest.approx(hypergeom.logpmf(5000, 1_000_000, 5000, 5000), rel=1e-9)


def test_planted_latent_is_found_first():
    rng = np.random.default_rng(7)
    n_prot, F = 80, 64
    lens = rng.integers(30, 60, n_prot)
    prot = np.repeat(np.arange(n_prot), lens)
    N = int(lens.sum())
    labels = np.zeros((N, 3), bool)
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
    for p in range(n_prot):
        for c in range(3):
            if rng.random() < 0.5:
                a = rng.integers(0, lens[p] - 10)
                labels[starts[p] + a:starts[p] + a + 10, c] = True
    acts = (rng.exponential(1.0, (N, F)) * (rng.random((N, F)) < 0.1)).astype(np.float32)
    noisy = labels[:, 2] ^ (rng.random(N) < 0.03)                       # 3% of labels flipped
    acts[:, 41] = noisy * rng.uniform(1.0, 3.0, N)
    bs = batches_of(acts, labels, prot, lens, per=16)
    val = annotation_stats(bs[:3], ["A", "B", "C"], F)
    test = annotation_stats(bs[3:], ["A", "B", "C"], F, latent_max=val.latent_max)
    table = best_pairs(val, test, top=3)
    first = table[(table.concept == "C") & (table["rank"] == 1)].iloc[0]
    assert first.latent == 41 and first.test_f1 > 0.85 and first.test_fdr_q < 1e-10
    assert set(table.columns) >= {"test_precision", "test_recall_domain", "test_pos_above_0.01", "test_neg_above_1",
                                  "test_fisher_p", "test_fdr_q", "threshold"}
    others = table[(table.concept != "C") & (table["rank"] == 1)]
    assert (others.latent != 41).all() and (others.test_f1 < 0.5).all()


def test_bad_inputs_raise_one_clear_error():
    acts = torch.rand(5, 4)
    with pytest.raises(AnnotationStatsError, match=r"labels must be \(N=5, C=3\)"):
        annotation_stats([StatBatch(acts, torch.zeros(5, 2, dtype=torch.bool))], CONCEPTS, 4)
    with pytest.raises(AnnotationStatsError, match="acts must be"):
        annotation_stats([StatBatch(acts, torch.zeros(5, 3, dtype=torch.bool))], CONCEPTS, 6, latent_max=torch.ones(6))
    with pytest.raises(AnnotationStatsError, match="increasing"):
        annotation_stats([StatBatch(acts, torch.zeros(5, 3, dtype=torch.bool))], CONCEPTS, 4,
                         norm_thresholds=(0.5, 0.1))
    with pytest.raises(AnnotationStatsError, match="No batches"):
        latent_max_of([], 4)
    assert issubclass(AnnotationStatsError, ValueError)
