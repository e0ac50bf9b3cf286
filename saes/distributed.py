"""torch.distributed plumbing shared by harvesting and SAE training: environment, backend, data split.

Launch with torchrun (the engine does the process management; nothing home-made here)::

    torchrun --nproc_per_node 2 -m interp sae train --model ... --site resid_post.6 ...

    from saes import distributed as D
    with D.process_group():            # no-op in a plain single process
        r, w = D.rank(), D.world()
        mine = D.split(range(n_docs), r, w)

The backend is ``nccl`` when CUDA is available (each rank on ``cuda:LOCAL_RANK``) and ``gloo`` otherwise.
"""
from __future__ import annotations

import contextlib
import datetime
import os

import torch
import torch.distributed as dist

__all__ = ["launched", "process_group", "rank", "world", "is_main", "backend", "device", "split", "barrier",
           "all_sum", "broadcast_object"]


def launched() -> bool:
    """True under torchrun (or any launcher that sets ``WORLD_SIZE``/``RANK``)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def backend() -> str:
    """``nccl`` with CUDA, ``gloo`` on CPU (override with ``INTERP_DIST_BACKEND``)."""
    return os.environ.get("INTERP_DIST_BACKEND") or ("nccl" if torch.cuda.is_available() else "gloo")


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else 0


def world() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def device() -> torch.device:
    """``cuda:LOCAL_RANK`` under nccl, else CPU."""
    if active() and dist.get_backend() == "nccl":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank() % max(torch.cuda.device_count(), 1))))
    return torch.device("cpu")


@contextlib.contextmanager
def process_group(timeout_s: float = 600.0, init_method: str | None = None, rank_: int | None = None,
                  world_: int | None = None):
    """Initialise the default process group from the torchrun environment (or the arguments) and tear it down.

    Nothing happens in a plain single process or when a group is already initialised (then the caller owns it).
    """
    if active() or (init_method is None and not launched()):
        yield
        return
    be = backend()
    kw = dict(backend=be, timeout=datetime.timedelta(seconds=timeout_s))
    if init_method is not None:
        kw.update(init_method=init_method, rank=rank_, world_size=world_)
    if be == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(**kw)
    try:
        yield
    finally:
        dist.destroy_process_group()


def split(items, r: int | None = None, w: int | None = None) -> list:
    """Rank ``r``'s share of ``items``: a deterministic strided split (item i goes to rank i % w), so the union
    over ranks is every item exactly once whatever the world size."""
    r = rank() if r is None else r
    w = world() if w is None else w
    return list(items)[r::w]


def barrier() -> None:
    if world() > 1:
        dist.barrier()


def all_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum of ``t`` over ranks (in place; returns it)."""
    if world() > 1:
        dev = t.device
        moved = t.to(device()) if dev != device() else t
        dist.all_reduce(moved, op=dist.ReduceOp.SUM)
        if moved is not t:
            t.copy_(moved.to(dev))
    return t


def broadcast_object(obj, src: int = 0):
    """``obj`` from rank ``src`` on every rank."""
    if world() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
