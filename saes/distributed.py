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


# -- distributed harvesting into the shard cache -------------------------------------------------
def _rank_manifest(root, r: int):
    from pathlib import Path

    return Path(root) / f"manifest.rank{r:03d}.json"


def harvest(model, data, site: str, cache_dir, positions="auto", *, model_batch_size: int = 8,
            shard_rows: int = 65536, max_rows=None, text_key=None, dtype=torch.float32, model_name=None,
            progress: bool = True) -> dict:
    """:func:`saes.cache.cache_activations` over all ranks; returns the merged manifest (on every rank).

    The data are cut into the model batches a single process would run (``model_batch_size`` consecutive
    examples); batch ``i`` goes to rank ``i % world``. Each rank runs its batches through the hook registry
    (:func:`saes.activations.collect`, the same call as the single-process cache, so every row is bit-identical)
    into its own shards ``shard_rRRR_NNNNN.safetensors`` and its own progress file ``manifest.rankRRR.json``
    (both atomic); rank 0 then writes ``manifest.json`` naming every shard with its rank, example batches, rows
    and sha256. Without ``max_rows`` the union is exactly the single-process cache's rows (order aside);
    with it each rank stops after ``ceil(max_rows / world)`` rows. An interrupted run resumes per rank at the
    same world size; a different world size is refused until the cache is deleted or complete.
    """
    import json
    import math
    from pathlib import Path

    from hooks.progress import progress as progress_display

    from .activations import check_finite, collect
    from .cache import MANIFEST, VERSION, read_manifest, weights_fingerprint, write_shard, write_state_json
    from .data import iter_examples
    from .errors import CacheError
    from .sources import ModelSource

    r, w = rank(), world()
    root = Path(cache_dir)
    src = ModelSource(model, data, site, positions, model_batch_size=model_batch_size, text_key=text_key,
                      dtype=dtype, model_name=model_name)
    ident = {"model": src.describe()["model"], "weights": weights_fingerprint(model), "site": src.site,
             "positions": src.described, "dataset": src.dataset_fingerprint(), "dtype": str(dtype).replace("torch.", "")}
    if (root / MANIFEST).exists():
        man = read_manifest(root)
        diff = [k for k in ident if k != "model" and man["identity"].get(k) != ident[k]]
        if diff:
            raise CacheError(f"{root} caches a different {', '.join(diff)}; pass another cache_dir or delete this one.")
        if man["complete"]:
            return man
        if man.get("world") != w:
            raise CacheError(f"{root} is a partial cache written by {man.get('world', 1)} process(es); finish it with "
                             f"that many or delete it (this run has {w}).")
    barrier()
    if is_main():
        root.mkdir(parents=True, exist_ok=True)
        if not (root / MANIFEST).exists():
            write_state_json(root / MANIFEST, {"version": VERSION, "identity": ident, "d_in": None, "shards": [],
                                               "rows": 0, "next_example": 0, "complete": False, "world": w})
    barrier()
    mpath = _rank_manifest(root, r)
    mine = json.loads(mpath.read_text()) if mpath.exists() else {"rank": r, "world": w, "shards": [], "rows": 0,
                                                                   "next_batch": 0, "d_in": None, "done": False}
    cap = None if max_rows is None else math.ceil(max_rows / w)
    parts, ranges, n = [], [], 0

    def flush(next_batch: int, done: bool) -> None:
        nonlocal parts, ranges, n
        if parts:
            name = f"shard_r{r:03d}_{len(mine['shards']):05d}.safetensors"
            sha = write_shard(root, name, parts)
            mine["shards"].append({"file": name, "rows": n, "rank": r, "example_ranges": ranges, "sha256": sha})
            mine["rows"] += n
        mine.update(next_batch=next_batch, done=done)
        write_state_json(mpath, mine)
        parts, ranges, n = [], [], 0

    b, batch = 0, []
    # rank 0's rows against its share of max_rows; a resumed rank starts at the rows it already cached
    with progress_display(f"caching {src.site} (rank 0 of {w})", total=cap, unit="tok", start=mine["rows"],
                          enabled=bool(progress) and is_main()) as bar:
        if not mine["done"]:
            it = iter_examples(data, text_key=text_key, start=mine["next_batch"] * model_batch_size)
            b = mine["next_batch"]
            while True:
                batch = [ex for _, ex in zip(range(model_batch_size), it)]
                if not batch:
                    break
                if b % w == r:
                    acts, _ = collect(model, batch, src.site, positions, described=src.described, dtype=dtype)
                    if acts is not None:
                        check_finite(acts, src.site, f"examples {b * model_batch_size}..")
                        mine["d_in"] = acts.shape[1]
                        parts.append(acts.to("cpu"))
                        n += acts.shape[0]
                        bar.advance(acts.shape[0])
                    ranges.append([b * model_batch_size, b * model_batch_size + len(batch)])
                b += 1
                if cap is not None and mine["rows"] + n >= cap:
                    break
                if n >= shard_rows:
                    flush(b, False)
            flush(b, True)
    barrier()
    if is_main():
        ranks = [json.loads(_rank_manifest(root, q).read_text()) for q in range(w)]
        man = read_manifest(root)
        man.update(shards=[s for m in ranks for s in m["shards"]], rows=sum(m["rows"] for m in ranks),
                   d_in=next((m["d_in"] for m in ranks if m["d_in"] is not None), None), world=w,
                   ranks=[{"rank": m["rank"], "shards": len(m["shards"]), "rows": m["rows"]} for m in ranks],
                   next_example=max(m["next_batch"] for m in ranks) * model_batch_size, complete=True,
                   max_rows=max_rows)
        write_state_json(root / MANIFEST, man)
        for q in range(w):
            _rank_manifest(root, q).unlink()
    barrier()
    return read_manifest(root)
