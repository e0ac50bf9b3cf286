"""SAE files in SAELens format (``cfg.json`` + ``sae_weights.safetensors``), written atomically.

    save_sae(training_sae, "runs/sae", metadata={"interp": {...}})   # inference form, like SAELens
    sae = load_sae("runs/sae")                       # ours or any SAELens-saved SAE directory
    sae_lens.SAE.load_from_disk("runs/sae")          # the same SAE: identical encode/decode
    site_of(sae), positions_of(sae)                  # "resid_post.3", "auto"

Our metadata lives in ``cfg.json["metadata"]``: SAELens's own keys (``model_name``,
``hook_name``, ``dataset_path``) plus an ``"interp"`` mapping with the model, canonical
site, position rule, dataset fingerprint and training tokens. SAELens keeps unknown
metadata keys, so its loader reads these files unchanged.

Writes are atomic: a new directory is built as a temp directory and renamed; into an
existing directory (one holding checkpoints and logs) ``cfg.json`` is removed first and
written last, each file through a temp file and ``os.replace``, so a crash leaves either
the previous complete SAE, the new one, or a directory without ``cfg.json`` that
:func:`load_sae` reports as incomplete — never a mix.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Optional

from .errors import SAEFileError

CFG, WEIGHTS, SPARSITY = "cfg.json", "sae_weights.safetensors", "sparsity.safetensors"
_TL_HOOK = re.compile(r"^blocks\.(\d+)\.(?:hook_(resid_pre|resid_mid|resid_post|attn_out|mlp_out)|attn\.(hook_z))$")


def _install(tmp: Path, path: Path) -> None:
    if not path.exists():
        os.replace(tmp, path)
        return
    if not path.is_dir():
        raise SAEFileError(f"{path} exists and is a file; an SAE is saved as a directory. Pass another path.")
    if (path / CFG).exists():
        os.remove(path / CFG)
    for name in sorted(os.listdir(tmp), key=lambda n: n == CFG):  # cfg.json last
        os.replace(tmp / name, path / name)


def save_sae(sae, path, *, metadata: Optional[dict] = None, sparsity=None) -> Path:
    """Save ``sae`` (a sae-lens ``SAE`` or ``TrainingSAE``) to directory ``path``.

    Training SAEs are saved in their inference form (``save_inference_model``: TopK norms
    folded, BatchTopK as JumpReLU), as SAELens's own runner does. ``metadata`` entries are
    added to ``sae.cfg.metadata``.
    """
    from safetensors.torch import save_file
    from sae_lens.saes.sae import TrainingSAE

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for k, v in (metadata or {}).items():
        sae.cfg.metadata[k] = v
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp", dir=path.parent))
    try:
        if isinstance(sae, TrainingSAE):
            sae.save_inference_model(tmp)
        else:
            sae.save_model(tmp)
        if sparsity is not None:
            save_file({"sparsity": sparsity.detach().cpu().contiguous()}, str(tmp / SPARSITY))
        from hooks.permissions import as_umask_allows

        as_umask_allows(tmp)  # mkdtemp made it 0700, safetensors' files 0600
        _install(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def read_cfg(path) -> dict:
    """``cfg.json`` of an SAE directory, checked; raises :class:`SAEFileError` with the fix."""
    p = Path(path)
    if not p.is_dir():
        raise SAEFileError(f"{p} is not a directory; pass the SAE directory holding {CFG} and {WEIGHTS}.")
    if not (p / CFG).exists():
        hint = (" It holds weights but no config: a save was interrupted; train again (it resumes from the last "
                "checkpoint)." if (p / WEIGHTS).exists() else f" It has no {CFG}: is it an SAE directory?")
        raise SAEFileError(f"SAE directory {p} is incomplete.{hint}")
    try:
        cfg = json.loads((p / CFG).read_text())
    except json.JSONDecodeError as e:
        raise SAEFileError(f"{p / CFG} is not valid JSON ({e.msg}, line {e.lineno}); the file is corrupt.") from None
    missing = [k for k in ("d_in", "d_sae") if k not in cfg]
    if missing:
        raise SAEFileError(f"{p / CFG} lacks {missing}; it is not an SAELens SAE config.")
    if not (p / WEIGHTS).exists():
        raise SAEFileError(f"SAE directory {p} has {CFG} but no {WEIGHTS}; copy the weights file too.")
    return cfg


def load_sae(path, *, device: str = "cpu", dtype: Optional[str] = None):
    """Load an SAE directory (ours or SAELens's) as a sae-lens inference ``SAE``."""
    from sae_lens import SAE

    read_cfg(path)
    try:
        return SAE.load_from_disk(str(path), device=device, dtype=dtype)
    except Exception as e:  # noqa: BLE001 - safetensors/torch raise many types for a damaged file
        raise SAEFileError(f"Could not load the SAE in {path}: {type(e).__name__}: {str(e)[:300]}. The weights file "
                           "is corrupt or does not match cfg.json; save or copy it again.") from None


def info_of(sae) -> dict:
    """Our ``"interp"`` metadata of an SAE ({} for SAEs trained elsewhere)."""
    md = sae.cfg.metadata
    v = md.get("interp") if hasattr(md, "get") else None
    return dict(v) if isinstance(v, dict) else {}


def site_of(sae) -> Optional[str]:
    """The canonical site an SAE reads: ours from metadata; SAELens TL hook names are
    translated (``blocks.3.hook_resid_post`` → ``resid_post.3``, ``blocks.3.attn.hook_z`` →
    ``head_out.3``, ``hook_embed`` → ``embed``); anything else is returned as is."""
    info = info_of(sae)
    if info.get("site"):
        return info["site"]
    hook = sae.cfg.metadata.get("hook_name")
    if not hook:
        return None
    if hook == "hook_embed":
        return "embed"
    m = _TL_HOOK.match(hook)
    if m:
        return f"{m.group(2) or 'head_out'}.{m.group(1)}"
    return hook


def positions_of(sae):
    """The position rule an SAE was trained with (``"auto"`` when unknown)."""
    from hooks.positions import normalize

    rule = info_of(sae).get("positions", {}).get("rule", "auto")
    return normalize(rule)


def hook_name_for(model, site: str) -> str:
    """The name SAELens tools know a site by: TL hook paths for TransformerLens models."""
    if model.adapter.name != "transformer_lens":
        return site
    module = model.resolve_sites(site)[0].module
    for name, m in model.model.named_modules():
        if m is module:
            return name
    return site
