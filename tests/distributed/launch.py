"""Run a function on W gloo ranks (spawned processes) with a hard timeout; no process outlives the call.

    outs = run_ranks(_worker, 2, tmp_path, arg1, ...)    # _worker(rank, world, out_dir, *args) -> picklable
    outs[0], outs[1]                                       # each rank's return value

The process group is initialised by file (no ports to pick) with a 60 s collective timeout.
"""
from __future__ import annotations

import os
import time
import traceback
from pathlib import Path

import torch
import torch.multiprocessing as mp

TIMEOUT_S = 150


def _entry(r, world, init_file, fn, out_dir, args):
    os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", INTERP_DIST_BACKEND="gloo")
    torch.set_num_threads(1)
    from saes.distributed import process_group

    try:
        with process_group(timeout_s=60, init_method=f"file://{init_file}", rank_=r, world_=world):
            out = fn(r, world, Path(out_dir), *args)
        torch.save(out, Path(out_dir) / f"result.{r}.pt")
    except BaseException:
        (Path(out_dir) / f"error.{r}.txt").write_text(traceback.format_exc())
        raise


def run_ranks(fn, world: int, out_dir, *args, timeout_s: float = TIMEOUT_S) -> list:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    init_file = out_dir / f".init.{os.getpid()}.{time.monotonic_ns()}"
    ctx = mp.start_processes(_entry, args=(world, str(init_file), fn, str(out_dir), args), nprocs=world,
                             join=False, start_method="spawn")
    deadline = time.monotonic() + timeout_s
    try:
        while not ctx.join(timeout=max(0.1, min(2.0, deadline - time.monotonic()))):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{world} ranks did not finish within {timeout_s} s")
    except (mp.ProcessRaisedException, mp.ProcessExitedException) as e:
        errs = sorted(out_dir.glob("error.*.txt"))
        raise RuntimeError("a rank failed:\n" + "\n".join(p.read_text() for p in errs)) from e
    finally:
        for p in ctx.processes:  # only the processes this call started
            if p.is_alive():
                p.kill()
            p.join(5)
    return [torch.load(out_dir / f"result.{r}.pt", weights_only=False) for r in range(world)]
