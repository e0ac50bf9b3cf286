"""Activation store: shuffled training batches of one site's activations, resumable.

    store = ActivationStore.from_model(model, "proteins.fasta", "resid_post.3",   # ESM: residues only
                                       batch_size=4096, buffer_size=65536, seed=0, device="cuda")
    x = next(store)                       # (4096, d_model) float32 on the training device
    state = store.state_dict()            # small: no activations except < batch_size carried rows
    store2 = ActivationStore.from_model(...same args...); store2.load_state_dict(state)
    torch.equal(next(store), next(store2))   # True

How batches are made (memory bounded by ``buffer_size`` rows, whatever the dataset size):
the source (a model run over the data through the hook registry, an on-disk cache, or a
tensor) is read chunk by chunk until the buffer holds ``buffer_size`` rows; the buffer is
permuted with a generator seeded by ``(seed, block index)`` and served as ``batch_size``
batches; the fewer-than-``batch_size`` rows left over are carried into the next buffer.
Every block therefore depends only on where its reading started, so the state needed to
resume mid-stream is a few integers plus the carried rows, and a resumed store yields
bit-identical batches. When the data runs out the source restarts (another pass, logged);
a dataset too small to fill one buffer is an error.

``prefetch=True`` builds the next buffer in a background thread while the current one is
served (default on CUDA in :func:`saes.train_sae`): the stream is the same, the model
forward overlaps the SAE steps, and memory holds two buffers. Forwards of one model are
serialised by :func:`saes.activations.model_lock`.
"""
from __future__ import annotations

import logging
import time
from typing import Optional

import torch

from .activations import AUTO
from .errors import CheckpointError, ConfigError, DataError
from .sources import ModelSource, TensorSource, model_info  # noqa: F401 (model_info re-exported)

log = logging.getLogger("saes")


def _block_seed(seed: int, block: int) -> int:
    return (int(seed) * 0x9E3779B97F4A7C15 + int(block) * 0xBF58476D1CE4E5B9 + 1) % (2**63 - 1)


# -- the store --------------------------------------------------------------------------------
class ActivationStore:
    """Iterator of shuffled ``(batch_size, d)`` activation batches on ``device``.

    A ``DataProvider`` for sae-lens's ``SAETrainer``. Build it with :meth:`from_model`
    (live, optionally through an on-disk cache), :meth:`from_cache` or :meth:`from_tensor`.
    """

    def __init__(self, source, *, batch_size: int = 4096, buffer_size: Optional[int] = None, seed: int = 0,
                 device=None, dtype=torch.float32, prefetch: bool = False):
        buffer_size = int(buffer_size) if buffer_size is not None else 16 * int(batch_size)
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}.")
        if buffer_size < batch_size:
            raise ConfigError(f"buffer_size ({buffer_size}) must be at least batch_size ({batch_size}); "
                              "raise the buffer or lower the batch size.")
        self.source, self.batch_size, self.buffer_size = source, int(batch_size), buffer_size
        self.seed, self.device, self.dtype = int(seed), torch.device(device or "cpu"), dtype
        self.prefetch = bool(prefetch)
        self.limit_rows: Optional[int] = None  # rows the consumer will take at most (stops needless prefetch)
        # producer side: where reading continues
        self._rd = {"epoch": 0, "cursor": 0, "epoch_rows": 0}
        self._it = None
        self._warned_pass = False
        # consumer side: the block being served and how it started
        self._blk: Optional[dict] = None
        self._served = 0
        self._pending = None  # Future of the next block (prefetch)
        self._pool = None
        self.rows_served = 0
        self.fill_seconds = 0.0  # time spent building blocks (in the background when prefetching)
        self.wait_seconds = 0.0  # time next() was blocked waiting for activations

    # -- constructors ------------------------------------------------------------------------
    @classmethod
    def from_model(cls, model, data, site: str, positions=AUTO, *, batch_size: int = 4096,
                   buffer_size: Optional[int] = None, model_batch_size: int = 8, seed: int = 0, device=None,
                   text_key=None, dtype=torch.float32, cache_dir=None, max_rows: Optional[int] = None,
                   model_name: Optional[str] = None, progress: bool = False,
                   prefetch: bool = False) -> "ActivationStore":
        """Stream ``site`` activations of ``model`` over ``data``; with ``cache_dir``, first write
        (or finish writing) safetensors shards there (see :mod:`saes.cache`), then read them."""
        if cache_dir is not None:
            from . import distributed as D
            from .cache import cache_activations

            # under torchrun each rank harvests its share of the model batches (saes.distributed.harvest)
            harvest = D.harvest if D.world() > 1 else cache_activations
            harvest(model, data, site, cache_dir, positions, model_batch_size=model_batch_size,
                    text_key=text_key, dtype=dtype, max_rows=max_rows, model_name=model_name, progress=progress)
            return cls.from_cache(cache_dir, batch_size=batch_size, buffer_size=buffer_size, seed=seed, device=device,
                                  prefetch=prefetch)
        src = ModelSource(model, data, site, positions, model_batch_size=model_batch_size, text_key=text_key,
                          dtype=dtype, model_name=model_name)
        return cls(src, batch_size=batch_size, buffer_size=buffer_size, seed=seed, device=device, prefetch=prefetch)

    @classmethod
    def from_cache(cls, cache_dir, *, batch_size: int = 4096, buffer_size: Optional[int] = None, seed: int = 0,
                   device=None, prefetch: bool = False) -> "ActivationStore":
        from .cache import CacheSource

        return cls(CacheSource(cache_dir, seed=seed), batch_size=batch_size, buffer_size=buffer_size, seed=seed,
                   device=device, prefetch=prefetch)

    @classmethod
    def from_tensor(cls, acts: torch.Tensor, *, batch_size: int = 4096, buffer_size: Optional[int] = None,
                    seed: int = 0, device=None) -> "ActivationStore":
        return cls(TensorSource(acts), batch_size=batch_size, buffer_size=buffer_size, seed=seed, device=device,
                   dtype=acts.dtype)

    # -- info ----------------------------------------------------------------------------------
    @property
    def d_in(self) -> int:
        """Activation width (reads the first buffer if the source does not know it yet)."""
        if getattr(self.source, "d_in", None) is None and self._blk is None and self._pending is None:
            self._advance()
        if getattr(self.source, "d_in", None) is not None:
            return int(self.source.d_in)
        return int(self._blk["buf"].shape[1])

    def describe(self) -> dict:
        return {**self.source.describe(), "batch_size": self.batch_size, "buffer_size": self.buffer_size,
                "seed": self.seed}

    # -- iteration -------------------------------------------------------------------------------
    def __iter__(self) -> "ActivationStore":
        return self

    def __next__(self) -> torch.Tensor:
        if self._blk is None or self._served >= self._blk["n_batches"]:
            self._advance()
        i = self._served
        self._served += 1
        self.rows_served += self.batch_size
        return self._blk["buf"][i * self.batch_size : (i + 1) * self.batch_size]

    def _advance(self) -> None:
        """Install the next block (waiting for the prefetched one), then start prefetching."""
        t0 = time.perf_counter()
        if self._pending is not None:
            fut, self._pending = self._pending, None
            blk = fut.result()
        else:
            prev = self._blk
            blk = self._build(None if prev is None else prev["carry_out"], 0 if prev is None else prev["block"] + 1)
        self.wait_seconds += time.perf_counter() - t0
        self._blk, self._served = blk, 0
        ahead = self.rows_served + blk["n_batches"] * self.batch_size
        if self.prefetch and (self.limit_rows is None or ahead < self.limit_rows):
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="saes-store")
            self._pending = self._pool.submit(self._build, blk["carry_out"], blk["block"] + 1)

    def _end_pass(self) -> None:
        rows = self._rd["epoch_rows"]
        if rows == 0:
            raise DataError("The data gave no activations at all: no example has a selected position. Check the "
                            "positions rule (e.g. 'auto' drops BOS/special tokens; one-token examples then have none).")
        if rows < self.buffer_size:
            raise DataError(f"Too few tokens for the requested buffer: one pass over the data gives {rows} activation "
                            f"rows but buffer_size is {self.buffer_size}. Add data or lower buffer_size (>= batch_size "
                            f"{self.batch_size}).")
        if not self._warned_pass:
            log.warning("saes: the data gave %d rows per pass; starting pass %d (training will repeat data).",
                        rows, self._rd["epoch"] + 2)
            self._warned_pass = True
        self._rd = {"epoch": self._rd["epoch"] + 1, "cursor": 0, "epoch_rows": 0}
        self._it = None

    def _build(self, carry: Optional[torch.Tensor], block: int) -> dict:
        """Read from the source until ``buffer_size`` rows, permute (seed, block). Producer side only."""
        t0 = time.perf_counter()
        start = dict(self._rd)
        parts = [carry] if carry is not None else []
        n = 0 if carry is None else carry.shape[0]
        while n < self.buffer_size:
            if self._it is None:
                self._it = self.source.chunks(self._rd["cursor"], self._rd["epoch"])
            try:
                cursor, chunk = next(self._it)
            except StopIteration:
                self._end_pass()
                continue
            self._rd["cursor"] = cursor
            if chunk is None or chunk.shape[0] == 0:
                continue
            parts.append(chunk.to(self.device, self.dtype))
            n += chunk.shape[0]
            self._rd["epoch_rows"] += chunk.shape[0]
        g = torch.Generator().manual_seed(_block_seed(self.seed, block))
        perm = torch.randperm(n, generator=g).to(self.device)
        rows = torch.cat(parts)[perm]
        nb = n // self.batch_size
        out = {"block": block, "start": start, "carry_in": carry, "buf": rows[: nb * self.batch_size],
               "n_batches": nb, "carry_out": rows[nb * self.batch_size :].clone() if n % self.batch_size else None}
        self.fill_seconds += time.perf_counter() - t0
        return out

    def close(self) -> None:
        """Stop prefetching (waits for a block being built) and drop buffered activations."""
        if self._pending is not None:
            self._pending.cancel()
            try:
                self._pending.result()
            except Exception:  # noqa: BLE001 - an unneeded block's failure does not matter
                pass
            self._pending = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    # -- resuming ----------------------------------------------------------------------------------
    def _config(self) -> dict:
        return {"batch_size": self.batch_size, "buffer_size": self.buffer_size, "seed": self.seed}

    def state_dict(self) -> dict:
        """Where the stream is: ``{"meta": json-able dict, "carry": tensor or None}``."""
        blk = self._blk
        if blk is None:
            meta, carry = {"block": -1, "start": {"epoch": 0, "cursor": 0, "epoch_rows": 0}, "served": 0}, None
        else:
            meta, carry = {"block": blk["block"], "start": dict(blk["start"]), "served": self._served}, blk["carry_in"]
        meta.update(rows_served=self.rows_served, config=self._config(), warned=self._warned_pass)
        return {"meta": meta, "carry": None if carry is None else carry.detach().cpu()}

    def load_state_dict(self, state: dict) -> None:
        meta = state["meta"]
        if meta.get("config") != self._config():
            raise CheckpointError(f"The saved stream was made with {meta.get('config')} but this store has "
                                  f"{self._config()}; resume with the same batch size, buffer size and seed.")
        self.close()
        carry = state.get("carry")
        carry = None if carry is None else carry.to(self.device, self.dtype)
        self._rd, self._it, self._blk, self._served = dict(meta["start"]), None, None, 0
        self._warned_pass = bool(meta.get("warned"))
        self.rows_served = int(meta["rows_served"])
        if meta["block"] >= 0:
            blk = self._build(carry, int(meta["block"]))
            self._blk, self._served = blk, int(meta["served"])
