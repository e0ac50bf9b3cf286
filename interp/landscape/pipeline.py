"""One call from a model and an MMLU-format data set to the ICL-vs-SFT landscape.

Reproduces Doimo et al., "The representation landscape of few-shot learning and fine-tuning
in large language models" (NeurIPS 2024): for each condition (k-shot prompts for every k in
``shots``, and optionally LoRA SFT with 0-shot prompts) the last-prompt-token
representations at every layer are extracted, cached as safetensors, and analysed with
:func:`interp.landscape.analysis.landscape`.

    from interp.landscape import run_landscape
    res = run_landscape("meta-llama/Meta-Llama-3-8B", "cais/mmlu", shots=(0, 1, 2, 5),
                        sft="lora.yaml", out="runs/landscape", device="cuda", dtype="bfloat16")
    res.table            # tidy: condition, layer, metric, value
    res.accuracy         # {"0shot": 0.61, ..., "sft": 0.64}

``out`` receives ``reps/<condition>.safetensors`` (reused when the prompts, model and SFT
settings match), ``tables/<condition>.csv`` (reused when the representations and analysis
settings match), ``landscape.csv`` (all conditions), ``summary.json`` (accuracies, sizes,
settings, timings), ``figures/*.png`` and, with SFT, ``sft/adapter`` (LoRA weights, config
and training history). Every file is written atomically.

Order of work: data are validated first (missing dev examples, bad answers, unknown SFT keys
fail before the model is loaded), the ICL conditions run on the base model, then LoRA is
injected (trained or loaded), the SFT condition runs, and the LoRA layers are removed again
so a caller's model is left as it was.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from .analysis import LandscapeConfig, landscape
from .data import LETTERS, cap_per_subject, load_split, sft_training_records, subjects_of
from .errors import LandscapeInputError, PromptError
from .extract import extract_representations, fingerprint, load_representations, save_representations
from .prompts import FewShotPrompter, letter_accuracy, letter_token_ids, macro_accuracy
from .sft import SFTConfig

__all__ = ["run_landscape", "LandscapeResult", "parse_shots"]

FORMAT_VERSION = 2   # 2: paper sites and labels (layer.<label> keys), shuffled shots


@dataclass
class LandscapeResult:
    """What :func:`run_landscape` produced (also on disk under ``out``)."""

    table: object
    accuracy: dict
    out: Path
    files: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)


def parse_shots(shots) -> list:
    """``"0,1,2,5"`` or ``[0, 1, 2, 5]`` -> sorted unique non-negative ints."""
    if isinstance(shots, str):
        parts = [p.strip() for p in shots.split(",") if p.strip()]
    else:
        parts = list(shots)
    try:
        ks = sorted({int(p) for p in parts})
    except (TypeError, ValueError):
        raise LandscapeInputError(f"shots must be non-negative integers like '0,1,2,5'; got {shots!r}.") from None
    if any(k < 0 for k in ks) or any(float(p) != int(p) for p in parts):
        raise LandscapeInputError(f"shots must be non-negative integers like '0,1,2,5'; got {shots!r}.")
    return ks


def _sft_config(sft) -> SFTConfig | None:
    if sft is None or sft is False:
        return None
    if sft is True:
        return SFTConfig()
    if isinstance(sft, SFTConfig):
        return sft
    if isinstance(sft, dict):
        return SFTConfig.from_dict(sft)
    return SFTConfig.from_yaml(sft)


def _model_id(model) -> str:
    if isinstance(model, (str, Path)):
        return str(model)
    inner = getattr(model, "model", model)
    cfg = getattr(inner, "config", None)
    return f"{type(inner).__name__}:{getattr(cfg, '_name_or_path', '')}:{id(inner)}"


def run_landscape(model, data, *, shots: Sequence[int] | str = (0, 1, 2, 5), sft=None, out="runs/landscape",
                  per_subject: int | None = 200, seed: int = 0, batch_size: int = 8, device=None, dtype=None,
                  analysis: LandscapeConfig | None = None, letters: Sequence[str] = LETTERS,
                  letter_ids: Sequence[int] | None = None, reuse: bool = True, progress: bool = False,
                  site: str = "input_norm", shuffle_shots: bool = True, log=print) -> LandscapeResult:
    """Run every condition and write the landscape (see the module docstring).

    Args:
        model: HF id / local directory (loaded with :func:`hooks.load`), or a ``HookedModel``.
        data: MMLU-format source (:func:`interp.landscape.data.load_split`).
        shots: k values of the ICL conditions (``"0,1,2,5"`` works too); ``[]`` for SFT only.
        sft: ``None`` (no SFT), a ``lora.yaml`` path, a dict, an :class:`SFTConfig`, or ``True`` (defaults).
        per_subject: cap of test questions per subject (paper: 200); ``None`` keeps all.
        batch_size: prompts per forward in extraction.
        device, dtype: model placement when ``model`` is a name (``"cuda"``, ``"bfloat16"``).
        analysis: landscape settings; its ``device`` defaults to ``device`` (else CUDA if available).
        letter_ids: token ids of the answer letters, when the tokenizer cannot tell them.
        reuse: reuse cached representations/tables whose fingerprints match.
        site: ``"input_norm"`` (the paper's: each block's input-norm output, the final norm and
            the logits, labelled 1..L+1; :mod:`interp.landscape.sites`) or a per-layer family such
            as ``"resid_post"`` (labelled by blocks passed, so ``resid_post.i`` is ``i + 1``).
        shuffle_shots: shuffle each question's shots (seeded by ``seed``), as the paper's code.
    """
    import hooks
    import pandas as pd

    from hooks.io import write_json_atomic, write_text_atomic

    t_start = time.time()
    say = log or (lambda *_: None)
    out = Path(out)
    ks = parse_shots(shots)
    sft_cfg = _sft_config(sft)
    if not ks and sft_cfg is None:
        raise LandscapeInputError("nothing to do: give at least one shot count (--shots 0,1,2,5) or an SFT config.")
    cfg = analysis or LandscapeConfig(device=device)

    # -- data first: fail before loading a model -------------------------------------
    test = cap_per_subject(load_split(data, "test", letters=letters), per_subject, seed=seed)
    subjects = subjects_of(test)
    needs_dev = any(k > 0 for k in ks) or (sft_cfg is not None and sft_cfg.adapter is None)
    dev = load_split(data, "dev", letters=letters) if needs_dev else []
    prompters = {k: FewShotPrompter(dev, k, letters=letters, shuffle=shuffle_shots, seed=seed) for k in ks}
    for p in prompters.values():
        p.check(subjects)
    train = []
    if sft_cfg is not None and sft_cfg.adapter is None:
        train = sft_training_records(dev, load_split(data, "validation", letters=letters),
                                     per_subject=sft_cfg.per_subject, seed=sft_cfg.seed, subjects=subjects)
    n_choices = len(test[0].choices)
    subj_labels = [r.subject for r in test]
    letter_labels = [letters[r.answer] for r in test]
    answers = [r.answer for r in test]
    say(f"{len(test)} test questions, {len(subjects)} subjects, conditions: "
        f"{[f'{k}shot' for k in ks] + (['sft'] if sft_cfg else [])}")

    # -- model --------------------------------------------------------------------------
    hm = model if isinstance(model, hooks.HookedModel) else hooks.load(model, dtype=dtype, device=device)
    ids = list(letter_ids) if letter_ids is not None else letter_token_ids(hm.tokenizer, letters[:n_choices])
    if len(ids) != n_choices:
        raise PromptError(f"{len(ids)} letter ids for {n_choices} choices; pass one id per choice letter.")
    mid = _model_id(model)
    from .sites import paper_sites

    sites = paper_sites(hm, site)

    reps: dict = {}  # condition -> (path, fingerprint, letter logits); tensors stay on disk
    files: dict = {}
    timings: dict = {}

    def cached_or_extract(cond: str, prompts: list, fp: str, make_model):
        path = out / "reps" / f"{cond}.safetensors"
        if reuse and path.exists():
            try:
                r = load_representations(path, layers=False)
                if r.meta.get("fingerprint") == fp:
                    say(f"{cond}: reusing {path}")
                    return path, fp, r.letter_logits
            except Exception:  # noqa: BLE001 - a corrupt/old cache is simply recomputed
                pass
        t0 = time.time()
        r = extract_representations(make_model(), prompts, ids, sites=sites, batch_size=batch_size, progress=progress,
                                    meta={"fingerprint": fp, "condition": cond, "model": mid, "n": len(prompts)})
        save_representations(path, r)
        timings[f"extract_{cond}"] = time.time() - t0
        say(f"{cond}: extracted {len(prompts)} prompts x {len(r.layers)} layers in {time.time() - t0:.1f}s")
        return path, fp, r.letter_logits

    for k in ks:
        cond = f"{k}shot"
        prompts = prompters[k].prompts(test)
        fp = fingerprint(FORMAT_VERSION, mid, prompts, ids, sites)
        reps[cond] = cached_or_extract(cond, prompts, fp, lambda: hm)
        files[f"reps_{cond}"] = reps[cond][0]

    if sft_cfg is not None:
        from .sft import hooked, load_adapter, save_adapter, train_lora

        prompts = FewShotPrompter(k=0, letters=letters).prompts(test)
        train_fp = [r.to_dict() for r in train] if sft_cfg.adapter is None else str(sft_cfg.adapter)
        fp = fingerprint(FORMAT_VERSION, mid, prompts, ids, sites, sft_cfg.to_dict(), train_fp)
        state: dict = {}

        def make_sft_model():
            if sft_cfg.adapter is not None:
                say(f"sft: loading adapter {sft_cfg.adapter}")
                state["peft"] = load_adapter(hm.model, sft_cfg.adapter)
            else:
                say(f"sft: training LoRA on {len(train)} examples")
                t0 = time.time()
                state["peft"], hist = train_lora(hm.model, hm.tokenizer, train, sft_cfg, letters=letters[:n_choices],
                                                 log=say)
                timings["sft_train"] = time.time() - t0
                files["adapter"] = save_adapter(state["peft"], out / "sft" / "adapter", history=hist)
                state["history"] = hist
            return hooked(state["peft"], hm.tokenizer)

        try:
            reps["sft"] = cached_or_extract("sft", prompts, fp, make_sft_model)
            files["reps_sft"] = reps["sft"][0]
        finally:
            if "peft" in state:  # remove the LoRA layers: the base model is as before
                state["peft"].unload()
        if "history" in state:
            h = state["history"]
            say(f"sft: answer loss {h['loss_before']:.3f} -> {h['loss_after']:.3f}")

    # -- analysis -------------------------------------------------------------------------
    tables = []
    for cond, (rpath, rfp, _) in reps.items():
        tfp = fingerprint(FORMAT_VERSION, rfp, cfg.to_dict(), subj_labels, letter_labels)
        tpath = out / "tables" / f"{cond}.csv"
        fpath = out / "tables" / f".{cond}.fingerprint"
        if reuse and tpath.exists() and fpath.exists() and fpath.read_text() == tfp:
            say(f"{cond}: reusing {tpath}")
            t = pd.read_csv(tpath)
        else:
            t0 = time.time()
            layers = load_representations(rpath).layers  # one condition in host memory at a time
            t = landscape(layers, subj_labels, letter_labels, cfg, condition=cond, log=say if progress else None)
            timings[f"landscape_{cond}"] = time.time() - t0
            say(f"{cond}: landscape of {len(layers)} layers in {time.time() - t0:.1f}s")
            del layers
            write_text_atomic(tpath, t.to_csv(index=False))
            write_text_atomic(fpath, tfp)
        tables.append(t)
    table = pd.concat(tables, ignore_index=True)
    accuracy = {cond: letter_accuracy(logits, answers) for cond, (_, _, logits) in reps.items()}
    accuracy_macro = {cond: macro_accuracy(logits, answers, subj_labels) for cond, (_, _, logits) in reps.items()}

    from .plots import plot_landscape

    files["table"] = write_text_atomic(out / "landscape.csv", table.to_csv(index=False))
    files["figures"] = plot_landscape(table, out / "figures", model=mid, site=site, positions="last")
    summary = {
        "model": mid, "data": str(data), "n_questions": len(test), "subjects": subjects,
        "per_subject": per_subject, "seed": seed, "shots": ks, "letter_ids": ids,
        "accuracy": accuracy, "accuracy_micro": accuracy, "accuracy_macro": accuracy_macro,
        "site": site, "layer_labels": {str(k): v for k, v in sites.items()}, "shuffle_shots": shuffle_shots,
        "analysis": cfg.to_dict(), "sft": sft_cfg.to_dict() if sft_cfg else None,
        "n_train": len(train), "timings_s": timings, "total_s": time.time() - t_start,
    }
    files["summary"] = write_json_atomic(out / "summary.json", summary)
    return LandscapeResult(table, accuracy, out, files, summary)
