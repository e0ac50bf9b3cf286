"""On-disk activation cache: safetensors shards plus a JSON manifest, crash-safe and resumable.

    cache_activations(model, "proteins.fasta", "resid_post.3", "runs/acts", max_rows=2_000_000)
    store = ActivationStore.from_cache("runs/acts", batch_size=4096, seed=0)

Layout: ``manifest.json`` and ``shard_00000.safetensors``, ... (tensor ``activations``,
rows in data order). Each shard is written to a temp file and renamed, then the manifest
(temp file + rename) records it with its row count, example range and sha256, so a crash
leaves at most an unrecorded shard that the next run overwrites. Calling
:func:`cache_activations` again continues from the manifest's ``next_example``; a cache of
a different model, site, positions rule or dataset is refused. Memory is bounded by one
shard (``shard_rows``) plus one model batch.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterator, Optional

import torch

from hooks.io import atomic_path, write_text_atomic
from hooks.progress import progress as progress_display

from .activations import AUTO
from .errors import CacheError
from .sources import ModelSource

MANIFEST = "manifest.json"
VERSION = 1


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_shard(root: Path, name: str, parts: list) -> str:
    """Save the rows ``parts`` (concatenated) as the shard ``root/name`` atomically (temp file, rename);
    returns its sha256 for the manifest."""
    from safetensors.torch import save_file

    with atomic_path(root / name) as tmp:  # safetensors writes 0600; atomic_path gives the umask's mode
        save_file({"activations": torch.cat(parts).contiguous()}, str(tmp))
    return _sha256(root / name)


def write_state_json(path: Path, obj) -> Path:
    """The cache's and checkpoints' JSON (``manifest.json``, ``run.json``): indent 1, no trailing
    newline, fsynced before the rename, so a resumable state survives a power cut
    (:func:`hooks.io.write_text_atomic` with ``fsync=True``)."""
    return write_text_atomic(path, json.dumps(obj, indent=1), fsync=True)


def weights_fingerprint(model) -> str:
    """sha256 over parameter names, shapes, dtypes and float64 sums (one pass over the weights)."""
    h = hashlib.sha256(type(model.model).__name__.encode())
    with torch.no_grad():
        for name, p in model.model.named_parameters():
            h.update(f"{name}:{tuple(p.shape)}:{p.dtype}:{float(p.double().sum()):.10e}".encode())
    return h.hexdigest()


def read_manifest(cache_dir) -> dict:
    path = Path(cache_dir) / MANIFEST
    try:
        man = json.loads(path.read_text())
    except FileNotFoundError:
        raise CacheError(f"{cache_dir} is not an activation cache (no {MANIFEST}); build one with "
                         "cache_activations(...) or ActivationStore.from_model(..., cache_dir=...).") from None
    except json.JSONDecodeError as e:
        raise CacheError(f"{path} is corrupt ({e.msg}); delete {cache_dir} and cache again.") from None
    if man.get("version") != VERSION or "shards" not in man:
        raise CacheError(f"{path} is not a version-{VERSION} activation-cache manifest; delete {cache_dir} and cache again.")
    return man


def cache_activations(model, data, site: str, cache_dir, positions=AUTO, *, model_batch_size: int = 8,
                      shard_rows: int = 65536, max_rows: Optional[int] = None, text_key=None, dtype=torch.float32,
                      model_name: Optional[str] = None, progress: bool = True) -> dict:
    """Write (or finish writing) the cache of ``site`` activations; returns the manifest."""
    src = ModelSource(model, data, site, positions, model_batch_size=model_batch_size, text_key=text_key,
                      dtype=dtype, model_name=model_name)
    ident = {"model": src.describe()["model"], "weights": weights_fingerprint(model), "site": src.site,
             "positions": src.described, "dataset": src.dataset_fingerprint(), "dtype": str(dtype).replace("torch.", "")}
    root = Path(cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    if (root / MANIFEST).exists():
        man = read_manifest(root)
        diff = [k for k in ident if k != "model" and man["identity"].get(k) != ident[k]]
        if diff:
            raise CacheError(f"{root} caches a different {', '.join(diff)} ({man['identity'].get(diff[0])!r}); "
                             "pass another cache_dir or delete this one.")
        if not man["complete"] and man.get("world", 1) != 1:
            raise CacheError(f"{root} is a partial cache being written by {man['world']} processes (torchrun); finish "
                             f"it with torchrun --nproc_per_node {man['world']} or delete it.")
    else:
        man = {"version": VERSION, "identity": ident, "d_in": None, "shards": [], "rows": 0, "next_example": 0,
               "complete": False}
        write_state_json(root / MANIFEST, man)
    if man["complete"] or (max_rows is not None and man["rows"] >= max_rows):
        return man
    parts, n, first = [], 0, man["next_example"]

    def flush(next_example: int, complete: bool) -> None:
        nonlocal parts, n, first
        if parts:
            name = f"shard_{len(man['shards']):05d}.safetensors"
            sha = write_shard(root, name, parts)
            man["shards"].append({"file": name, "rows": n, "examples": [first, next_example], "sha256": sha})
            man["rows"] += n
        man.update(next_example=next_example, complete=complete)
        write_state_json(root / MANIFEST, man)
        parts, n, first = [], 0, next_example

    cursor = man["next_example"]
    # a resumed harvest starts at the rows already cached; the rate counts this run's rows only
    with progress_display(f"caching {src.site}", total=max_rows, unit="tok", start=man["rows"], enabled=progress) as bar:
        for cursor, acts in src.chunks(man["next_example"]):
            if acts is None:
                continue
            man["d_in"] = acts.shape[1]
            parts.append(acts.to("cpu"))
            n += acts.shape[0]
            bar.advance(acts.shape[0])
            if max_rows is not None and man["rows"] + n >= max_rows:
                break
            if n >= shard_rows:
                flush(cursor, False)
        else:
            flush(cursor, True)
            return man
        flush(cursor, False)
    return man


class CacheSource:
    """Reads the shards of a cache; each pass visits them in a seeded order."""

    def __init__(self, cache_dir, seed: int = 0):
        self.root = Path(cache_dir)
        self.manifest = read_manifest(self.root)
        if not self.manifest["shards"]:
            raise CacheError(f"The activation cache {self.root} holds no shards yet; run cache_activations first.")
        self.d_in = self.manifest["d_in"]
        self.seed = int(seed)

    def chunks(self, start: int, epoch: int = 0) -> Iterator:
        from safetensors.torch import load_file

        shards = self.manifest["shards"]
        order = torch.randperm(len(shards), generator=torch.Generator().manual_seed(self.seed * 7919 + epoch)).tolist()
        for i in range(start, len(shards)):
            sh = shards[order[i]]
            path = self.root / sh["file"]
            if not path.exists() or _sha256(path) != sh["sha256"]:
                raise CacheError(f"Shard {path} is missing or corrupt (sha256 differs from the manifest); delete "
                                 f"{self.root} and cache again.")
            acts = load_file(str(path))["activations"]
            if acts.shape != (sh["rows"], self.d_in):
                raise CacheError(f"Shard {path} holds {tuple(acts.shape)}, the manifest says ({sh['rows']}, {self.d_in}).")
            yield i + 1, acts

    def describe(self) -> dict:
        ident = self.manifest["identity"]
        return {"source": "cache", "cache_dir": str(self.root), "model": ident["model"], "site": ident["site"],
                "positions": ident["positions"], "dataset": ident["dataset"], "cached_rows": self.manifest["rows"]}

