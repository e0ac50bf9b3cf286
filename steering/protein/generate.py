"""Masked-LM protein generation by iterative unmasking, through the hook registry.

    from steering.protein.generate import generate, GenerationConfig
    hm = load_toy_model()
    seqs = generate(hm, n=100, length=60, config=GenerationConfig(seed=0))      # from scratch
    seqs = generate(hm, templates=["MKT____AAA"])                               # fill masked regions
    seqs = generate(hm, templates=["MKTAYIAKQR"], mask_positions=[3, 4, 5])     # mask a list
    seqs = generate(hm, n=100, length=60, interventions=[saes.splice(sae, clamp={7: 4.0})])

Each row starts as ``<cls> residues-or-<mask> <eos>``; every step runs the whole batch through
``model.run(inputs, interventions)`` (so SAE splices, steering vectors and ablations act at every
step), picks up to ``per_step`` still-masked positions per row — at random, by confidence (the
most probable prediction first) or left to right — and samples their residues from the
model's distribution restricted to ``alphabet`` (the 20 standard amino acids by default),
with ``temperature`` and ``top_k``. Sampling uses one seeded ``torch.Generator``, so the same
seed, batch size and settings give the same sequences, and an intervened and a plain run
share their random stream (paired comparisons). ``interventions`` may be a callable
``(input_ids, attention_mask) -> list`` to build batch-shaped interventions (position masks).

References: Wang & Cho (2019), "BERT has a mouth, and it must speak" (Gibbs-style sampling from
masked LMs); Ghazvininejad et al. (2019, Mask-Predict: confidence-ordered parallel unmasking);
Lin et al. (2023, ESM-2).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Optional, Sequence, Union

import torch

from .alphabet import CLS_ID, EOS_ID, MASK_ID, PAD_ID, STANDARD_AA, TOKEN_ID, check_sequence
from .errors import ProteinDataError

MASK_CHAR = "_"
ORDERS = ("random", "confidence", "left-to-right")


class GenerationError(ProteinDataError):
    """Generation settings or templates that cannot work."""


@dataclass
class GenerationConfig:
    temperature: float = 1.0
    top_k: Optional[int] = None      # keep the k most probable residues (None: all of ``alphabet``)
    per_step: int = 1                # positions unmasked per row and step
    order: str = "random"            # random | confidence | left-to-right
    batch_size: int = 100
    seed: int = 0
    alphabet: str = STANDARD_AA

    def validate(self) -> "GenerationConfig":
        if self.order not in ORDERS:
            raise GenerationError(f"order must be one of {ORDERS}, got {self.order!r}.")
        if not self.temperature > 0:
            raise GenerationError(f"temperature must be > 0, got {self.temperature}.")
        if self.per_step < 1 or self.batch_size < 1:
            raise GenerationError("per_step and batch_size must be >= 1.")
        bad = sorted(set(self.alphabet) - set(STANDARD_AA + "XBUZO"))
        if not self.alphabet or bad:
            raise GenerationError(f"alphabet must be residue letters ESM-2 knows; unknown: {bad}.")
        if self.top_k is not None and not 1 <= self.top_k <= len(set(self.alphabet)):
            raise GenerationError(f"top_k must be in 1..{len(set(self.alphabet))}, got {self.top_k}.")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


def make_templates(templates: Union[str, Sequence[str], None] = None, *, n: Optional[int] = None,
                   length: Optional[int] = None, mask_positions: Optional[Sequence[int]] = None,
                   mask_char: str = MASK_CHAR) -> list:
    """Template strings with ``mask_char`` where residues are to be generated.

    ``length`` (and ``n``): ``n`` fully masked sequences; ``templates``: one string (repeated
    ``n`` times when ``n`` is given) or a list; ``mask_positions``: 0-based residues masked in
    every template."""
    if templates is None:
        if length is None or length < 1:
            raise GenerationError("Give templates=... or length=N (>= 1) to generate from scratch.")
        templates = [mask_char * int(length)]
    elif isinstance(templates, str):
        templates = [templates]
    templates = list(templates)
    if n is not None:
        if n < 1:
            raise GenerationError(f"n must be >= 1, got {n}.")
        if len(templates) == 1:
            templates = templates * int(n)
        elif len(templates) != n:
            raise GenerationError(f"n={n} but {len(templates)} templates were given.")
    if not templates:
        raise GenerationError("No templates to generate from.")
    out = []
    for i, t in enumerate(templates):
        chars = list(t.strip())
        for p in mask_positions or ():
            if not -len(chars) <= p < len(chars):
                raise GenerationError(f"mask position {p} is outside template {i} of length {len(chars)}.")
            chars[p] = mask_char
        fixed = "".join(c for c in chars if c != mask_char)
        check_sequence(fixed, f"template {i}")
        out.append("".join(c.upper() if c != mask_char else c for c in chars))
    return out


def encode_templates(templates: Sequence[str], mask_char: str = MASK_CHAR) -> tuple:
    """``(input_ids, attention_mask)`` of ``<cls> template <eos> <pad>...`` with ``<mask>`` at ``mask_char``."""
    rows = [[CLS_ID] + [MASK_ID if c == mask_char else TOKEN_ID[c] for c in t] + [EOS_ID] for t in templates]
    from hooks.hf_backend import pad_rows

    return pad_rows(rows, PAD_ID)


def decode(ids: torch.Tensor, attention_mask: torch.Tensor) -> list:
    from .alphabet import ESM_VOCAB

    out = []
    for row, m in zip(ids.tolist(), attention_mask.bool().tolist()):
        out.append("".join(ESM_VOCAB[t] for t, keep in zip(row, m) if keep and t not in (CLS_ID, EOS_ID)))
    return out


def _pick(score: torch.Tensor, masked: torch.Tensor, per_step: int) -> torch.Tensor:
    """(B, P) bool: up to ``per_step`` masked positions per row with the highest ``score``."""
    score = score.masked_fill(~masked, float("-inf"))
    k = min(per_step, score.shape[1])
    top = score.topk(k, dim=1).indices
    chosen = torch.zeros_like(masked)
    chosen.scatter_(1, top, True)
    return chosen & masked


@torch.no_grad()
def unmask(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, interventions=(),
           config: Optional[GenerationConfig] = None, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Fill every ``<mask>`` of one batch; returns the new ids (CPU)."""
    cfg = (config or GenerationConfig()).validate()
    g = generator or torch.Generator().manual_seed(cfg.seed)
    allowed = torch.tensor([TOKEN_ID[a] for a in dict.fromkeys(cfg.alphabet)])
    ids = input_ids.clone().cpu()
    am = attention_mask.cpu()
    ivs = interventions(ids, am) if callable(interventions) else list(interventions)
    while True:
        masked = ids == MASK_ID
        if not masked.any():
            return ids
        logits = model.run({"input_ids": ids, "attention_mask": am}, ivs).logits
        logits = logits.float().cpu()[..., allowed] / cfg.temperature              # (B, P, A)
        if cfg.top_k is not None and cfg.top_k < len(allowed):
            kth = logits.topk(cfg.top_k, dim=-1).values[..., -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = torch.softmax(logits, -1)
        if cfg.order == "random":
            score = torch.rand(ids.shape, generator=g)
        elif cfg.order == "confidence":
            score = probs.max(-1).values
        else:
            score = -torch.arange(ids.shape[1], dtype=torch.float).expand(ids.shape)
        chosen = _pick(score, masked, cfg.per_step)
        draw = torch.multinomial(probs[chosen], 1, generator=g).squeeze(1)
        ids[chosen] = allowed[draw]


def generate(model, templates=None, *, n: Optional[int] = None, length: Optional[int] = None,
             mask_positions: Optional[Sequence[int]] = None, interventions: Union[Sequence, Callable] = (),
             config: Optional[GenerationConfig] = None, mask_char: str = MASK_CHAR, **overrides) -> list:
    """Generate proteins (strings) from templates or from scratch; see the module docstring.

    ``overrides`` are :class:`GenerationConfig` fields (``temperature=0.8, order="confidence"``)."""
    from dataclasses import replace

    cfg = replace(config or GenerationConfig(), **overrides).validate()
    temps = make_templates(templates, n=n, length=length, mask_positions=mask_positions, mask_char=mask_char)
    g = torch.Generator().manual_seed(cfg.seed)
    out = []
    for i in range(0, len(temps), cfg.batch_size):
        ids, am = encode_templates(temps[i:i + cfg.batch_size], mask_char)
        new = unmask(model, ids, am, interventions=interventions, config=cfg, generator=g)
        out += decode(new, am)
    return out
