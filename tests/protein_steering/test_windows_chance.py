"""Sliding windows (every residue embedded inside the context) and the chance level of F1."""
import numpy as np
import pytest
import torch


def test_window_spans_tile_and_own_each_residue_once():
    from steering.protein.windows import owned_residues, window_spans

    assert window_spans(50, 126) == [(0, 50)]
    spans = window_spans(300, 126, 63)
    assert spans == [(0, 126), (63, 189), (126, 252), (174, 300)]
    own = owned_residues(300, spans)
    assert own[0][0] == 0 and own[-1][1] == 300
    assert all(a[1] == b[0] for a, b in zip(own, own[1:]))          # a tiling: each residue exactly once
    for (a, e), (lo, hi) in zip(spans, own):
        assert a <= lo and hi <= e                                    # owned residues lie inside the window
    # residue 94 is 31 from the nearer edge of windows 0 (0..125) and 1 (63..188): the earlier wins;
    # residue 95 is 30 deep in window 0 and 32 deep in window 1
    assert own[0] == (0, 95) and own[1][0] == 95


def test_sae_training_windows_cover_every_residue_inside_the_context():
    from steering.protein.windows import window_sequences

    seq = "".join("ACDEFGHIKLMNPQRSTVWY"[i % 20] for i in range(300))
    pieces = window_sequences([seq, seq[:50]], 126, 63)
    assert [len(p) for p in pieces] == [126, 126, 126, 126, 50]
    assert pieces[0] == seq[:126] and pieces[3] == seq[174:] and pieces[4] == seq[:50]
    covered = set()
    for a in (0, 63, 126, 174):
        covered |= set(range(a, a + 126))
    assert covered == set(range(300))


def test_collect_embeds_long_proteins_in_windows(tiny_model):
    """A protein longer than the context: every residue gets a row, read from the window where it is
    most central, and equal to running that window alone."""
    from hooks import Cache
    from steering.protein.align import encode_sequences
    from steering.protein.pipeline import collect, coverage
    from steering.protein.schema import ProteinRecord, to_dataset
    from steering.protein.windows import owned_residues, window_spans

    rng = np.random.default_rng(0)
    seq = "".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), 70))
    lab = "".join(rng.choice(list("12H"), 70))
    ds = to_dataset([ProteinRecord("long", seq, tmbed_labels=lab), ProteinRecord("short", seq[:10],
                                                                                 tmbed_labels=lab[:10])])
    (c,) = collect(tiny_model, ds, "resid_post.1", ["TMBED_H"], max_length=32, run_tracks=["TMBED_H"], stride=10)
    assert c["x"].shape[0] == 80 and c["labels"].shape == (80, 1)
    assert coverage([c]) == {"residues": 80, "scored": 80, "fraction": 1.0, "proteins": 2, "windows": 6}
    assert c["labels"][:70, 0].numpy().tolist() == [ch == "H" for ch in lab]
    spans = window_spans(70, 30, 10)
    for (a, e), (lo, hi) in zip(spans, owned_residues(70, spans)):
        enc = encode_sequences([seq[a:e]])
        ref = tiny_model.run(enc.inputs, [Cache("resid_post.1", "residues", layout="flat")]).cache["resid_post.1"]
        torch.testing.assert_close(c["x"][lo:hi], ref[lo - a:hi - a].float())
    whole = tiny_model.run(encode_sequences([seq[:10]]).inputs, [Cache("resid_post.1", "residues", layout="flat")])
    torch.testing.assert_close(c["x"][70:], whole.cache["resid_post.1"].float())


def test_always_on_f1_is_analytic():
    from steering.protein.chance import always_on_f1

    assert always_on_f1(893, 1000) == pytest.approx(2 * 0.893 / 1.893)
    assert always_on_f1(0, 1000) == 0.0


def test_chance_f1_planted_latent_beats_it_and_shuffled_does_not():
    """A planted latent equal to the label has F1 1; after shuffling residues the best latent's
    F1 drops to chance; the always-on F1 of a dense annotation is near 1 and 'beats' nothing."""
    from saes.annotation_stats import DomainIndex, annotation_stats, best_pairs
    from steering.protein.chance import beats_chance, chance_f1

    rng = np.random.default_rng(0)

    class Identity:
        class cfg:
            d_sae = 8
        W_dec = torch.zeros(1)

        @staticmethod
        def encode(x):
            return x

    def part(n):
        lab = torch.from_numpy(rng.random((n, 2)) < [0.05, 0.9])
        x = torch.from_numpy(rng.random((n, 8)) * (rng.random((n, 8)) < 0.3)).float()
        x[:, 0] = lab[:, 0].float() * 2.0                     # planted: fires exactly on annotation 0
        return [{"x": x, "labels": lab, "domains": None}]

    va, te = part(3000), part(3000)
    from saes.annotation_stats import StatBatch

    stats = [annotation_stats([StatBatch(c["x"], c["labels"], None) for c in cache], ["a", "b"], 8) for cache in (va, te)]
    best = best_pairs(stats[0], stats[1], top=1).set_index("concept")
    ch = chance_f1(Identity, va, te, ["a", "b"], stats[1], seed=0)
    assert best.loc["a", "test_f1"] == pytest.approx(1.0) and beats_chance(1.0, ch["a"])
    assert ch["a"]["random_latent"] < 0.5
    pi = stats[1].n_pos[1] / stats[1].n_tokens
    assert ch["b"]["always_on"] == pytest.approx(2 * pi / (1 + pi)) and ch["b"]["chance_f1"] > 0.9
