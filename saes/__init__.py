"""saes — sparse autoencoders trained on activations of any hooked model (built on ``hooks``).

    import hooks, saes
    model = hooks.load("esm2_t6_8M_UR50D.pt")                # or an LLM, a VLM, "tl:gpt2", ...
    res = saes.train_sae(model, "train.fasta", "resid_post.4", out="runs/sae",
                         arch="topk", k=32, latents=4096, tokens=2_000_000)   # resumable
    saes.evaluate_sae(res.sae, model, "heldout.fasta")      # l0, fvu, mse, dead latents, loss recovered
    steer = saes.splice(res.sae, positions="10:30", clamp={123: 8.0})       # a hooks.Edit
    model.run(seqs, [steer])

Training uses sae-lens's training SAEs (TopK: Gao et al. 2024; BatchTopK: Bussmann et al.
2024; JumpReLU: Rajamanoharan et al. 2024; standard L1: Bricken et al. 2023) and its
``SAETrainer``, fed by :class:`ActivationStore`, which streams one site's activations through
the hook registry at chosen positions (ESM residues without CLS/EOS/padding, LLM tokens
without BOS/padding). Files are SAELens's format (``sae_lens.SAE.load_from_disk`` reads
ours, :func:`load_sae` reads theirs). Importing this package never imports sae_lens,
transformer_lens or nnsight; they load when a function needs them.
"""
from .cache import cache_activations
from .errors import ActivationError, CacheError, CheckpointError, ConfigError, DataError, SAEError, SAEFileError
from .evaluate import evaluate_sae
from .files import info_of, load_sae, positions_of, save_sae, site_of
from .splice import SAESplice, splice
from .store import ActivationStore
from .train import ARCHS, TrainConfig, TrainResult, fit_sae, make_training_sae, train_sae

__all__ = [
    "ActivationStore", "cache_activations",
    "TrainConfig", "TrainResult", "train_sae", "fit_sae", "make_training_sae", "ARCHS",
    "evaluate_sae", "SAESplice", "splice",
    "save_sae", "load_sae", "info_of", "site_of", "positions_of",
    "SAEError", "ConfigError", "DataError", "ActivationError", "CheckpointError", "SAEFileError", "CacheError",
]
