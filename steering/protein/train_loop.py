"""The toy protein model's training loop, :func:`train_toy_model` (seeded, logged; the model
and its data in :mod:`steering.protein.toy_model`).

Reproducibility: weights are initialised on the CPU from ``seed``; batches and masks come
from a CPU ``torch.Generator`` seeded with ``seed``, so a ``--steps`` run is the same data
stream on any device (bit-identical results on the CPU; GPU kernels may differ in the last
bits). ``--minutes`` without ``--steps`` times steps 10-50 (after start-up/CUDA warm-up) and derives
the step count that fills the budget (recorded in the log, so the run can be repeated exactly
with ``--steps``).
"""
from __future__ import annotations

import platform
import time
from dataclasses import asdict
from pathlib import Path

import torch

from .alphabet import background_entropy, esm_tokenizer, write_vocab
from .toy_model import (DEFAULT_DIR, EVAL_SEED_OFFSET, LOG_NAME, TrainConfig, _lr, build_model, encode_records,
                        evaluate_mlm, mask_batch)
from .toy_world import WorldConfig, toy_records

CALIBRATION = (10, 50)   # steps timed to size a --minutes run


def _total_steps(tc: TrainConfig, elapsed: float, t_step: float) -> int:
    """Steps that fill ``tc.minutes`` given ``elapsed`` seconds so far and ``t_step`` s/step."""
    left = tc.minutes * 60 - elapsed
    return CALIBRATION[1] + max(1, int(left / max(t_step, 1e-5)))


def train_toy_model(out=None, tc: TrainConfig | None = None, *, log=print, probe: bool = True, progress=False) -> dict:
    """Train on the toy world and save model + tokenizer + ``training_log.json`` into ``out``
    (default: the shipped ``toy_model/`` directory). ``progress``: show the steps, rate, time left
    and loss (:mod:`hooks.progress`), or a rich Console to draw on."""
    return run_training(Path(out) if out is not None else DEFAULT_DIR, tc or TrainConfig(), log=log, probe=probe,
                        progress=progress)


def run_training(out: Path, tc: TrainConfig, *, log=print, probe: bool = True, progress=False) -> dict:
    old = torch.get_num_threads()
    if tc.threads:
        torch.set_num_threads(tc.threads)
    try:
        return _run(out, tc, log=log, probe=probe, progress=progress)
    finally:
        torch.set_num_threads(old)


def _run(out: Path, tc: TrainConfig, *, log=print, probe: bool = True, progress=False) -> dict:
    from hooks.io import write_json_atomic
    from hooks.loading import save_pretrained_atomic
    from hooks.progress import progress as progress_display

    if tc.steps is None and tc.minutes is None:
        raise ValueError("TrainConfig needs steps or minutes.")
    dev = torch.device(tc.device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda was asked for but torch.cuda.is_available() is False.")
        torch.backends.cuda.matmul.allow_tf32 = True
    t0 = time.time()
    world = WorldConfig(**tc.world)
    train_recs = toy_records(tc.n_train, tc.seed, world)
    eval_recs = toy_records(tc.n_eval, tc.seed + EVAL_SEED_OFFSET, world)
    ids, res = encode_records(train_recs)
    t_data = time.time() - t0
    log(f"toy world: {tc.n_train} train / {tc.n_eval} eval proteins in {t_data:.1f}s; "
        f"background entropy {background_entropy():.3f} nats")
    model = build_model(tc).to(dev)
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay, betas=(0.9, 0.98))
    g = torch.Generator().manual_seed(tc.seed)
    curve, evals, run_loss, run_n = [], [], 0.0, 0
    total, step, stopped_early, t_cal = tc.steps, 0, False, None
    t_train = time.time()
    bar = progress_display("training toy protein model", total, unit="steps", enabled=bool(progress),
                           console=None if isinstance(progress, bool) else progress)
    with bar:
        while True:
            if total is None and step == CALIBRATION[0]:
                t_cal = time.time()
            if total is None and step == CALIBRATION[1]:
                now = time.time()
                total = _total_steps(tc, now - t_train, (now - t_cal) / (CALIBRATION[1] - CALIBRATION[0]))
                log(f"calibrated: {total} steps fit in {tc.minutes} min")
            if total is not None and step >= total:
                break
            if tc.minutes is not None and time.time() - t_train > tc.minutes * 60 and tc.steps is not None:
                stopped_early = True
                log(f"time budget of {tc.minutes} min reached at step {step}/{total}")
                break
            lr = _lr(step, total or 10 ** 9, tc)   # (still in warm-up while calibrating)
            for pg in opt.param_groups:
                pg["lr"] = lr
            idx = torch.randint(0, len(ids), (tc.batch_size,), generator=g)
            P = int(res[idx].sum(1).max()) + 2
            x, labels = mask_batch(ids[idx, :P], res[idx, :P], tc.mask_rate, g)
            model.train()
            loss = model(input_ids=x.to(dev), attention_mask=(x != 1).long().to(dev), labels=labels.to(dev)).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            run_loss, run_n = run_loss + loss.item(), run_n + 1
            bar.update(completed=step, total=total, loss=round(loss.item(), 4))
            if step % tc.log_every == 0 or step == total:
                curve.append({"step": step, "loss": run_loss / run_n, "lr": lr, "seconds": time.time() - t_train})
                log(f"step {step:6d}  loss {run_loss / run_n:.4f}  lr {lr:.2e}  ({time.time() - t_train:.0f}s)")
                run_loss, run_n = 0.0, 0
            if tc.eval_every and step % tc.eval_every == 0 and step != total:
                evals.append({"step": step, **_short(evaluate_mlm(model, eval_recs[:256], seed=tc.seed))})
                log(f"  eval@{step}: {_fmt(evals[-1])}")
    train_seconds = time.time() - t_train
    model.eval()
    final = evaluate_mlm(model, eval_recs, seed=tc.seed)
    log(f"final eval ({tc.n_eval} held-out proteins, 15% masked): {_fmt(_short(final))}")
    result = {"config": asdict(tc), "steps": step, "steps_planned": total, "stopped_early": stopped_early,
              "train_seconds": train_seconds, "data_seconds": t_data, "n_params": n_params,
              "tokens_per_step": tc.batch_size * (world.min_len + world.max_len) / 2,
              "device": str(dev), "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or platform.machine(),
              "torch": torch.__version__, "threads": torch.get_num_threads(),
              "loss_curve": curve, "evals": evals, "final_eval": final}
    model.cpu()
    tok = esm_tokenizer(model_max_length=model.config.max_position_embeddings)
    save_pretrained_atomic(model, tok, out)
    write_vocab(out / "vocab.txt")
    if probe:
        from .probe import probe_layers

        t1 = time.time()
        result["probe"] = probe_layers(model, tok, eval_recs, seed=tc.seed)
        result["probe_seconds"] = time.time() - t1
        log("probe F1 (logistic regression on residues, held-out proteins):")
        for feat, per in result["probe"]["f1"].items():
            log(f"  {feat:10s} " + "  ".join(f"{s}={v:.3f}" for s, v in per.items()))
    write_json_atomic(out / LOG_NAME, result)
    log(f"wrote {out} ({n_params / 1e6:.2f}M params, {step} steps in {train_seconds / 60:.1f} min)")
    return result


def _short(ev: dict) -> dict:
    return {"loss": ev["loss"], "accuracy": ev["accuracy"],
            "regions": {k: {"loss": v["loss"], "accuracy": v["accuracy"], "n": v["n"]} for k, v in ev["regions"].items()}}


def _fmt(ev: dict) -> str:
    parts = [f"loss {ev['loss']:.3f} acc {ev['accuracy']:.3f}"]
    parts += [f"{k} {v['accuracy']:.2f}" for k, v in ev["regions"].items()]
    return " | ".join(parts)
