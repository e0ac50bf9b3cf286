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
"""
from __future__ import annotations

import itertools
import logging
import time
from typing import Iterator, Optional

import torch

from .activations import AUTO, check_finite, check_site, collect, describe_positions
from .data import fingerprint, iter_examples
from .errors import CheckpointError, ConfigError, DataError

log = logging.getLogger("saes")


def _block_seed(seed: int, block: int) -> int:
    return (int(seed) * 0x9E3779B97F4A7C15 + int(block) * 0xBF58476D1CE4E5B9 + 1) % (2**63 - 1)


def model_info(model, name: Optional[str] = None) -> dict:
    inner = model.model
    cfg = getattr(inner, "config", None)
    guess = getattr(cfg, "_name_or_path", None) or getattr(getattr(inner, "cfg", None), "model_name", None)
    return {"name": name or guess or type(inner).__name__, "class": type(inner).__name__,
            "adapter": model.adapter.name, "n_layers": model.n_layers}


# -- sources ---------------------------------------------------------------------------------
class TensorSource:
    """Rows of an in-memory ``(N, d)`` tensor, in chunks (tests, precomputed activations)."""

    def __init__(self, acts: torch.Tensor, chunk_rows: int = 8192):
        if not isinstance(acts, torch.Tensor) or acts.dim() != 2 or not acts.is_floating_point():
            raise DataError(f"Activations must be a float (N, d) tensor, got {getattr(acts, 'shape', type(acts))}.")
        if acts.shape[0] == 0:
            raise DataError("The activation tensor is empty (0 rows).")
        check_finite(acts, "the activation tensor", "given data")
        self.acts, self.chunk_rows, self.d_in = acts, int(chunk_rows), acts.shape[1]

    def chunks(self, start: int, epoch: int = 0) -> Iterator:
        for i in range(start, -(-self.acts.shape[0] // self.chunk_rows)):
            yield i + 1, self.acts[i * self.chunk_rows : (i + 1) * self.chunk_rows]

    def describe(self) -> dict:
        return {"source": "tensor", "rows": int(self.acts.shape[0]), "d_in": self.d_in}


class ModelSource:
    """Activations of ``site`` at ``positions`` while the model reads ``data``, one model batch
    (``model_batch_size`` examples) per chunk; the cursor is the example index."""

    def __init__(self, model, data, site: str, positions=AUTO, *, model_batch_size: int = 8, text_key=None,
                 dtype=torch.float32, model_name: Optional[str] = None):
        if model_batch_size < 1:
            raise ConfigError(f"model_batch_size must be >= 1, got {model_batch_size}.")
        self.model, self.data, self.text_key = model, data, text_key
        self.site = check_site(model, site)
        self.positions = positions
        self.described = describe_positions(model, positions)
        self.model_batch_size, self.dtype, self.model_name = int(model_batch_size), dtype, model_name
        self.d_in: Optional[int] = None
        self._fp = None
        next(iter_examples(data, text_key=text_key), None)  # fail early on a missing file / bad data

    def chunks(self, start: int, epoch: int = 0) -> Iterator:
        it = iter_examples(self.data, text_key=self.text_key, start=start)
        cursor = start
        while True:
            batch = list(itertools.islice(it, self.model_batch_size))
            if not batch:
                if cursor == 0:
                    raise DataError("The dataset is empty: it holds no examples. Pass a non-empty file, list or Dataset.")
                return
            acts, _ = collect(self.model, batch, self.site, self.positions, described=self.described, dtype=self.dtype)
            if acts is not None:
                check_finite(acts, self.site, f"examples {cursor}..{cursor + len(batch) - 1}")
                self.d_in = acts.shape[1]
            cursor += len(batch)
            yield cursor, acts

    def dataset_fingerprint(self) -> dict:
        if self._fp is None:
            self._fp = fingerprint(self.data, text_key=self.text_key)
        return self._fp

    def describe(self) -> dict:
        return {"source": "model", "model": model_info(self.model, self.model_name), "site": self.site,
                "positions": self.described, "dataset": self.dataset_fingerprint()}


# -- the store --------------------------------------------------------------------------------
class ActivationStore:
    """Iterator of shuffled ``(batch_size, d)`` activation batches on ``device``.

    A ``DataProvider`` for sae-lens's ``SAETrainer``. Build it with :meth:`from_model`
    (live, optionally through an on-disk cache), :meth:`from_cache` or :meth:`from_tensor`.
    """

    def __init__(self, source, *, batch_size: int = 4096, buffer_size: Optional[int] = None, seed: int = 0,
                 device=None, dtype=torch.float32):
        buffer_size = int(buffer_size) if buffer_size is not None else 16 * int(batch_size)
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}.")
        if buffer_size < batch_size:
            raise ConfigError(f"buffer_size ({buffer_size}) must be at least batch_size ({batch_size}); "
                              "raise the buffer or lower the batch size.")
        self.source, self.batch_size, self.buffer_size = source, int(batch_size), buffer_size
        self.seed, self.device, self.dtype = int(seed), torch.device(device or "cpu"), dtype
        # where reading continues, and the state at the start of the block being served
        self._rd = {"epoch": 0, "cursor": 0, "epoch_rows": 0}
        self._start = dict(self._rd)
        self._carry_in = None
        self._carry = None
        self._it = None
        self._block = -1
        self._buf = None
        self._n_batches = self._served = 0
        self.rows_served = 0
        self.fill_seconds = 0.0
        self._warned_pass = False

    # -- constructors ------------------------------------------------------------------------
    @classmethod
    def from_model(cls, model, data, site: str, positions=AUTO, *, batch_size: int = 4096,
                   buffer_size: Optional[int] = None, model_batch_size: int = 8, seed: int = 0, device=None,
                   text_key=None, dtype=torch.float32, cache_dir=None, max_rows: Optional[int] = None,
                   model_name: Optional[str] = None, progress: bool = False) -> "ActivationStore":
        """Stream ``site`` activations of ``model`` over ``data``; with ``cache_dir``, first write
        (or finish writing) safetensors shards there (see :mod:`saes.cache`), then read them."""
        if cache_dir is not None:
            from .cache import cache_activations

            cache_activations(model, data, site, cache_dir, positions, model_batch_size=model_batch_size,
                              text_key=text_key, dtype=dtype, max_rows=max_rows, model_name=model_name,
                              progress=progress)
            return cls.from_cache(cache_dir, batch_size=batch_size, buffer_size=buffer_size, seed=seed, device=device)
        src = ModelSource(model, data, site, positions, model_batch_size=model_batch_size, text_key=text_key,
                          dtype=dtype, model_name=model_name)
        return cls(src, batch_size=batch_size, buffer_size=buffer_size, seed=seed, device=device)

    @classmethod
    def from_cache(cls, cache_dir, *, batch_size: int = 4096, buffer_size: Optional[int] = None, seed: int = 0,
                   device=None) -> "ActivationStore":
        from .cache import CacheSource

        return cls(CacheSource(cache_dir, seed=seed), batch_size=batch_size, buffer_size=buffer_size, seed=seed,
                   device=device)

    @classmethod
    def from_tensor(cls, acts: torch.Tensor, *, batch_size: int = 4096, buffer_size: Optional[int] = None,
                    seed: int = 0, device=None) -> "ActivationStore":
        return cls(TensorSource(acts), batch_size=batch_size, buffer_size=buffer_size, seed=seed, device=device,
                   dtype=acts.dtype)

    # -- info ----------------------------------------------------------------------------------
    @property
    def d_in(self) -> int:
        """Activation width (reads the first buffer if the source does not know it yet)."""
        if getattr(self.source, "d_in", None) is None and self._buf is None:
            self._fill()
        return int(self.source.d_in if getattr(self.source, "d_in", None) is not None else self._buf.shape[1])

    def describe(self) -> dict:
        return {**self.source.describe(), "batch_size": self.batch_size, "buffer_size": self.buffer_size,
                "seed": self.seed}

    # -- iteration -------------------------------------------------------------------------------
    def __iter__(self) -> "ActivationStore":
        return self

    def __next__(self) -> torch.Tensor:
        if self._buf is None or self._served >= self._n_batches:
            self._fill()
        i = self._served
        self._served += 1
        self.rows_served += self.batch_size
        return self._buf[i * self.batch_size : (i + 1) * self.batch_size]

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

    def _fill(self) -> None:
        t0 = time.perf_counter()
        self._start = dict(self._rd)
        self._carry_in = self._carry
        parts = [self._carry] if self._carry is not None else []
        n = 0 if self._carry is None else self._carry.shape[0]
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
        self._block += 1
        g = torch.Generator().manual_seed(_block_seed(self.seed, self._block))
        perm = torch.randperm(n, generator=g).to(self.device)
        block = torch.cat(parts)[perm]
        nb = n // self.batch_size
        self._carry = block[nb * self.batch_size :].clone() if n % self.batch_size else None
        self._buf, self._n_batches, self._served = block[: nb * self.batch_size], nb, 0
        self.fill_seconds += time.perf_counter() - t0

    # -- resuming ----------------------------------------------------------------------------------
    def _config(self) -> dict:
        return {"batch_size": self.batch_size, "buffer_size": self.buffer_size, "seed": self.seed}

    def state_dict(self) -> dict:
        """Where the stream is: ``{"meta": json-able dict, "carry": tensor or None}``."""
        if self._block < 0:
            meta = {"block": -1, "start": dict(self._rd), "served": 0}
            carry = None
        else:
            meta = {"block": self._block, "start": dict(self._start), "served": self._served}
            carry = self._carry_in
        meta.update(rows_served=self.rows_served, config=self._config(), warned=self._warned_pass)
        return {"meta": meta, "carry": None if carry is None else carry.detach().cpu()}

    def load_state_dict(self, state: dict) -> None:
        meta = state["meta"]
        if meta.get("config") != self._config():
            raise CheckpointError(f"The saved stream was made with {meta.get('config')} but this store has "
                                  f"{self._config()}; resume with the same batch size, buffer size and seed.")
        carry = state.get("carry")
        self._rd = dict(meta["start"])
        self._carry = None if carry is None else carry.to(self.device, self.dtype)
        self._it, self._buf, self._warned_pass = None, None, bool(meta.get("warned"))
        self._block = int(meta["block"]) - 1
        if meta["block"] >= 0:
            self._fill()
            self._served = int(meta["served"])
        self.rows_served = int(meta["rows_served"])
