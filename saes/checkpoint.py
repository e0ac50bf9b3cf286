"""Training checkpoints: written atomically, verified before resuming.

A checkpoint is a directory ``checkpoints/step_000000120/`` holding the training SAE
(``cfg.json`` + ``sae_weights.safetensors``, sae-lens ``save_model``), sae-lens's trainer
state (``training_state.pt``, ``activation_scaler.json``: optimizer, LR and coefficient
schedules, dead-latent counters), the activation store's position (``store_state.safetensors``
+ ``run.json``) and a ``manifest.json`` with the sha256 of every other file. It is built
in a temp directory and renamed into place, so a crash never leaves a partial
``step_*`` directory; one that lacks its manifest or whose files do not match it is
reported as corrupt instead of being resumed from.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Optional

import torch

from .cache import _sha256, write_state_json
from .errors import CheckpointError

MANIFEST, RUN, STORE = "manifest.json", "run.json", "store_state.safetensors"


def _step_dirs(root: Path) -> list:
    if not root.is_dir():
        return []
    out = []
    for p in root.iterdir():
        if p.is_dir() and p.name.startswith("step_") and p.name[5:].isdigit():
            out.append((int(p.name[5:]), p))
    return [p for _, p in sorted(out)]


def save_checkpoint(root, step: int, trainer, store, run: dict, keep: int = 2) -> Path:
    """Write checkpoint ``step`` under ``root`` and keep the newest ``keep`` of them."""
    from safetensors.torch import save_file

    from hooks.loading import atomic_directory

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:09d}"
    with atomic_directory(final) as tmp:  # temp dir beside it, umask modes, one rename; removed on error
        trainer.sae.save_model(str(tmp))
        trainer.save_trainer_state(tmp)
        st = store.state_dict()
        tensors = {"torch_rng": torch.get_rng_state()}
        if st["carry"] is not None:
            tensors["carry"] = st["carry"].contiguous()
        save_file(tensors, str(tmp / STORE))
        write_state_json(tmp / RUN, {**run, "step": step, "store": st["meta"]})
        files = {p.name: _sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        write_state_json(tmp / MANIFEST, {"step": step, "files": files})
    for old in _step_dirs(root)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def verify(path: Path) -> dict:
    """Check a checkpoint against its manifest; return its ``run.json``."""
    man_path = path / MANIFEST
    try:
        man = json.loads(man_path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"Checkpoint {path} is partial: it has no {MANIFEST}. Delete it to resume from the "
                              "previous checkpoint, or train with resume=False (--no-resume) to start over.") from None
    except json.JSONDecodeError:
        raise CheckpointError(f"Checkpoint {path} is corrupt: {MANIFEST} is not valid JSON. Delete the directory to "
                              "resume from the previous checkpoint, or start over with --no-resume.") from None
    for name, digest in man.get("files", {}).items():
        f = path / name
        if not f.exists():
            raise CheckpointError(f"Checkpoint {path} is partial: {name} is missing. Delete the directory to resume "
                                  "from the previous checkpoint, or start over with --no-resume.")
        if _sha256(f) != digest:
            raise CheckpointError(f"Checkpoint {path} is corrupt: {name} does not match its checksum. Delete the "
                                  "directory to resume from the previous checkpoint, or start over with --no-resume.")
    return json.loads((path / RUN).read_text())


def latest(root) -> Optional[Path]:
    """The newest ``step_*`` checkpoint under ``root`` (temp leftovers of a crash are removed)."""
    root = Path(root)
    if root.is_dir():
        for p in root.iterdir():
            # atomic_directory's temp (.step_N.xxxx) or swapped-out copy (.step_N.oldPID); .tmp-step_: older runs
            if p.name.startswith((".step_", ".tmp-step_")):
                shutil.rmtree(p, ignore_errors=True)
    dirs = _step_dirs(root)
    return dirs[-1] if dirs else None


def restore(path: Path, trainer, store, run: dict) -> int:
    """Load weights, trainer state, store position and RNG from a verified checkpoint."""
    from safetensors.torch import load_file

    try:
        trainer.sae.load_weights_from_checkpoint(path)
        trainer.load_trainer_state(path)
        tensors = load_file(str(path / STORE))
    except Exception as e:  # noqa: BLE001 - torch/safetensors raise many kinds for damaged files
        raise CheckpointError(f"Checkpoint {path} could not be loaded ({type(e).__name__}: {str(e)[:200]}). Delete "
                              "it to resume from the previous checkpoint, or start over with --no-resume.") from None
    store.load_state_dict({"meta": run["store"], "carry": tensors.get("carry")})
    torch.set_rng_state(tensors["torch_rng"])
    step = int(run["step"])
    trainer.n_training_steps = step  # sae-lens saves mid-step, one below the completed count
    return step
