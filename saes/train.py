"""Train SAEs with sae-lens's own training classes and ``SAETrainer``, fed by our store.

    import hooks, saes
    model = hooks.load("esm2_t6_8M_UR50D.pt")
    res = saes.train_sae(model, "uniref_sample.fasta", "resid_post.4", out="runs/esm_sae",
                         arch="topk", k=32, latents=4096, tokens=2_000_000)
    res.sae            # sae-lens inference SAE, also saved in runs/esm_sae (SAELens format)
    res.summary        # steps, tokens, tokens/s, share of wall time in SAE steps

Architectures (sae-lens ``*TrainingSAE`` classes, unchanged):

* ``topk`` — TopK activation with the AuxK dead-latent loss (Gao et al. 2024, "Scaling and
  evaluating sparse autoencoders");
* ``batchtopk`` — k active latents on average over the batch, saved as JumpReLU
  (Bussmann et al. 2024, "BatchTopK sparse autoencoders");
* ``jumprelu`` — learned thresholds with an L0 penalty through straight-through
  estimators (Rajamanoharan et al. 2024, "Jumping ahead");
* ``standard`` — ReLU with an L1 penalty (Bricken et al. 2023, "Towards monosemanticity").

The training loop is sae-lens's ``SAETrainer.fit``; we subclass it only to time steps and
write the JSONL metrics log, and hand it a ``save_checkpoint_fn`` that writes our atomic
checkpoints (:mod:`saes.checkpoint`). With ``out`` set, a run resumes from the newest
checkpoint there and, with the same settings and seed, ends with exactly the weights of an
uninterrupted run; once the SAE is saved the checkpoints are removed, and re-running a
finished run returns the saved SAE without training.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Callable, Optional

import torch

from . import checkpoint as C
from .errors import CheckpointError, ConfigError

ARCHS = ("topk", "batchtopk", "jumprelu", "standard")
# settings that may change between a run and its resumption without changing the result
_FREE = ("checkpoint_every", "keep_checkpoints", "log_every", "wandb", "wandb_project", "device", "prefetch")


@dataclass
class TrainConfig:
    """Everything that defines a training run (sae-lens names in brackets)."""

    arch: str = "topk"
    latents: int = 4096  # [d_sae]
    k: float = 32  # topk / batchtopk
    l1_coefficient: float = 5.0  # standard
    l0_coefficient: float = 1.0  # jumprelu
    tokens: int = 1_000_000  # training activations (rows); rounded down to whole batches
    batch_size: int = 4096  # [train_batch_size_tokens]
    buffer_size: Optional[int] = None  # store buffer rows (default 16 batches)
    model_batch_size: int = 8  # examples per model forward while collecting
    lr: float = 3e-4
    lr_scheduler: str = "constant"
    lr_warm_up_steps: int = 0
    lr_decay_steps: int = 0
    normalize_activations: str = "none"  # or "expected_average_only_in" (scale folded into the weights)
    n_batches_for_norm_estimate: int = 100
    dead_feature_window: int = 1000
    feature_sampling_window: int = 2000
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    checkpoint_every: int = 1000  # steps (with ``out`` set); 0 = no checkpoints
    keep_checkpoints: int = 2
    log_every: int = 10  # steps between JSONL metric lines
    wandb: bool = False
    wandb_project: str = "interp-saes"
    prefetch: Optional[bool] = None  # build the next buffer while the SAE trains (None: on for CUDA)
    sae_kwargs: dict = field(default_factory=dict)  # extra sae-lens config fields, e.g. {"aux_loss_coefficient": 0.5}

    @property
    def steps(self) -> int:
        return self.tokens // self.batch_size

    def validate(self) -> "TrainConfig":
        if self.arch not in ARCHS:
            raise ConfigError(f"Unknown architecture {self.arch!r}; choose one of {', '.join(ARCHS)}.")
        if self.latents < 1:
            raise ConfigError(f"latents must be >= 1, got {self.latents}.")
        if self.arch in ("topk", "batchtopk") and not 0 < self.k <= self.latents:
            raise ConfigError(f"k must be in 1..latents ({self.latents}) for {self.arch}, got {self.k}.")
        if self.batch_size < 1 or self.tokens < self.batch_size:
            raise ConfigError(f"tokens ({self.tokens}) must be at least one batch (batch_size {self.batch_size}).")
        if self.buffer_size is not None and self.buffer_size < self.batch_size:
            raise ConfigError(f"buffer_size ({self.buffer_size}) must be at least batch_size ({self.batch_size}).")
        if self.normalize_activations not in ("none", "expected_average_only_in"):
            raise ConfigError("normalize_activations must be 'none' or 'expected_average_only_in'.")
        if self.checkpoint_every < 0 or self.log_every < 1:
            raise ConfigError("checkpoint_every must be >= 0 and log_every >= 1.")
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class TrainResult:
    sae: object  # sae-lens inference SAE
    path: Optional[Path]
    summary: dict
    log: list  # metric dicts written this session
    resumed_from: Optional[int] = None  # checkpoint step this session started from
    training_sae: object = None  # the trained sae-lens TrainingSAE (None when the run had already finished)
    reused: bool = False  # True: ``out`` already held this finished run, returned without training


def make_training_sae(cfg: TrainConfig, d_in: int):
    """A freshly initialised sae-lens training SAE (seeded, built on CPU, moved to ``cfg.device``)."""
    import sae_lens as SL

    common = dict(d_in=int(d_in), d_sae=int(cfg.latents), dtype=cfg.dtype, device="cpu",
                  normalize_activations=cfg.normalize_activations)
    if cfg.arch == "topk":
        cls, conf = SL.TopKTrainingSAE, SL.TopKTrainingSAEConfig(k=int(cfg.k), **common, **cfg.sae_kwargs)
    elif cfg.arch == "batchtopk":
        cls, conf = SL.BatchTopKTrainingSAE, SL.BatchTopKTrainingSAEConfig(k=float(cfg.k), **common, **cfg.sae_kwargs)
    elif cfg.arch == "jumprelu":
        cls, conf = SL.JumpReLUTrainingSAE, SL.JumpReLUTrainingSAEConfig(l0_coefficient=cfg.l0_coefficient, **common,
                                                                         **cfg.sae_kwargs)
    else:
        cls, conf = SL.StandardTrainingSAE, SL.StandardTrainingSAEConfig(l1_coefficient=cfg.l1_coefficient, **common,
                                                                         **cfg.sae_kwargs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        sae = cls(conf)
    return sae.to(cfg.device)


def _trainer(cfg: TrainConfig, sae, store, after_step: Callable, save_fn: Callable, ddp: bool = False):
    from sae_lens import LoggingConfig
    from sae_lens.config import SAETrainerConfig
    from sae_lens.training.sae_trainer import SAETrainer

    from . import ddp as DDP

    class _Trainer(SAETrainer):
        """``SAETrainer`` with each step timed and reported (the loop itself is sae-lens's)."""

        sae_seconds = 0.0

        def step(self, batch):
            t0 = time.perf_counter()
            freq = self.act_freq_scores.clone() if ddp else None
            out = super().step(batch)
            if ddp:  # dead-latent statistics and sample count of the global batch (saes.ddp)
                DDP.reduce_step(self, freq, batch.shape[0])
            if self.sae.device.type == "cuda":
                torch.cuda.synchronize(self.sae.device)
            self.sae_seconds += time.perf_counter() - t0
            after_step(self, out)
            return out

        def fit(self):
            # sae-lens's own tqdm bar moves once every 100 steps and starts over on resume; ours
            # (hooks.progress, moved in after_step) moves every step, so theirs is switched off.
            from functools import partial

            from sae_lens.training import sae_trainer as M

            theirs = getattr(M, "tqdm", None)
            if theirs is not None:
                M.tqdm = partial(theirs, disable=True)
            try:
                return super().fit()
            finally:
                if theirs is not None:
                    M.tqdm = theirs

    tcfg = SAETrainerConfig(
        total_training_samples=cfg.steps * cfg.batch_size, train_batch_size_samples=cfg.batch_size, lr=cfg.lr,
        lr_end=cfg.lr / 10, lr_scheduler_name=cfg.lr_scheduler, lr_warm_up_steps=cfg.lr_warm_up_steps,
        lr_decay_steps=cfg.lr_decay_steps, device=cfg.device, dead_feature_window=cfg.dead_feature_window,
        feature_sampling_window=cfg.feature_sampling_window, n_checkpoints=0, checkpoint_path=None,
        logger=LoggingConfig(log_to_wandb=cfg.wandb, wandb_project=cfg.wandb_project),
        n_batches_for_norm_estimate=cfg.n_batches_for_norm_estimate)
    return _Trainer(cfg=tcfg, sae=sae, data_provider=store, save_checkpoint_fn=save_fn)


def _identity(store, cfg: TrainConfig) -> tuple:
    desc = {k: v for k, v in store.describe().items() if k not in ("cache_dir", "cached_rows")}
    conf = {k: v for k, v in cfg.to_dict().items() if k not in _FREE}
    ident = {"store": desc, "config": conf}
    return ident, hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _diff(a: dict, b: dict, prefix="") -> list:
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}: {va!r} (checkpoint) vs {vb!r} (now)")
    return out


def _trim_log(path: Path, step: int) -> None:
    if not path.exists():
        return
    keep = []
    for ln in path.read_text().splitlines():
        try:
            if json.loads(ln).get("step", 0) <= step:
                keep.append(ln)
        except json.JSONDecodeError:  # a line cut by a crash
            continue
    from hooks.io import write_text_atomic

    write_text_atomic(path, "".join(ln + "\n" for ln in keep), fsync=True)


def _say(progress, message: str) -> None:
    """One line for the user: on ``progress`` when it is a rich Console, else above any bar / stdout."""
    from hooks.progress import echo

    if isinstance(progress, bool):
        echo(message)
    else:
        progress.print(message, markup=False, highlight=False, soft_wrap=True)


def fit_sae(store, config: Optional[TrainConfig] = None, *, out=None, resume: bool = True, metadata: Optional[dict] = None,
            on_step: Optional[Callable] = None, progress=True, **overrides) -> TrainResult:
    """Train on any :class:`~saes.store.ActivationStore`; see :func:`train_sae`.

    ``progress``: show the training progress (tokens, rate, time left; :mod:`hooks.progress`),
    False for none, or a rich ``Console`` to draw it on.
    """
    from hooks.progress import progress as progress_display

    from . import ddp as DDP
    from . import distributed as D
    from .files import CFG, load_sae, save_sae

    cfg = replace(config or TrainConfig(), **overrides).validate()
    rank, world = D.rank(), D.world()
    ddp = world > 1  # data-parallel over torch.distributed ranks (saes.ddp): same global batch, same result
    DDP.check_config(cfg, world)
    ident, run_hash = _identity(store, cfg)
    out = Path(out) if out is not None else None
    ckpt_root = out / "checkpoints" if out is not None else None
    log_path = out / "metrics.jsonl" if out is not None else None
    if out is not None and resume and (out / CFG).exists():
        try:
            done = json.loads((out / CFG).read_text()).get("metadata", {}).get("interp", {})
        except json.JSONDecodeError:  # a damaged final config: train (or resume) again and rewrite it
            done = {}
        if done.get("run_hash") == run_hash:  # this exact run already finished
            if progress and rank == 0:
                _say(progress, f"reusing the finished SAE in {out}: an earlier run trained it on the same data "
                               f"and settings (to train it again: delete {out}, or pass resume=False / --no-resume)")
            return TrainResult(load_sae(out, device=cfg.device), out, done.get("summary", {}), [], None, reused=True)
    import sae_lens  # noqa: F401 - imported before the clock starts (it takes seconds)

    t_start = time.perf_counter()
    last = run = None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if not resume and rank == 0:
            shutil.rmtree(ckpt_root, ignore_errors=True)
        D.barrier()
        last = C.latest(ckpt_root)
        if last is not None:
            run = C.verify(last)
            if run.get("hash") != run_hash:
                diff = _diff(run.get("identity", {}), ident)
                raise CheckpointError(f"The checkpoint in {last} is from a different run ({'; '.join(diff[:4])}). Use "
                                      "the same settings, another --out, or --no-resume to start over.")
    # resuming: the width is in the checkpoint, so the store does not read a buffer it would discard
    d_in = json.loads((last / CFG).read_text())["d_in"] if last is not None else store.d_in
    sae = make_training_sae(cfg, d_in)
    grad_hooks = []
    if ddp:
        DDP.sync_parameters(sae)
        grad_hooks = DDP.average_gradients(sae)
    log: list = []

    def after_step(tr, output):
        step = tr.n_training_steps + 1
        row = None
        if step % cfg.log_every == 0 or step == cfg.steps:
            if ddp:  # metrics of the global batch (every rank takes part in the gather)
                output = DDP.gather_output(output)
            row = {"step": step, "tokens": tr.n_training_samples, "elapsed_s": round(time.perf_counter() - t_start, 3),
                   "sae_step_s": round(tr.sae_seconds, 3), **tr.build_train_step_log_dict(output, tr.n_training_samples)}
            log.append(row)
            if log_path is not None and rank == 0:
                with open(log_path, "a") as f:
                    f.write(json.dumps(row) + "\n")
        shown = {"step": f"{step}/{cfg.steps}"}
        if row is not None:
            shown.update({name: row[key] for key, name in (("metrics/l0", "L0"), ("losses/mse_loss", "mse"))
                          if key in row})
        bar.update(completed=step * cfg.batch_size, **shown)
        if on_step is not None:
            on_step(step, row)

    def save_fn(checkpoint_path=None):
        if rank == 0:  # every rank holds the same state; one writes it (atomically, checksummed)
            C.save_checkpoint(ckpt_root, trainer.n_training_steps + 1, trainer, store,
                              {"hash": run_hash, "identity": ident, "config": cfg.to_dict()}, keep=cfg.keep_checkpoints)
        D.barrier()

    provider = DDP.RankSlice(store, rank, world) if ddp else store
    trainer = _trainer(cfg, sae, provider, after_step, save_fn, ddp)
    start = C.restore(last, trainer, store, run) if last is not None else None
    if out is not None and rank == 0:
        _trim_log(log_path, start or 0)
    if ddp and cfg.normalize_activations != "none" and trainer.activation_scaler.scaling_factor is None:
        # estimated on the global stream (as one process does), not on this rank's slices
        trainer.activation_scaler.estimate_scaling_factor(d_in=d_in, data_provider=store,
                                                          n_batches_for_norm_estimate=cfg.n_batches_for_norm_estimate)
    if cfg.checkpoint_every and ckpt_root is not None:
        every = cfg.checkpoint_every
        trainer.checkpoint_thresholds = [s * cfg.batch_size - 1 for s in range(every, cfg.steps, every) if s > (start or 0)]
    norm_rows = cfg.n_batches_for_norm_estimate * cfg.batch_size if cfg.normalize_activations != "none" else 0
    store.limit_rows = cfg.steps * cfg.batch_size + norm_rows  # no prefetching past the end of training
    if cfg.wandb:
        import wandb

        wandb.init(project=cfg.wandb_project, config={"train": cfg.to_dict(), **ident["store"]}, resume="allow")
    bar = progress_display("training SAE", cfg.steps * cfg.batch_size, unit="tok", start=(start or 0) * cfg.batch_size,
                           console=None if isinstance(progress, bool) else progress,
                           enabled=bool(progress) and rank == 0)
    try:
        with bar:
            if start:
                bar.log(f"resuming from step {start} of {cfg.steps} (checkpoint {last})")
            trained = trainer.fit()
    finally:
        for h in grad_hooks:
            h.remove()
        store.close()
        if cfg.wandb:
            import wandb

            wandb.finish()
    wall = time.perf_counter() - t_start
    steps_now = cfg.steps - (start or 0)
    summary = {"steps": cfg.steps, "tokens": cfg.steps * cfg.batch_size, "session_steps": steps_now, "world": world,
               "wall_s": wall, "sae_step_s": trainer.sae_seconds, "store_fill_s": store.fill_seconds,
               "store_wait_s": store.wait_seconds,
               "sae_step_fraction": trainer.sae_seconds / wall if wall > 0 else 0.0,
               "tokens_per_s": steps_now * cfg.batch_size / wall if wall > 0 else 0.0,
               "final": log[-1] if log else None}
    info = {"version": 1, **ident["store"], "training_tokens": cfg.steps * cfg.batch_size, "arch": cfg.arch,
            "train_config": cfg.to_dict(), "run_hash": run_hash,
            "summary": {k: v for k, v in summary.items() if k != "final"}}
    md = {**(metadata or {}), "interp": info}
    if out is not None:
        if rank == 0:
            save_sae(trained, out, metadata=md, sparsity=trainer.log_feature_sparsity)
            shutil.rmtree(ckpt_root, ignore_errors=True)  # the finished SAE (and its run hash) replace them
        D.barrier()
        result = load_sae(out, device=cfg.device)
    else:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            save_sae(trained, Path(tmp) / "sae", metadata=md)
            result = load_sae(Path(tmp) / "sae", device=cfg.device)
    return TrainResult(result, out, summary, log, start, trained)


def train_sae(model, data, site: str, *, positions="auto", out=None, config: Optional[TrainConfig] = None,
              text_key=None, cache_dir=None, model_name: Optional[str] = None, resume: bool = True,
              on_step: Optional[Callable] = None, progress=True, **overrides) -> TrainResult:
    """Train an SAE on ``site`` activations of ``model`` over ``data`` and save it to ``out``.

    ``positions``: ``"auto"`` (ESM residues; LLM tokens without BOS/special tokens and
    padding; see :mod:`saes.activations`) or any registry selector. ``overrides`` are
    :class:`TrainConfig` fields (``arch``, ``k``, ``latents``, ``tokens``, ``lr``, ...).
    ``cache_dir`` caches activations on disk first (:mod:`saes.cache`). ``on_step(step, row)``
    is called after every step (``row``: the metrics line, on logging steps). ``progress``: the
    harvest and training progress (tokens, rate, time left), False for none, or a rich Console.
    """
    from .files import hook_name_for
    from .store import ActivationStore

    cfg = replace(config or TrainConfig(), **overrides).validate()
    from . import distributed as D

    if D.world() > 1 and cache_dir is None:
        raise ConfigError(f"Under torchrun ({D.world()} processes) pass cache_dir (--cache-dir): the ranks harvest "
                          "their share of the data into it, then train data-parallel from it.")
    store = ActivationStore.from_model(
        model, data, site, positions, batch_size=cfg.batch_size, buffer_size=cfg.buffer_size,
        model_batch_size=cfg.model_batch_size, seed=cfg.seed, device=cfg.device, text_key=text_key,
        cache_dir=cache_dir, max_rows=cfg.steps * cfg.batch_size if cache_dir is not None else None,
        model_name=model_name, progress=bool(progress),
        prefetch=cfg.prefetch if cfg.prefetch is not None else torch.device(cfg.device).type == "cuda")
    desc = store.describe()
    md = {"model_name": desc["model"]["name"], "hook_name": hook_name_for(model, desc["site"]),
          "dataset_path": desc["dataset"].get("source")}
    return fit_sae(store, cfg, out=out, resume=resume, metadata=md, on_step=on_step, progress=progress)
