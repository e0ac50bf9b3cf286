"""Single-process pieces of the distributed path: data split, config checks, backend choice, no-op group."""
import pytest
import torch

from saes import distributed as D
from saes.ddp import RankSlice, check_config
from saes.errors import ConfigError
from saes.train import TrainConfig


def test_split_covers_every_item_once_for_any_world_size():
    for w in (1, 2, 3, 8):
        parts = [D.split(range(23), r, w) for r in range(w)]
        assert sorted(x for p in parts for x in p) == list(range(23))


def test_config_checks_name_the_fix():
    check_config(TrainConfig(batch_size=30), 1)
    check_config(TrainConfig(batch_size=32), 2)
    with pytest.raises(ConfigError, match="multiple of 3"):
        check_config(TrainConfig(batch_size=32), 3)
    with pytest.raises(ConfigError, match="batchtopk"):
        check_config(TrainConfig(arch="batchtopk", batch_size=32), 2)


def test_rank_slices_tile_the_global_batch():
    batches = [torch.arange(12.0).reshape(6, 2) + 100 * i for i in range(3)]
    slices = [RankSlice(iter(list(batches)), r, 3) for r in range(3)]
    for i in range(3):
        assert torch.equal(torch.cat([next(s) for s in slices]), batches[i])


def test_backend_and_plain_process(monkeypatch):
    monkeypatch.delenv("INTERP_DIST_BACKEND", raising=False)
    assert D.backend() == ("nccl" if torch.cuda.is_available() else "gloo")
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with D.process_group():  # not under torchrun: nothing to initialise
        assert not D.launched() and D.world() == 1 and D.rank() == 0 and D.is_main()
        assert D.device().type == "cpu"
