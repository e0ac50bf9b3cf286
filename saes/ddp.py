"""Data-parallel SAE training over torch.distributed ranks, inside sae-lens's own ``SAETrainer``.

The global batch is fixed whatever the world size: every rank reads the same global stream (the same
:class:`~saes.store.ActivationStore`, same seed) and trains on its slice ``rows[r*B/W:(r+1)*B/W]``
(:class:`RankSlice`). The gradient of each rank's mean loss is all-reduced and divided by W as it
accumulates (``register_post_accumulate_grad_hook``), so the optimizer, gradient clipping and LR schedule
see exactly the gradient of the global batch's mean loss, as ``DistributedDataParallel`` would give.
(Not the ``DistributedDataParallel`` wrapper itself: sae-lens's trainer calls ``sae.training_forward_pass``,
not ``forward``, which DDP needs to prepare its reducer.) Dead-latent counters and firing frequencies are
reduced after every step, and metrics are computed on the gathered global batch, so every rank holds the
single-process trainer's state (up to float summation order) and checkpoints written by rank 0 resume at any
world size. Every sae-lens loss used here is a mean over rows, so equal slices make this exact; ``batchtopk``
(a top-k over the whole batch) is refused for world > 1.

Reference: EleutherAI sparsify, ``sparsify/trainer.py`` (``Trainer.fit``): SAEs wrapped in
``DistributedDataParallel``, the ``did_fire`` mask all-reduced with MAX ("max is any") before the dead-latent
counters are updated, metrics all-reduced as means, rank-0 checkpoints followed by a barrier. Our MIN over the
per-rank ``n_forward_passes_since_fired`` is the same rule (a latent that fired on any rank is reset).

    torchrun --nproc_per_node 8 -m interp sae train --model M --site resid_post.6 --data d.txt \\
        --out runs/sae --cache-dir runs/acts --batch-size 4096 ...
"""
from __future__ import annotations

import dataclasses

import torch
import torch.distributed as dist

from . import distributed as D
from .errors import ConfigError


def check_config(cfg, w: int) -> None:
    if w <= 1:
        return
    if cfg.batch_size % w:
        raise ConfigError(f"batch_size {cfg.batch_size} is not divisible by the {w} processes; the global batch is "
                          f"split evenly over ranks. Use a batch size that is a multiple of {w}.")
    if cfg.arch == "batchtopk":
        raise ConfigError("arch='batchtopk' keeps the top k*B activations of the whole batch, which data-parallel "
                          "ranks do not see; train it with one process (or use topk).")


class RankSlice:
    """The global :class:`~saes.store.ActivationStore` stream, each batch cut to this rank's rows."""

    def __init__(self, store, r: int, w: int):
        self.store, self.r, self.w = store, r, w

    def __iter__(self):
        return self

    def __next__(self) -> torch.Tensor:
        x = next(self.store)
        b = x.shape[0] // self.w
        return x[self.r * b:(self.r + 1) * b]

    def __getattr__(self, name):  # d_in, describe, state_dict, close, limit_rows, fill_seconds, ...
        return getattr(self.store, name)

    def __setattr__(self, name, value):
        if name in ("store", "r", "w"):
            object.__setattr__(self, name, value)
        else:
            setattr(self.store, name, value)


def average_gradients(module: torch.nn.Module) -> list:
    """All-reduce (mean) each parameter's gradient as soon as backward has accumulated it; returns handles."""
    w = D.world()

    def hook(p):
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
        p.grad.div_(w)

    return [p.register_post_accumulate_grad_hook(hook) for p in module.parameters() if p.requires_grad]


def sync_parameters(module: torch.nn.Module) -> None:
    """Broadcast rank 0's parameters (the seeded init is equal anyway; this makes it certain)."""
    with torch.no_grad():
        for p in module.parameters():
            dist.broadcast(p.data, src=0)


def reduce_step(trainer, freq_before: torch.Tensor, local_rows: int) -> None:
    """Make the dead-latent statistics and sample count those of the global batch."""
    w = D.world()
    # fired on any rank -> 0 on that rank; not fired anywhere -> n+1 everywhere: the min is the global value
    dist.all_reduce(trainer.n_forward_passes_since_fired, op=dist.ReduceOp.MIN)
    delta = trainer.act_freq_scores - freq_before
    dist.all_reduce(delta, op=dist.ReduceOp.SUM)
    trainer.act_freq_scores = freq_before + delta
    trainer.n_training_samples += local_rows * (w - 1)


def gather_output(output):
    """The step output of the global batch (rows of every rank, losses averaged): for metrics only."""
    def cat(t):
        if t is None or not isinstance(t, torch.Tensor) or t.dim() == 0:
            return t
        t = t.detach().contiguous()
        if t.is_sparse:
            t = t.to_dense()
        parts = [torch.empty_like(t) for _ in range(D.world())]
        dist.all_gather(parts, t)
        return torch.cat(parts)

    def mean(v):
        if isinstance(v, torch.Tensor) and v.dim() == 0:
            v = v.detach().clone()
            dist.all_reduce(v, op=dist.ReduceOp.SUM)
            return v / D.world()
        return v

    return dataclasses.replace(output, sae_in=cat(output.sae_in), sae_out=cat(output.sae_out),
                               feature_acts=cat(output.feature_acts), hidden_pre=cat(output.hidden_pre),
                               loss=mean(output.loss), losses={k: mean(v) for k, v in output.losses.items()},
                               metrics={k: mean(v) for k, v in output.metrics.items()})
