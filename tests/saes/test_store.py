"""Activation store: position rules (counts), determinism, exact resume, bounded memory, disk cache, bad input."""
import json

import pytest
import torch

import hooks
import saes
from saes import activations as A
from saes.cache import read_manifest
from saes.errors import ActivationError, CacheError, ConfigError, DataError

from .conftest import protein_seqs, token_rows


def drain(store, n):
    return torch.cat([next(store) for _ in range(n)])


def test_auto_positions_drop_bos_and_padding_on_an_llm(gpt2):
    rows = token_rows(5, seed=1)
    acts, mask = A.collect(gpt2, rows, "resid_post.1")
    assert acts.shape == (sum(len(r) - 1 for r in rows), 32)          # BOS and padding excluded
    assert mask.sum(1).tolist() == [len(r) - 1 for r in rows] and not mask[:, 0].any()
    ref = gpt2.run(rows, [hooks.Cache("resid_post.1", "1:", layout="flat")]).cache["resid_post.1"]
    torch.testing.assert_close(acts, ref, rtol=0, atol=0)             # same rows as the registry's "1:" selector
    assert A.describe_positions(gpt2, "auto") == {"rule": "auto", "base": "all", "exclude_token_ids": [0, 1, 2]}


def test_auto_positions_are_residues_on_esm(esm):
    seqs = protein_seqs(6, seed=2)
    acts, mask = A.collect(esm, seqs, "resid_post.0")
    assert acts.shape[0] == sum(map(len, seqs))                        # no CLS, EOS or padding rows
    ids = esm.prepare(seqs)["input_ids"]
    assert not mask[ids == 0].any() and not mask[ids == 2].any() and not mask[ids == 1].any()


def rowset(t):
    return sorted(map(tuple, t.tolist()))


def test_store_counts_and_content_match_a_plain_cache(gpt2):
    rows = token_rows(40, seed=3)
    n = sum(len(r) - 1 for r in rows)
    store = saes.ActivationStore.from_model(gpt2, rows, "resid_post.0", batch_size=1, buffer_size=n, model_batch_size=7)
    got = drain(store, n)                                              # exactly one pass = one buffer
    ref = gpt2.cache_dataset(rows, "resid_post.0", "1:", batch_size=7, progress=False)["resid_post.0"]
    assert got.shape == (n, 32) and rowset(got) == rowset(ref)         # the same rows, shuffled
    assert not torch.equal(got, ref)


def test_store_is_seeded_and_resumes_bit_identically(gpt2):
    rows = token_rows(60, seed=4)
    make = lambda seed=0: saes.ActivationStore.from_model(gpt2, rows, "resid_post.0", batch_size=16,  # noqa: E731
                                                          buffer_size=100, model_batch_size=8, seed=seed)
    a, b = make(), make()
    assert torch.equal(drain(a, 5), drain(b, 5))
    assert not torch.equal(drain(make(1), 3), drain(make(0), 3))
    state = a.state_dict()
    json.dumps(state["meta"])                                          # the position is plain JSON + carried rows
    assert state["carry"] is None or state["carry"].shape[0] < 16
    c = make()
    c.load_state_dict(state)
    assert torch.equal(drain(a, 40), drain(c, 40))                     # across buffer refills and a second pass
    with pytest.raises(saes.CheckpointError, match="same batch size"):
        saes.ActivationStore.from_model(gpt2, rows, "resid_post.0", batch_size=8, buffer_size=100).load_state_dict(state)


def test_memory_stays_bounded_by_the_buffer(gpt2):
    rows = token_rows(80, seed=5)
    store = saes.ActivationStore.from_model(gpt2, rows, "resid_post.0", batch_size=8, buffer_size=40, model_batch_size=4)
    biggest = 0
    for _ in range(60):
        next(store)
        blk = store._blk
        biggest = max(biggest, blk["buf"].shape[0] + (0 if blk["carry_out"] is None else blk["carry_out"].shape[0]))
    assert biggest < 40 + 4 * 15 + 8                                  # buffer + one model batch + carried rows


def test_prefetching_gives_the_same_stream_and_resumes(gpt2):
    rows = token_rows(60, seed=9)
    make = lambda prefetch: saes.ActivationStore.from_model(gpt2, rows, "resid_post.0", batch_size=16,  # noqa: E731
                                                            buffer_size=100, model_batch_size=8, prefetch=prefetch)
    plain, ahead = make(False), make(True)
    assert torch.equal(drain(plain, 12), drain(ahead, 12))
    assert ahead._pending is not None                                 # the next block is being built meanwhile
    state = ahead.state_dict()
    again = make(True)
    again.load_state_dict(state)
    assert torch.equal(drain(again, 20), drain(plain, 20)) and torch.equal(drain(ahead, 5), drain(make(False), 17)[12 * 16:])
    ahead.close()
    again.close()


def test_disk_cache_is_resumable_after_a_crash_and_read_back(gpt2, tmp_path, monkeypatch):
    rows = token_rows(30, seed=6)
    n = sum(len(r) - 1 for r in rows)
    d = tmp_path / "acts"
    real, calls = A.collect, {"n": 0}

    def crashing(*a, **k):
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("simulated crash")
        return real(*a, **k)

    monkeypatch.setattr("saes.sources.collect", crashing)
    with pytest.raises(RuntimeError, match="simulated"):
        saes.cache_activations(gpt2, rows, "resid_post.0", d, model_batch_size=3, shard_rows=20, progress=False)
    man = read_manifest(d)
    assert not man["complete"] and man["shards"] and man["next_example"] == man["shards"][-1]["examples"][1] < 30
    assert not list(d.glob(".*tmp*"))                                  # no temp file survives
    monkeypatch.setattr("saes.sources.collect", real)
    man = saes.cache_activations(gpt2, rows, "resid_post.0", d, model_batch_size=3, shard_rows=20, progress=False)
    assert man["complete"] and man["rows"] == n and man["next_example"] == 30
    ranges = [s["examples"] for s in man["shards"]]
    assert ranges[0][0] == 0 and all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    got = drain(saes.ActivationStore.from_cache(d, batch_size=1, buffer_size=n), n)
    ref = gpt2.cache_dataset(rows, "resid_post.0", "1:", batch_size=3, progress=False)["resid_post.0"]
    assert rowset(got) == rowset(ref)
    with pytest.raises(CacheError, match="different"):                # another site in the same dir
        saes.cache_activations(gpt2, rows, "resid_post.1", d, progress=False)
    (d / man["shards"][0]["file"]).write_bytes(b"garbage")
    with pytest.raises(CacheError, match="corrupt"):
        drain(saes.ActivationStore.from_cache(d, batch_size=8, buffer_size=n), 3)


def test_harvest_progress_advances_per_batch_and_starts_at_the_resumed_rows(gpt2, tmp_path, monkeypatch):
    """The cache's progress (hooks.progress) advances once per model batch by its tokens; a resumed
    harvest's display starts at the rows already cached, and its plain lines say so."""
    import io

    from rich.console import Console

    import saes.cache as SC

    rows = token_rows(30, seed=7)
    n = sum(len(r) - 1 for r in rows)
    buf, bars, real = io.StringIO(), [], SC.progress_display

    def spy(*a, **k):
        bar = real(*a, console=Console(file=buf, force_terminal=False, width=200), **k)
        bar.steps = []
        adv = bar.advance
        bar.advance = lambda m, **f: (bar.steps.append(m), adv(m, **f))
        bars.append(bar)
        return bar

    monkeypatch.setattr(SC, "progress_display", spy)
    d = tmp_path / "acts"
    first = saes.cache_activations(gpt2, rows, "resid_post.0", d, model_batch_size=3, shard_rows=20, max_rows=40)
    assert not first["complete"] and bars[0].total == 40 and bars[0].completed == first["rows"] >= 40
    done = saes.cache_activations(gpt2, rows, "resid_post.0", d, model_batch_size=3, shard_rows=20)
    assert done["complete"] and done["rows"] == n
    assert bars[1].start == first["rows"] and bars[1].completed == n          # resumed count, not 0
    assert len(bars[1].steps) == 10 - first["next_example"] // 3                # one step per model batch
    assert sum(bars[1].steps) == n - first["rows"]                              # counted in tokens
    assert f"caching resid_post.0: {first['rows']:,} tok" in buf.getvalue()     # the resumed run's first line


def test_bad_input_gives_one_clear_error(gpt2, tmp_path):
    rows = token_rows(10, seed=7)
    with pytest.raises(hooks.UnknownSiteError, match="resid_post.1"):
        saes.ActivationStore.from_model(gpt2, rows, "resid_post.9")
    with pytest.raises(ConfigError, match="one site"):
        saes.ActivationStore.from_model(gpt2, rows, "resid_post.*")
    with pytest.raises(DataError, match="empty"):
        next(saes.ActivationStore.from_model(gpt2, [], "resid_post.0", batch_size=4, buffer_size=8))
    empty_file = tmp_path / "empty.txt"
    empty_file.write_text("\n\n")
    with pytest.raises(DataError, match="empty"):
        next(saes.ActivationStore.from_model(gpt2, str(empty_file), "resid_post.0", batch_size=4, buffer_size=8))
    with pytest.raises(DataError, match="does not exist"):
        saes.ActivationStore.from_model(gpt2, str(tmp_path / "nope.txt"), "resid_post.0")
    n = sum(len(r) - 1 for r in rows)
    with pytest.raises(DataError, match=f"gives {n} activation rows but buffer_size is 1000"):
        next(saes.ActivationStore.from_model(gpt2, rows, "resid_post.0", batch_size=8, buffer_size=1000))
    with pytest.raises(DataError, match="no activations"):             # BOS-only rows: nothing selected
        next(saes.ActivationStore.from_model(gpt2, [[1]] * 4, "resid_post.0", batch_size=2, buffer_size=4))
    with pytest.raises(ConfigError, match="at least batch_size"):
        saes.ActivationStore.from_model(gpt2, rows, "resid_post.0", batch_size=64, buffer_size=8)
    with pytest.raises(DataError, match="one-shot"):
        saes.ActivationStore.from_model(gpt2, (r for r in rows), "resid_post.0")


def test_nan_activations_are_refused(gpt2):
    import copy

    broken = hooks.wrap(copy.deepcopy(gpt2.model))
    with torch.no_grad():
        broken.model.transformer.h[0].mlp.c_proj.bias[3] = float("nan")
    store = saes.ActivationStore.from_model(broken, token_rows(10, seed=8), "resid_post.0", batch_size=4, buffer_size=8)
    with pytest.raises(ActivationError, match="NaN/inf activations"):
        next(store)
    with pytest.raises(ActivationError, match="NaN"):
        saes.ActivationStore.from_tensor(torch.tensor([[0.0, float("nan")]]), batch_size=1)
