"""A small ESM-2-architecture masked LM trained on the toy protein world, shipped as the default.

    hm = load_toy_model()                            # hooks.HookedModel over the shipped weights
    log = train_toy_model("runs/toy_prot", TrainConfig(steps=300))    # .train_loop; seeded, reproducible
    interp toy train-protein-model --device cuda --minutes 5 --batch-size 256 --n-train 50000 --warmup 500

Architecture: HF ``EsmForMaskedLM`` (Lin et al. 2023): pre-LN blocks, rotary positions, the
33-token ESM-2 vocabulary, ``token_dropout=False``. Objective: BERT/ESM masked LM (Devlin et al.
2019) on residues only, ``mask_rate`` of them per row (80% <mask>, 10% random residue, 10% kept).
Training data is a fixed seeded toy world (``n_train`` proteins, :mod:`toy_world`), evaluation a
disjoint world (seed + 1,000,003). The log (loss curve, evaluations, wall time, config, probe F1)
is written as ``training_log.json`` next to the weights.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .alphabet import AA_IDS, CLS_ID, EOS_ID, MASK_ID, PAD_ID, background_entropy, esm_tokenizer
from .toy_world import PLANTED, WorldConfig, heptad_d_mask, skeleton_mask

DEFAULT_DIR = Path(__file__).resolve().with_name("toy_model")
LOG_NAME = "training_log.json"
EVAL_SEED_OFFSET = 1_000_003
REGIONS = ("background", "ZN_FING", "ZN_FING_skeleton", "TRANSMEM", "COILED", "COILED_d")


@dataclass
class TrainConfig:
    seed: int = 0
    layers: int = 4
    d_model: int = 128
    heads: int = 4
    ffn: int = 512
    steps: int | None = 4000        # optimisation steps (None: derived from ``minutes``)
    minutes: float | None = None    # wall-clock budget; with ``steps`` it is a hard stop
    batch_size: int = 128
    lr: float = 2e-3
    warmup: int = 200
    weight_decay: float = 0.01
    mask_rate: float = 0.2
    n_train: int = 30000
    n_eval: int = 1000
    eval_every: int = 500
    log_every: int = 50
    device: str = "cpu"
    threads: int | None = None      # torch CPU threads during training (restored afterwards)
    world: dict = field(default_factory=lambda: asdict(WorldConfig()))


def esm_config(tc: TrainConfig):
    from transformers import EsmConfig

    max_tokens = WorldConfig(**tc.world).max_len + 2
    return EsmConfig(vocab_size=33, hidden_size=tc.d_model, num_hidden_layers=tc.layers,
                     num_attention_heads=tc.heads, intermediate_size=tc.ffn, position_embedding_type="rotary",
                     max_position_embeddings=max(128, max_tokens), token_dropout=False, mask_token_id=MASK_ID,
                     pad_token_id=PAD_ID, cls_token_id=CLS_ID, eos_token_id=EOS_ID, layer_norm_eps=1e-5,
                     emb_layer_norm_before=False, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                     tie_word_embeddings=True)


def encode_records(records) -> tuple:
    """(ids (N, P) padded with <pad>, residue mask (N, P)) for ``<cls> residues <eos>`` rows."""
    from .align import encode_sequences

    b = encode_sequences([r.sequence for r in records], ids=[r.id for r in records])
    return b.input_ids, b.residues()


def mask_batch(ids: torch.Tensor, residues: torch.Tensor, rate: float, g: torch.Generator) -> tuple:
    """ESM/BERT masking of residue positions: returns (masked ids, labels with -100 elsewhere)."""
    pick = (torch.rand(ids.shape, generator=g) < rate) & residues
    empty = ~pick.any(1)
    if empty.any():  # at least one masked residue per row
        first = residues.float().argmax(1)
        pick[empty, first[empty]] = True
    r = torch.rand(ids.shape, generator=g)
    rand_ids = torch.tensor(AA_IDS)[torch.randint(0, len(AA_IDS), ids.shape, generator=g)]
    x = ids.clone()
    x[pick & (r < 0.8)] = MASK_ID
    swap = pick & (r >= 0.8) & (r < 0.9)
    x[swap] = rand_ids[swap]
    return x, ids.masked_fill(~pick, -100)


def _lr(step: int, total: int, tc: TrainConfig) -> float:
    if step < tc.warmup:
        return tc.lr * (step + 1) / tc.warmup
    t = min(1.0, (step - tc.warmup) / max(1, total - tc.warmup))
    return tc.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def region_masks(records) -> dict:
    """Per-record residue masks of each evaluation region."""
    out = {k: [] for k in REGIONS}
    for r in records:
        L = len(r.sequence)
        ms = {t: np.zeros(L, bool) for t in PLANTED}
        for f in r.features:
            ms[f.type][f.start:f.end] = True
        out["ZN_FING_skeleton"].append(skeleton_mask(r.sequence, r.features))
        out["COILED_d"].append(heptad_d_mask(r.sequence, r.features))
        for t in PLANTED:
            out[t].append(ms[t])
        out["background"].append(~np.logical_or.reduce([ms[t] for t in PLANTED]))
    return out


def _pad_regions(region_lists, P: int) -> dict:
    out = {}
    for k, lst in region_lists.items():
        t = torch.zeros(len(lst), P, dtype=torch.bool)
        for i, m in enumerate(lst):
            t[i, 1:1 + len(m)] = torch.from_numpy(m)
        out[k] = t
    return out


@torch.no_grad()
def evaluate_mlm(model, records, *, rate: float = 0.15, seed: int = 0, batch_size: int = 256) -> dict:
    """Masked-token loss/accuracy on ``records``, overall and per region (background, each planted
    feature, the zinc-finger skeleton, the coiled coils' ``d`` positions). Masking: a seeded ``rate`` of residues, all -> <mask>."""
    dev = next(model.parameters()).device
    ids, res = encode_records(records)
    regions = _pad_regions(region_masks(records), ids.shape[1])
    g = torch.Generator().manual_seed(seed)
    pick = (torch.rand(ids.shape, generator=g) < rate) & res
    nll = torch.zeros(ids.shape)
    hit = torch.zeros(ids.shape, dtype=torch.bool)
    model.eval()
    for i in range(0, len(ids), batch_size):
        x, p = ids[i:i + batch_size], pick[i:i + batch_size]
        logits = model(input_ids=x.masked_fill(p, MASK_ID).to(dev),
                       attention_mask=(x != PAD_ID).long().to(dev)).logits.float().cpu()
        lp = torch.log_softmax(logits, -1)
        nll[i:i + batch_size] = -lp.gather(-1, x[..., None]).squeeze(-1)
        hit[i:i + batch_size] = logits.argmax(-1) == x
    out = {"loss": float(nll[pick].mean()), "accuracy": float(hit[pick].float().mean()), "n_masked": int(pick.sum()),
           "background_entropy": background_entropy(), "regions": {}}
    for k, m in regions.items():
        sel = pick & m
        out["regions"][k] = {"loss": float(nll[sel].mean()) if sel.any() else float("nan"),
                             "accuracy": float(hit[sel].float().mean()) if sel.any() else float("nan"),
                             "n": int(sel.sum())}
    return out


def toy_model_path() -> Path:
    return DEFAULT_DIR


def load_toy_model(path=None, device=None):
    """The shipped (or a trained) toy protein model as a ``hooks.HookedModel``."""
    import hooks

    path = Path(path) if path is not None else DEFAULT_DIR
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"No toy protein model at {path}; train one with `interp toy train-protein-model`.")
    hm = hooks.load(str(path), device=device, local_files_only=True)
    if hm.tokenizer is None:  # vocab.txt not packaged: rebuild the ESM-2 tokenizer
        hm = hooks.wrap(hm.model, esm_tokenizer())
    return hm


def build_model(tc: TrainConfig):
    from transformers import EsmForMaskedLM

    torch.manual_seed(tc.seed)
    return EsmForMaskedLM(esm_config(tc))
