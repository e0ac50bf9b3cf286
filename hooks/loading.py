"""Loading and wrapping models.

    model = hooks.load("gpt2")                                # HF id (offline when cached)
    model = hooks.load("/path/to/saved_dir", dtype="bfloat16", device="cuda")
    model = hooks.load("esm2_t6_8M_UR50D.pt")                 # fair-esm checkpoint
    model = hooks.load("tl:gpt2")                             # TransformerLens HookedTransformer
    model = hooks.wrap(my_hf_model, tokenizer)                # an already-built model

``wrap`` lives in :mod:`hooks.wrapping` (the adapters that build their own models import it from
there, so no file-level import cycle runs through this module). Weights are read from safetensors when the checkpoint has them and otherwise with
``weights_only=True``; ``trust_remote_code`` stays off unless you pass it.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch

from .errors import HookError
from .hf_backend import set_bos_policy
from .model import HookedModel  # noqa: F401 (the return annotation of load)
from .wrapping import wrap  # noqa: F401 (hooks.loading.wrap: the historical spelling)

VLM_TYPES = ("llava", "chameleon", "janus", "emu3", "llava_next", "pixtral")


def _dtype(dtype):
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return "auto"
    try:
        return getattr(torch, str(dtype))
    except AttributeError:
        raise HookError(f"Unknown dtype {dtype!r}; use e.g. 'float32', 'bfloat16', 'float16'.") from None


def load(name_or_path, *, dtype=None, device=None, device_map=None, attn_implementation: str = "sdpa",
         trust_remote_code: bool = False, local_files_only: bool | None = None, max_memory=None,
         offload_folder=None, verify: bool = True, prepend_bos=None) -> HookedModel:
    """Load a model by HF id, local directory, HF cache, fair-esm checkpoint or ``tl:NAME``.

    ``prepend_bos``: the loaded model's BOS policy for texts (None: the default, position 0 is BOS
    whenever the tokenizer has one; see :mod:`hooks.hf_backend`), as ``hooks.wrap(..., prepend_bos=)``.

    ``device_map`` ("auto" or ``{module: device | "cpu" | "disk"}``), ``max_memory`` and ``offload_folder``
    go to accelerate through ``from_pretrained``; every intervention works on the dispatched model
    (tests/distributed/test_device_map.py). ``verify`` runs the site self-check (:mod:`hooks.verify`).
    """
    name = str(name_or_path)
    dt = _dtype(dtype)
    if name.startswith("tl:"):
        from .adapters.transformer_lens import load_tl

        return set_bos_policy(load_tl(name[3:], dtype=dt, device=device), prepend_bos)
    if name.endswith(".pt") or name.startswith("esm:") or name.startswith("fair-esm:"):
        from .adapters.fair_esm import load_fair_esm

        path = name.split(":", 1)[-1] if ":" in name and not Path(name).exists() else name
        return set_bos_policy(load_fair_esm(path, device=device), prepend_bos)
    from transformers import AutoConfig

    kw = dict(trust_remote_code=trust_remote_code)
    if local_files_only is not None:
        kw["local_files_only"] = local_files_only
    try:
        cfg = AutoConfig.from_pretrained(name, **kw)
    except OSError as e:
        if local_files_only is None:
            try:
                kw["local_files_only"] = True
                cfg = AutoConfig.from_pretrained(name, **kw)
            except OSError:
                raise HookError(
                    f"Could not load {name!r}: not a local directory, not in the HF cache, and the hub is unreachable "
                    f"({e.__class__.__name__}). Download it once with network, or pass a local path."
                ) from None
        else:
            raise HookError(f"Could not load {name!r}: {e}") from None
    cls = _model_class(cfg)
    from .attention import ensure_registered

    ensure_registered()
    mkw = dict(kw, attn_implementation=attn_implementation)
    if dt is not None:
        mkw["dtype"] = dt
    if device_map is not None:
        mkw["device_map"] = device_map
    if max_memory is not None:
        mkw["max_memory"] = max_memory
    if offload_folder is not None:
        mkw["offload_folder"] = str(offload_folder)
    try:
        model = cls.from_pretrained(name, **mkw)
    except Exception as e:  # noqa: BLE001 - re-raised unless it is a damaged weights file
        bad = damaged_weights(name)
        if bad is None:
            raise
        path, why = bad
        raise HookError(
            f"Could not load {name!r}: the weights file {path} is damaged ({why}). It was probably truncated "
            "by an interrupted download or copy: delete it and download or save the model again."
        ) from e
    if device is not None and device_map is None:
        model.to(device)
    tok = _tokenizer(name, cfg, kw)
    return wrap(model, tok, verify=verify, prepend_bos=prepend_bos)


def damaged_weights(name) -> tuple | None:
    """``(path, reason)`` of the first safetensors file of a local checkpoint that cannot be read, else None."""
    root = Path(name)
    if not root.is_dir():
        return None
    from safetensors import safe_open

    for f in sorted(root.glob("*.safetensors")):
        try:
            with safe_open(str(f), framework="pt") as fh:
                for k in fh.keys():
                    fh.get_slice(k)
        except Exception as e:  # noqa: BLE001 - any failure to read means damaged
            return f, f"{type(e).__name__}: {e}"
    return None


def _model_class(cfg):
    import transformers as T

    mt = cfg.model_type
    if mt == "esm":
        return T.EsmForMaskedLM
    if mt in VLM_TYPES or hasattr(cfg, "vision_config") or hasattr(cfg, "vq_config"):
        for name in ("AutoModelForImageTextToText", "AutoModelForVision2Seq"):
            auto = getattr(T, name, None)
            if auto is not None and type(cfg) in auto._model_mapping:
                return auto
    if type(cfg) in T.AutoModelForCausalLM._model_mapping:
        return T.AutoModelForCausalLM
    if type(cfg) in T.AutoModelForMaskedLM._model_mapping:
        return T.AutoModelForMaskedLM
    return T.AutoModel


def _tokenizer(name, cfg, kw):
    import transformers as T

    loaders = [T.AutoProcessor, T.AutoTokenizer] if cfg.model_type in VLM_TYPES else [T.AutoTokenizer]
    for loader in loaders:
        try:
            return loader.from_pretrained(name, **kw)
        except Exception:  # noqa: BLE001 - a model without a tokenizer is allowed
            continue
    return None


@contextlib.contextmanager
def atomic_directory(path):
    """Yield a temporary directory beside ``path``; on success it replaces ``path`` in one rename.

    An existing ``path`` is kept until the new one is complete; on error nothing changes::

        with atomic_directory("runs/model") as tmp:
            model.save_pretrained(tmp)
    """
    import shutil
    import tempfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        from .permissions import as_umask_allows

        as_umask_allows(tmp)  # mkdtemp made it 0700, safetensors' files 0600
        if path.exists():
            old = path.with_name(f".{path.name}.old{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_pretrained_atomic(model, tokenizer, path) -> None:
    """Save an HF model (safetensors) + tokenizer into ``path`` atomically (temp dir, rename)."""
    with atomic_directory(path) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
