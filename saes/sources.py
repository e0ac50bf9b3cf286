"""Where a store's rows come from: a model reading a dataset (:class:`ModelSource`) or an
in-memory tensor (:class:`TensorSource`); the on-disk cache's reader is :class:`saes.cache.CacheSource`.

    src = ModelSource(model, "proteins.fasta", "resid_post.3", model_batch_size=8)
    for cursor, acts in src.chunks(0):   # cursor: the next example index; acts: (rows, d) or None
        ...

A source has ``chunks(start, epoch)`` (``(cursor, rows)`` pairs from ``start`` on), ``describe()``
and ``d_in``. Both :mod:`saes.store` and :mod:`saes.cache` build on these (kept here so neither
imports the other's module to get them).
"""
from __future__ import annotations

import itertools
from typing import Iterator, Optional

import torch

from .activations import AUTO, check_finite, check_site, collect, describe_positions
from .data import fingerprint, iter_examples
from .errors import ConfigError, DataError


def model_info(model, name: Optional[str] = None) -> dict:
    inner = model.model
    cfg = getattr(inner, "config", None)
    guess = getattr(cfg, "_name_or_path", None) or getattr(getattr(inner, "cfg", None), "model_name", None)
    return {"name": name or guess or type(inner).__name__, "class": type(inner).__name__,
            "adapter": model.adapter.name, "n_layers": model.n_layers}


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
