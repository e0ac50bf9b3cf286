"""Metrics that see the answer: one score per example, shared by Python, ``interp run`` and sweeps.

    from interp.metrics import get_metric, metric_batch
    mb = metric_batch(model, inputs, answers=[" Paris"], distractors=[" Rome"], clean_logits=clean)
    get_metric("logit_diff")(logits, mb)          # (B,) tensor
    get_metric("mypkg.metrics:refusal")(logits, mb)  # any fn(logits, batch) -> (B,)

Built-in metrics (``batch`` is the dict made by :func:`metric_batch`):

==================  =====================================================================
``logit_diff``      logit(answer) - logit(distractor) at the last real token (Wang et al.
                    2022, IOI; TransformerLens ``logits_to_ave_logit_diff`` in its
                    ``Exploratory_Analysis_Demo``); needs ``answer`` and ``distractor``
``answer_logprob``  log p(answer) at the last real token; needs ``answer``
``loss``            causal LMs: next-token cross-entropy, mean over the example's real
                    tokens that have a real successor. Masked LMs (ESM-2, BERT, any
                    ``*ForMaskedLM``): the masked-LM loss as such models are trained and
                    evaluated: a seeded 15% of the real (non-special, non-pad) tokens,
                    at least one per row, replaced by the mask token, cross-entropy at
                    those positions only, mean per example (Devlin et al. 2019, BERT §3.1
                    "Task #1: Masked LM"; Rives et al. 2021 / Lin et al. 2023, ESM-2: 15%).
                    The same positions are masked in the clean, corrupt and every patched
                    run (no 80/10/10 replacement: that is a training-time device)
``kl``              KL(clean || this run) of the next-token distributions, mean over the
                    example's real tokens; needs the clean logits
``top1_agreement``  fraction of the example's real tokens whose arg-max token equals the
                    clean run's; needs the clean logits
==================  =====================================================================

Each metric declares the positions it ``reads`` (``"answer"``: the last real token,
``"targets"``: the loss positions, ``"all"``: every real token). In a causal model an
intervention at position ``p`` can only change outputs at positions ``>= p``, so
:func:`unaffected_by` finds interventions that cannot move a metric, e.g. a knockout at
``queries: last`` under next-token loss (the last position has no next token to score).
A user function may set ``fn.reads = "answer"`` to take part in that check.

Masked LMs: :func:`metric_batch` draws the masked positions (``batch["where"]``; the ids to run
are ``batch["run_inputs"]``) and :func:`masked_like` writes the same mask into any other
inputs of the same shape (a corrupt prompt, a patching base). Sweeps mask only for metrics that
read the loss targets; ``interp run`` runs every metric on the masked inputs (its summary is the
masked-LM loss). A masked LM without a mask token id is an error that says how to give one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from hooks.errors import SpecError
from hooks.interventions import Cache, Intervention, Knockout, import_callable
from hooks.objectives import is_masked_lm, lm_targets, token_nll

MLM_RATE = 0.15  # Devlin et al. 2019 §3.1; ESM-1b/ESM-2 (Rives et al. 2021, Lin et al. 2023)


@dataclass(frozen=True)
class Metric:
    """A named ``fn(logits, batch) -> (B,)`` with the batch fields it needs and the positions it reads."""

    name: str
    fn: Callable
    reads: str = "all"  # "answer" | "targets" | "all"
    needs: tuple = ()

    def __call__(self, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        missing = [k for k in self.needs if batch.get(k) is None]
        if missing and batch.get("mlm_error") and {"targets", "where"} & set(missing):
            raise SpecError(batch["mlm_error"])
        if missing:
            hint = " (add 'answer'/'distractor' fields to the data rows)" if {"answer", "distractor"} & set(missing) else ""
            raise SpecError(f"Metric {self.name!r} needs {missing} in the batch{hint}.")
        out = self.fn(logits, batch)
        if not isinstance(out, torch.Tensor) or out.shape != (logits.shape[0],):
            raise SpecError(f"Metric {self.name!r} must return a ({logits.shape[0]},) tensor, got "
                            f"{getattr(out, 'shape', type(out).__name__)}.")
        return out.float()


def _at_last(logits, batch):
    return logits[torch.arange(logits.shape[0], device=logits.device), batch["last"].to(logits.device)]


def logit_diff(logits, batch):
    last = _at_last(logits, batch).float()
    ar = torch.arange(last.shape[0], device=last.device)
    return last[ar, batch["answer"].to(last.device)] - last[ar, batch["distractor"].to(last.device)]


def answer_logprob(logits, batch):
    lp = F.log_softmax(_at_last(logits, batch).float(), -1)
    return lp[torch.arange(lp.shape[0], device=lp.device), batch["answer"].to(lp.device)]


def _row_mean(values, where):
    where = where.to(values.device)
    n = where.sum(1)
    s = (values * where).sum(1)
    return torch.where(n > 0, s / n.clamp(min=1), torch.full_like(s, float("nan")))


def loss(logits, batch):
    return _row_mean(token_nll(logits, batch["targets"].to(logits.device)), batch["where"])


def kl(logits, batch):
    lp = F.log_softmax(logits.float(), -1)
    lc = F.log_softmax(batch["clean_logits"].to(logits.device).float(), -1)
    return _row_mean((lc.exp() * (lc - lp)).sum(-1), batch["attention_mask"])


def top1_agreement(logits, batch):
    same = (logits.argmax(-1) == batch["clean_logits"].to(logits.device).argmax(-1)).float()
    return _row_mean(same, batch["attention_mask"])


BUILTIN = {
    "logit_diff": Metric("logit_diff", logit_diff, "answer", ("answer", "distractor")),
    "answer_logprob": Metric("answer_logprob", answer_logprob, "answer", ("answer",)),
    "loss": Metric("loss", loss, "targets", ("targets", "where")),
    "kl": Metric("kl", kl, "all", ("clean_logits",)),
    "top1_agreement": Metric("top1_agreement", top1_agreement, "all", ("clean_logits",)),
}


def get_metric(metric) -> Metric:
    """A built-in name, a ``'package.module:function'`` path, a callable or a :class:`Metric`."""
    if isinstance(metric, Metric):
        return metric
    if isinstance(metric, str) and metric in BUILTIN:
        return BUILTIN[metric]
    if isinstance(metric, str) and ":" not in metric:
        raise SpecError(f"Unknown metric {metric!r}: use one of {sorted(BUILTIN)} or 'package.module:function'.")
    try:
        fn = import_callable(metric)
    except (ImportError, AttributeError) as e:
        raise SpecError(f"Cannot import metric {metric!r}: {e}") from None
    name = metric if isinstance(metric, str) else getattr(fn, "__name__", "metric")
    reads = getattr(fn, "reads", "all")
    if reads not in ("answer", "targets", "all"):
        raise SpecError(f"Metric {name!r}: fn.reads must be 'answer', 'targets' or 'all', got {reads!r}.")
    return Metric(name, fn, reads)


def default_metrics(has_answer: bool, has_distractor: bool) -> list:
    """What ``interp run`` reports when no metric is named: everything the data allows."""
    out = ["loss", "kl", "top1_agreement"]
    if has_answer:
        out.insert(0, "answer_logprob")
        if has_distractor:
            out.insert(0, "logit_diff")
    return out


# -- the batch a metric reads -------------------------------------------------------------
def token_ids(model, tokens, what: str = "answer") -> Optional[torch.Tensor]:
    """Single-token ids for ``tokens`` (ids, or strings that must be exactly one token each)."""
    if tokens is None or all(t is None for t in tokens):
        return None
    if any(t is None for t in tokens):
        raise SpecError(f"Some rows have a {what} and others do not; give every row one (or none).")
    out = []
    for i, t in enumerate(tokens):
        if isinstance(t, (int, torch.Tensor)) or (isinstance(t, str) and t.isdigit() and model.tokenizer is None):
            out.append(int(t))
            continue
        if model.tokenizer is None:
            raise SpecError(f"Row {i}: {what} {t!r} is text but this model has no tokenizer; give a token id.")
        ids = model.tokenizer(str(t), add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise SpecError(f"Row {i}: {what} {t!r} is {len(ids)} tokens {ids}; answer metrics need one token "
                            "(for GPT-2-style tokenizers include the leading space, e.g. ' Paris').")
        out.append(int(ids[0]))
    return torch.tensor(out, dtype=torch.long)


def last_real_index(attention_mask: torch.Tensor) -> torch.Tensor:
    am = attention_mask.bool()
    pos = torch.arange(am.shape[1], device=am.device).expand_as(am)
    return torch.where(am, pos, torch.full_like(pos, -1)).max(1).values


def metric_batch(model, inputs: dict, *, answers=None, distractors=None, clean_logits=None, seed: int = 0) -> dict:
    """The dict metrics read, for prepared ``inputs``: ``input_ids``, ``attention_mask``, ``last``
    (index of the last real token), ``answer``/``distractor`` ids (or None), ``clean_logits``,
    and ``targets``/``where`` of the LM loss (for masked LMs ``run_inputs`` holds the masked
    ids to run instead of ``inputs``: see :func:`mlm_targets`)."""
    key = "input_ids" if "input_ids" in inputs else "tokens"
    ids = inputs[key]
    am = inputs.get("attention_mask")
    am = torch.ones_like(ids, dtype=torch.bool) if am is None else am.bool()
    mlm_error = None
    if masked_lm(model):
        try:
            run_inputs, targets, where = mlm_targets(model, inputs, seed)
        except SpecError as e:  # no mask token: an error only for the metrics that score masked tokens
            run_inputs, targets, where, mlm_error = inputs, None, None, str(e)
    else:
        run_inputs, targets, where = lm_targets(model, inputs, seed)
    return {"input_ids": ids, "attention_mask": am, "last": last_real_index(am),
            "answer": token_ids(model, answers, "answer"), "distractor": token_ids(model, distractors, "distractor"),
            "clean_logits": clean_logits, "targets": targets, "where": where, "run_inputs": run_inputs,
            "mlm_error": mlm_error}


# -- masked language models ------------------------------------------------------------------
def masked_lm(model) -> bool:
    """ESM (the hooks' masked-LM adapters) or any transformers ``*ForMaskedLM`` (BERT, RoBERTa, ...)."""
    return is_masked_lm(model) or type(getattr(model, "model", None)).__name__.endswith("ForMaskedLM")


def mask_id(model) -> int:
    """The model's mask token id: tokenizer, then config, then the adapter (fair-esm); else an error."""
    tok = getattr(model, "tokenizer", None)
    for mid in (getattr(tok, "mask_token_id", None), getattr(getattr(model.model, "config", None), "mask_token_id", None),
                model.adapter.extra.get("mask_token_id")):
        if mid is not None:
            return int(mid)
    raise SpecError(f"The masked-LM loss needs a mask token, but {type(model.model).__name__} has no mask token id "
                    "(no tokenizer.mask_token_id, no config.mask_token_id). Load the model with its tokenizer "
                    "(hooks.load(path) of a directory with tokenizer files, or hooks.wrap(model, tokenizer)) or set "
                    "model.config.mask_token_id; or use a metric that does not score masked tokens (kl, "
                    "top1_agreement, logit_diff).")


def maskable(model, ids: torch.Tensor, am: torch.Tensor) -> torch.Tensor:
    """``(B, P)`` bool: real tokens that may be masked: not padding, not special (ESM: the residue
    span; otherwise not one of the tokenizer's special ids, or the config's pad/bos/eos/cls/sep ids),
    and not already a mask token."""
    spans = model.spans(ids, am)
    if "residues" in spans:
        real = spans["residues"].to(am.device) & am
    else:
        tok = getattr(model, "tokenizer", None)
        special = set(getattr(tok, "all_special_ids", None) or [])
        if tok is None or not special:
            cfg = getattr(model.model, "config", None)
            special |= {getattr(cfg, f"{n}_token_id", None) for n in ("pad", "bos", "eos", "cls", "sep")}
            special.discard(None)
        real = am & ~torch.isin(ids, torch.tensor(sorted(special), dtype=ids.dtype, device=ids.device))
    return real & (ids != mask_id(model))


def mlm_targets(model, inputs: dict, seed: int = 0, rate: float = MLM_RATE):
    """``(masked_inputs, targets, where)`` of the masked-LM loss: each maskable token is picked with
    probability ``rate`` and replaced by the mask token (at least one per row that has a maskable
    token); ``targets`` are the original ids, scored at ``where`` only. The draw of a row depends
    only on ``seed`` and that row's real tokens (a generator seeded from both), so an example is
    masked the same way in any batch, batch size or padding side."""
    key = "input_ids" if "input_ids" in inputs else "tokens"
    ids = inputs[key]
    am = inputs.get("attention_mask")
    am = torch.ones_like(ids, dtype=torch.bool) if am is None else am.bool()
    real = maskable(model, ids, am)
    pick = torch.zeros_like(real)
    for b in range(ids.shape[0]):
        g = torch.Generator().manual_seed(_row_seed(seed, ids[b][am[b]]))
        cand = am[b].nonzero()[:, 0]
        chosen = cand[(torch.rand(len(cand), generator=g) < rate).to(cand.device) & real[b, cand]]
        if not len(chosen) and real[b].any():
            chosen = real[b].nonzero()[0]
        pick[b, chosen] = True
    return masked_like(model, {"where": pick}, inputs), ids, pick


def _row_seed(seed: int, row_ids: torch.Tensor) -> int:
    import hashlib

    digest = hashlib.sha256(row_ids.detach().cpu().long().numpy().tobytes()).digest()
    return (int.from_bytes(digest[:7], "little") ^ (int(seed) * 0x9E3779B97F4A7C15)) % (1 << 63)


def masked_like(model, batch: dict, inputs: dict) -> dict:
    """``inputs`` with the mask token at ``batch["where"]`` (the masked positions of a masked-LM
    :func:`metric_batch`): the same masks for the corrupt prompt and every patched run. Causal LMs:
    ``inputs`` unchanged."""
    if not masked_lm(model):
        return inputs
    key, mid = ("input_ids" if "input_ids" in inputs else "tokens"), mask_id(model)
    where = batch["where"].to(inputs[key].device)
    if where.shape != inputs[key].shape:
        raise SpecError(f"Cannot apply a {tuple(where.shape)} token mask to inputs of shape {tuple(inputs[key].shape)}.")
    return {**inputs, key: inputs[key].masked_fill(where, mid)}


def repeat_batch(batch: dict, k: int) -> dict:
    """The batch of ``k`` stacked copies of every row (variant-major), for batched sweeps."""
    def rep(v):
        if isinstance(v, torch.Tensor):
            return v.repeat(k, *([1] * (v.dim() - 1)))
        if isinstance(v, dict):
            return {kk: rep(vv) for kk, vv in v.items()}
        return v
    return {name: rep(v) for name, v in batch.items()}


# -- can an intervention move a metric? ----------------------------------------------------
def read_mask(metric: Metric, batch: dict) -> torch.Tensor:
    """``(B, P)`` CPU mask of the positions whose outputs ``metric`` reads."""
    am = batch["attention_mask"].cpu()
    if metric.reads == "answer":
        out = torch.zeros_like(am)
        out[torch.arange(am.shape[0]), batch["last"].cpu()] = True
        return out
    if metric.reads == "targets":
        return batch["where"].cpu().bool()
    return am


def acting_mask(model, iv: Intervention, batch: dict) -> Optional[torch.Tensor]:
    """``(B, P)`` CPU mask of the positions ``iv`` acts on in a plain forward (None: not a position
    intervention, e.g. a Cache; an all-False mask: it never acts, e.g. ``apply_to='new'``)."""
    from hooks import positions as P

    if isinstance(iv, Cache):
        return None
    sel = iv.queries if isinstance(iv, Knockout) else getattr(iv, "positions", "all")
    ids, am = batch["input_ids"].cpu(), batch["attention_mask"].cpu()
    if getattr(iv, "apply_to", "all") == "new":
        return torch.zeros_like(am)
    ctx = P.BatchContext(attention_mask=am, input_ids=ids, tokenizer=model.tokenizer,
                         span_fn=lambda: model.spans(ids, am))
    return P.resolve(sel, ctx)


def unaffected_by(model, interventions, metric: Metric, batch: dict) -> list:
    """Indices of the interventions that cannot change ``metric`` on any row of ``batch``: in a
    causal model, those acting only at positions after every position the metric reads."""
    if masked_lm(model):  # bidirectional: every position can reach every other
        return []
    reads = read_mask(metric, batch)
    # reads_from[b, p] = the metric reads some position >= p in row b
    reads_from = reads.flip(1).cumsum(1).flip(1) > 0
    out = []
    for i, iv in enumerate(interventions):
        acts = acting_mask(model, iv, batch)
        if acts is None:
            continue
        if acts.shape == reads_from.shape and not bool((acts & reads_from).any()):
            out.append(i)
    return out


def describe(iv: Intervention) -> str:
    d = iv.to_dict()
    keep = {k: d[k] for k in ("sites", "layers", "positions", "queries", "apply_to", "heads") if k in d}
    return f"{type(iv).__name__}({', '.join(f'{k}={v}' for k, v in keep.items())})"
