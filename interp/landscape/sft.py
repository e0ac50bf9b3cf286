"""Supervised fine-tuning with LoRA (Hu et al., ICLR 2022) through ``peft``.

Defaults are those of Doimo et al. (NeurIPS 2024) as their code sets them
(diegodoimo/geometry_icl_finetuning: ``submit_finetune``, ``finetune.py``,
``utils/optimizer_utils.py``, ``utils/dataset_utils.py``, ``utils/helpers_finetune.py``): rank
64, alpha 16, dropout 0.1 on the attention and MLP projections, learning rate 1e-4 with a
linear warm-up (from 1% of the rate) over ``warmup_ratio`` (0.05) of the steps *capped at 3 steps*
(``get_scheduler``: ``min(warmup_steps, 3)``) then cosine decay to 1%, one epoch, batch 16, no
gradient clipping (``--clip_grad_norm`` defaults to -1), weight decay 0, training prompts
without the subject header (``construct_prompt_train``), each example's loss weighted by
``N / (n_subjects * count_subject)`` (``--weight_samples``, ``compute_weighted_ce``: weighted
mean over the batch), and the loss on the answer only: cross-entropy of the answer letter's
token at the last prompt token.
That equals the causal-LM loss with every label but the answer masked (the answer token
cannot influence earlier positions).

    from interp.landscape.sft import SFTConfig, train_lora, save_adapter, load_adapter, hooked
    cfg = SFTConfig.from_yaml("lora.yaml")              # or SFTConfig(epochs=1, lr=1e-4, ...)
    peft_model, log = train_lora(hm.model, hm.tokenizer, train_records, cfg)
    save_adapter(peft_model, "runs/x/sft/adapter")       # adapter_model.safetensors + config
    ft = hooked(load_adapter(base_model, "runs/x/sft/adapter"), tokenizer)   # same hook sites

``hooked`` wraps ``peft_model.get_base_model()``: the Llama model with LoRA layers injected in
its projections, so ``resid_post.L`` etc. see the fine-tuned computation (wrapping the
``PeftModel`` itself fails: its layers live under ``base_model.model.model``).

A ``lora.yaml`` holds any :class:`SFTConfig` field, e.g.::

    r: 64
    lora_alpha: 16
    lora_dropout: 0.1
    lr: 1.0e-4
    epochs: 1
    batch_size: 16
    adapter: runs/old/sft/adapter     # optional: reuse a trained adapter instead of training
"""
from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Sequence

import torch

from .data import LETTERS, MCQ
from .errors import SFTConfigError
from .prompts import FewShotPrompter, letter_token_ids

__all__ = ["SFTConfig", "train_lora", "answer_loss", "save_adapter", "load_adapter", "hooked", "DEFAULT_TARGETS"]

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class SFTConfig:
    """LoRA fine-tuning settings (paper defaults). ``adapter``: load this trained adapter
    directory instead of training. ``per_subject``: at most this many training examples per subject (default:
    all dev+validation examples). ``max_grad_norm``: None = no clipping. ``warmup_cap``: most
    warm-up steps. ``weight_subjects``: weight the loss by inverse subject frequency."""

    r: int = 64
    lora_alpha: float = 16
    lora_dropout: float = 0.1
    target_modules: tuple = DEFAULT_TARGETS
    lr: float = 1e-4
    epochs: int = 1
    batch_size: int = 16
    warmup_ratio: float = 0.05
    min_lr_ratio: float = 0.01
    weight_decay: float = 0.0
    max_grad_norm: float | None = None     # None: no clipping (the paper's default)
    warmup_cap: int | None = 3             # at most this many warm-up steps (paper: 3)
    weight_subjects: bool = True
    seed: int = 0
    per_subject: int | None = None
    adapter: str | None = None
    extra: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self.target_modules = tuple(self.target_modules)
        checks = [("r", self.r >= 1 and int(self.r) == self.r), ("lora_alpha", self.lora_alpha > 0),
                  ("lora_dropout", 0 <= self.lora_dropout < 1), ("lr", self.lr > 0),
                  ("epochs", self.epochs >= 1 and int(self.epochs) == self.epochs),
                  ("batch_size", self.batch_size >= 1 and int(self.batch_size) == self.batch_size),
                  ("warmup_ratio", 0 <= self.warmup_ratio < 1), ("min_lr_ratio", 0 <= self.min_lr_ratio <= 1),
                  ("max_grad_norm", self.max_grad_norm is None or self.max_grad_norm > 0),
                  ("warmup_cap", self.warmup_cap is None or self.warmup_cap >= 0), ("target_modules", len(self.target_modules) > 0)]
        for name, ok in checks:
            if not ok:
                raise SFTConfigError(f"SFT config: invalid {name} = {getattr(self, name)!r}.")

    @classmethod
    def from_dict(cls, d: dict | None) -> "SFTConfig":
        d = dict(d or {})
        names = {f.name for f in fields(cls)} - {"extra"}
        unknown = sorted(set(d) - names)
        if unknown:
            raise SFTConfigError(f"unknown SFT config key(s) {unknown}; valid keys: {sorted(names)}.")
        return cls(**d)

    @classmethod
    def from_yaml(cls, path) -> "SFTConfig":
        import yaml

        p = Path(path)
        if not p.exists():
            raise SFTConfigError(f"SFT config file {str(p)!r} does not exist.")
        try:
            d = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise SFTConfigError(f"{p}: not valid YAML ({e}).") from None
        if not isinstance(d, dict):
            raise SFTConfigError(f"{p}: expected a mapping of SFT settings, got {type(d).__name__}.")
        cfg = cls.from_dict(d)
        if cfg.adapter is not None and not Path(cfg.adapter).is_absolute() and (p.parent / cfg.adapter).exists():
            cfg.adapter = str((p.parent / cfg.adapter).resolve())  # relative to the YAML file
        return cfg

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("extra")
        d["target_modules"] = list(self.target_modules)
        return d

    def lora_config(self):
        from peft import LoraConfig, TaskType

        return LoraConfig(task_type=TaskType.CAUSAL_LM, r=int(self.r), lora_alpha=self.lora_alpha,
                          lora_dropout=self.lora_dropout, target_modules=list(self.target_modules))


def _check_targets(model, targets: Sequence[str]) -> None:
    names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    missing = [t for t in targets if t not in names]
    if missing:
        raise SFTConfigError(f"LoRA target module(s) {missing} are not linear layers of this model; its linear "
                             f"layers are named {sorted(names)[:20]}. Set target_modules in the SFT config.")


def _batch(tokenizer, prompts: Sequence[str], device) -> dict:
    old = tokenizer.padding_side
    tokenizer.padding_side = "left"  # the last prompt token is the last column for every row
    try:
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        enc = tokenizer(list(prompts), return_tensors="pt", padding=True)
    finally:
        tokenizer.padding_side = old
    am = enc["attention_mask"]
    pos = (am.long().cumsum(-1) - 1).clamp(min=0)  # padding-correct positions (as the hook registry)
    return {"input_ids": enc["input_ids"].to(device), "attention_mask": am.to(device), "position_ids": pos.to(device)}


def _last_logits(model, enc: dict) -> torch.Tensor:
    from .extract import _accepts

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    kw = {"logits_to_keep": 1} if _accepts(inner, "logits_to_keep") else {}
    return model(**enc, use_cache=False, **kw).logits[:, -1].float()


def lr_factor(step: int, total: int, warmup: int, min_lr_ratio: float) -> float:
    """The paper's schedule (``utils/optimizer_utils.py``, ``get_scheduler``): the smaller of a
    linear ramp from ``min_lr_ratio`` to 1 over ``warmup`` steps and a cosine from 1 to
    ``min_lr_ratio`` over the remaining ``total - warmup`` steps."""
    ramp = min_lr_ratio + (1 - min_lr_ratio) * (min(step, warmup) / warmup if warmup > 0 else 1.0)
    t = max(0, step - warmup) / max(1, total - warmup)
    return min(ramp, min_lr_ratio + 0.5 * (1 - min_lr_ratio) * (1 + math.cos(t * math.pi)))


def warmup_steps(cfg: "SFTConfig", total: int) -> int:
    warm = int(cfg.warmup_ratio * total)
    return min(warm, int(cfg.warmup_cap)) if cfg.warmup_cap is not None else warm


def answer_loss(model, tokenizer, records: Sequence[MCQ], *, batch_size: int = 16,
                letters: Sequence[str] = LETTERS, header: bool = False) -> float:
    """Mean answer-only cross-entropy (full vocabulary) of ``records`` in the 0-shot format
    (without the subject header, as the training prompts), in eval mode, without gradients."""
    ids = torch.as_tensor(letter_token_ids(tokenizer, letters))
    prompts = FewShotPrompter(k=0, letters=letters, header=header).prompts(records)
    was = model.training
    model.eval()
    dev = next(model.parameters()).device
    total = 0.0
    try:
        with torch.no_grad():
            for s in range(0, len(prompts), batch_size):
                enc = _batch(tokenizer, prompts[s:s + batch_size], dev)
                tgt = ids[[r.answer for r in records[s:s + batch_size]]].to(dev)
                total += float(torch.nn.functional.cross_entropy(_last_logits(model, enc), tgt, reduction="sum"))
    finally:
        model.train(was)
    return total / len(prompts)


def train_lora(model, tokenizer, records: Sequence[MCQ], cfg: SFTConfig | None = None, *,
               letters: Sequence[str] = LETTERS, log=None):
    """Wrap ``model`` with fresh LoRA adapters (``peft.get_peft_model``, in place) and train them.

    Returns ``(peft_model, history)``; ``history`` has per-step ``loss`` and ``lr``, and the
    answer loss of the training set before and after training (eval mode).
    """
    from peft import get_peft_model

    cfg = cfg or SFTConfig()
    if not records:
        raise SFTConfigError("no training records for SFT.")
    _check_targets(model, cfg.target_modules)
    ids = torch.as_tensor(letter_token_ids(tokenizer, letters))
    prompts = FewShotPrompter(k=0, letters=letters, header=False).prompts(records)
    answers = torch.as_tensor([r.answer for r in records])
    from .data import subject_weights

    weights = torch.as_tensor(subject_weights(records) if cfg.weight_subjects else [1.0] * len(records))
    torch.manual_seed(cfg.seed)
    with warnings.catch_warnings():  # peft calls a deprecated transformers property; not actionable here
        warnings.simplefilter("ignore", FutureWarning)
        peft_model = get_peft_model(model, cfg.lora_config())
    dev = next(peft_model.parameters()).device
    loss_before = answer_loss(peft_model, tokenizer, records, batch_size=cfg.batch_size, letters=letters)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(prompts) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    warm = warmup_steps(cfg, total)

    def lr_at(step: int) -> float:
        return cfg.lr * lr_factor(step, total, warm, cfg.min_lr_ratio)

    g = torch.Generator().manual_seed(cfg.seed)
    history = {"loss": [], "lr": [], "loss_before": loss_before}
    peft_model.train()
    t0, step = time.time(), 0
    for epoch in range(cfg.epochs):
        perm = torch.randperm(len(prompts), generator=g).tolist()
        for s in range(0, len(perm), cfg.batch_size):
            rows = perm[s:s + cfg.batch_size]
            enc = _batch(tokenizer, [prompts[i] for i in rows], dev)
            tgt = ids[answers[rows]].to(dev)
            ce = torch.nn.functional.cross_entropy(_last_logits(peft_model, enc), tgt, reduction="none")
            w = weights[rows].to(ce.device, ce.dtype)
            loss = (ce * w).sum() / w.sum()
            for group in opt.param_groups:
                group["lr"] = lr_at(step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            opt.step()
            history["loss"].append(loss.item())
            history["lr"].append(lr_at(step))
            step += 1
        if log is not None:
            n = steps_per_epoch
            log(f"SFT epoch {epoch + 1}/{cfg.epochs}: mean loss {sum(history['loss'][-n:]) / n:.4f} "
                f"({time.time() - t0:.1f}s)")
    peft_model.eval()
    history["loss_after"] = answer_loss(peft_model, tokenizer, records, batch_size=cfg.batch_size, letters=letters)
    return peft_model, history


def save_adapter(peft_model, path, *, history: dict | None = None) -> Path:
    """Save the LoRA adapter (safetensors + adapter_config.json) into ``path`` atomically."""
    from hooks.loading import atomic_directory

    path = Path(path)
    with atomic_directory(path) as tmp:
        peft_model.save_pretrained(tmp, safe_serialization=True)
        if history is not None:
            (tmp / "train_history.json").write_text(json.dumps(history))
    return path


def load_adapter(model, path):
    """``PeftModel.from_pretrained(model, path)`` in eval mode (LoRA layers injected into ``model``)."""
    from peft import PeftModel

    p = Path(path)
    if not (p / "adapter_config.json").exists():
        raise SFTConfigError(f"{p} is not a LoRA adapter directory (no adapter_config.json); train one with "
                             f"`interp landscape --sft lora.yaml` or point 'adapter' at a saved adapter.")
    with warnings.catch_warnings():  # peft calls a deprecated transformers property; not actionable here
        warnings.simplefilter("ignore", FutureWarning)
        return PeftModel.from_pretrained(model, str(p)).eval()


def hooked(peft_model, tokenizer):
    """A :class:`hooks.HookedModel` over the fine-tuned model (LoRA active), same site names."""
    import hooks

    base = peft_model.get_base_model() if hasattr(peft_model, "get_base_model") else peft_model
    return hooks.wrap(base, tokenizer)
