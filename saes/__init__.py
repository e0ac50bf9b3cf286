"""saes — sparse autoencoders trained on activations of any hooked model (built on ``hooks``).

    import hooks, saes
    model = hooks.load("esm2_t6_8M_UR50D.pt")                # or an LLM, a VLM, "tl:gpt2", ...
    res = saes.train_sae(model, "train.fasta", "resid_post.4", out="runs/sae",
                         arch="topk", k=32, latents=4096, tokens=2_000_000)   # resumable
    saes.evaluate_sae(res.sae, model, "heldout.fasta")      # l0, fvu, mse, dead latents, loss recovered
    steer = saes.splice(res.sae, positions="10:30", clamp={123: 8.0})       # a hooks.Edit
    model.run(seqs, [steer])
    saes.dashboard(res.sae, model, "heldout.fasta", out="runs/dash")       # static HTML latent pages

Training uses sae-lens's training SAEs (TopK: Gao et al. 2024; BatchTopK: Bussmann et al.
2024; JumpReLU: Rajamanoharan et al. 2024; standard L1: Bricken et al. 2023) and its
``SAETrainer``, fed by :class:`ActivationStore`, which streams one site's activations through
the hook registry at chosen positions (ESM residues without CLS/EOS/padding, LLM tokens
without BOS/padding). Files are SAELens's format (``sae_lens.SAE.load_from_disk`` reads
ours, :func:`load_sae` reads theirs). ``import saes`` imports nothing heavy (not even torch);
sae_lens, transformer_lens and nnsight load only when a function needs them.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "ActivationStore": "store", "cache_activations": "cache",
    "TrainConfig": "train", "TrainResult": "train", "train_sae": "train", "fit_sae": "train",
    "make_training_sae": "train", "ARCHS": "train",
    "evaluate_sae": "evaluate", "SAESplice": "splicing", "splice": "splicing",
    "save_sae": "files", "load_sae": "files", "info_of": "files", "site_of": "files", "positions_of": "files",
    "SAEError": "errors", "ConfigError": "errors", "DataError": "errors", "ActivationError": "errors",
    "CheckpointError": "errors", "SAEFileError": "errors", "CacheError": "errors",
}


def __getattr__(name):  # lazy: `import saes` (and `interp --help`) stay light, torch loads on first use
    if name == "dashboard":  # a callable sub-package: saes.dashboard(sae, model, data, out) builds a site
        return importlib.import_module(f"{__name__}.dashboard")
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'saes' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{mod}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + list(_EXPORTS) + ["dashboard"])


__all__ = list(_EXPORTS) + ["dashboard"]
