"""Skip what a patch cannot change: replay the base run's recorded module outputs.

A patch at a site of layer ``L`` cannot change anything the forward computed *before* that
site's hook fired: the blocks below ``L`` and, inside block ``L``, the sub-modules that had
already returned (e.g. the attention module, for a patch at ``mlp_out.L`` or ``attn_out.L``).
:func:`record` runs the base input once and keeps the raw ``forward`` return value of every
such candidate module (blocks, and the parameter-holding children of the blocks the sites
live in) together with the order in which modules returned and site hooks fired;
:meth:`Replay.replaying` then, for one forward, swaps those modules' ``forward`` for a
function that returns the recorded output gathered at the stacked rows (``rows[i]`` = the
base row that stacked row ``i`` copies) instead of computing it.

    rep = record(model, base_inputs, ["head_out.2"])        # None when the model does not allow it
    with rep.replaying("head_out.2", rows):                 # blocks 0-1 (and block 2's ln) replayed
        logits = model.run(stacked_inputs, edits).logits

Generic: no per-architecture forward and no argument names. Only ``forward`` is swapped (an
instance attribute, restored in ``finally`` to exactly what was there: the class method, or a
wrapper accelerate or another library had set), so every hook registered on a replayed module
(ours, TransformerLens's, nnsight's, the user's) still runs on the replayed output as it ran
on the computed one. The recorded value is the raw ``forward`` return (before forward hooks),
cloned so that later in-place updates in the base forward cannot alter it.

Preconditions (else :func:`record` returns ``None`` with a reason, and the sweep runs every
block): the model is in eval mode; no site is time-first (``PBD``); blocks are distinct
modules each called once; a module is replayed for a site only if it was called exactly once
and returned before that site's hook fired (for attention-function sites: before block ``L``
started); its output is a tensor, or a tuple/list/dict of tensors and plain values, with
every tensor batch-major (``shape[0] == B``). The sweep also checks each site's replay
against the base run on permuted rows before using it (:meth:`Replay.check`).

Method: the same exactness argument as TransformerLens's ``start_at_layer``
(``transformer_lens/HookedTransformer.py``), which resumes a forward from a cached
residual; here it is done by module replacement so that it works on any wrapped model.
"""
from __future__ import annotations

import contextlib
import itertools

import torch

from hooks.adapters.base import get_module

_PLAIN = (type(None), bool, int, float, str)


def blocks_of(model) -> list:
    """The model's decoder/encoder blocks, in order (the adapter's layer list)."""
    return list(get_module(model.model, model.adapter.layers))


def _clone(out):
    if isinstance(out, torch.Tensor):
        return out.detach().clone()
    if type(out) in (tuple, list):
        return type(out)(_clone(v) for v in out)
    if type(out) is dict:
        return {k: _clone(v) for k, v in out.items()}
    return out


def _supported(out, B: int) -> bool:
    """Tensors batch-major, containers we can rebuild exactly, nothing else."""
    if isinstance(out, torch.Tensor):
        return out.dim() >= 1 and out.shape[0] == B
    if type(out) in (tuple, list):
        return all(_supported(v, B) for v in out)
    if type(out) is dict:
        return all(_supported(v, B) for v in out.values())
    return isinstance(out, _PLAIN)


def _take(out, rows: torch.Tensor, cut: int = 0, width: int = 0):
    """``out`` at batch rows ``rows`` (a fresh tensor: the forward may update it in place) and,
    with ``cut``, at sequence columns ``[cut, width)`` of every ``(B, width, ...)`` tensor."""
    if isinstance(out, torch.Tensor):
        out = out.index_select(0, rows.to(out.device))
        return out[:, cut:] if cut and out.dim() >= 2 and out.shape[1] == width else out
    if type(out) in (tuple, list):
        return type(out)(_take(v, rows, cut, width) for v in out)
    if type(out) is dict:
        return {k: _take(v, rows, cut, width) for k, v in out.items()}
    return out


@contextlib.contextmanager
def swapped_forward(modules_and_fns):
    """Give each module a different ``forward`` for the block; always restore what was there."""
    saved = []
    try:
        for mod, fn in modules_and_fns:
            saved.append((mod, "forward" in mod.__dict__, mod.__dict__.get("forward")))
            mod.forward = fn
        yield
    finally:
        for mod, had, old in reversed(saved):
            if had:
                mod.forward = old
            else:
                del mod.forward


class Replay:
    """Recorded outputs of one base run and, per site, the modules that may be replayed."""

    def __init__(self, model, B: int, outputs: dict, plans: dict, reasons: dict, width: int = 0):
        self.model, self.B, self.width = model, B, width
        self.outputs = outputs  # module -> recorded raw forward output
        self.plans = plans  # site -> [modules to replay]
        self.reasons = reasons  # site -> why it gets no plan

    def plan(self, site) -> list:
        return self.plans.get(site, [])

    @contextlib.contextmanager
    def replaying(self, site, rows: torch.Tensor, cut: int = 0):
        """Within the block, the modules planned for ``site`` return their recorded outputs at ``rows``.

        ``cut > 0`` (a forward of the columns from ``cut`` on, the prefix in the model's KV cache:
        :mod:`interp.patching.prefix`): only whole blocks are replayed, their outputs at those
        columns; the caller checks that this reproduces the base run before relying on it."""
        mods = self.plan(site)
        if cut:
            blocks = set(blocks_of(self.model))
            mods = [m for m in mods if m in blocks]

        def replay(out):
            return lambda *a, **k: _take(out, rows, cut, self.width)

        with self.model.lock, swapped_forward([(m, replay(self.outputs[m])) for m in mods]):
            yield

    def check(self, site, evaluate, want_fn) -> bool:
        """Does the replayed forward reproduce the base run (no edits, rows reversed plus one
        duplicate)? ``evaluate(rows, ctx)`` runs the stacked base rows; ``want_fn(rows)`` is the
        reference. A failure or an error drops the plan for ``site`` (the sweep then runs it whole)."""
        if not self.plan(site):
            return False
        rows = torch.cat([torch.arange(self.B).flip(0), torch.zeros(1, dtype=torch.long)])
        try:
            got = evaluate(rows, self.replaying(site, rows))
            want = want_fn(rows)
            ok = got.shape == want.shape and bool(torch.allclose(got, want, rtol=1e-4, atol=1e-5, equal_nan=True))
        except Exception as e:  # noqa: BLE001 - any failure means: do not replay here
            ok, why = False, f"replay check raised {type(e).__name__}: {e}"
        else:
            why = "replayed forward differs from the base run"
        if not ok:
            self.plans.pop(site, None)
            self.reasons[site] = why
        return ok


def record(model, inputs: dict, sites: list, run) -> tuple:
    """Run ``run()`` (a forward of ``inputs``) while recording; returns ``(Replay or None, reason, run's result)``."""
    B = inputs["attention_mask"].shape[0]
    why = _model_precondition(model)
    if why:
        return None, why, run()
    blocks = blocks_of(model)
    bindings = {b.name: b for b in model.resolve_sites(sites)}
    layers = sorted({b.layer for b in bindings.values()})
    children = {L: [c for c in blocks[L].children() if any(True for _ in c.parameters())] for L in layers}
    candidates = list(dict.fromkeys(blocks + [c for cs in children.values() for c in cs]))
    clock = itertools.count()
    calls: dict = {m: [] for m in candidates}  # module -> [(start, end)]
    outputs: dict = {}
    fired: dict = {s: [] for s in sites}

    def recorder(mod, orig):
        def fwd(*a, **k):
            start = next(clock)
            out = orig(*a, **k)
            calls[mod].append((start, next(clock)))
            outputs.setdefault(mod, _clone(out))
            return out
        return fwd

    handles = []
    try:
        for s, b in bindings.items():
            if b.kind == "input":
                handles.append(b.module.register_forward_pre_hook(lambda m, a, _s=s: fired[_s].append(next(clock))))
            elif b.kind == "output":
                handles.append(b.module.register_forward_hook(lambda m, a, o, _s=s: fired[_s].append(next(clock))))
        with model.lock, swapped_forward([(m, recorder(m, m.forward)) for m in candidates]):
            result = run()
    finally:
        for h in handles:
            h.remove()
    if len({id(b) for b in blocks}) != len(blocks) or any(len(calls[b]) != 1 for b in blocks):
        return None, "the blocks are not each called once per forward", result
    plans, reasons = {}, {}
    for s, b in bindings.items():
        L = b.layer
        event = fired[s][0] if len(fired[s]) == 1 else calls[blocks[L]][0][0]  # else: block L's start
        mods = [m for m in blocks[:L] + (children[L] if len(fired[s]) == 1 else [])
                if len(calls[m]) == 1 and calls[m][0][1] < event]
        bad = [m for m in mods if not _supported(outputs[m], B)]
        if bad:
            reasons[s] = f"{type(bad[0]).__name__} returns a {type(outputs[bad[0]]).__name__} we cannot replay"
            continue
        if mods:
            plans[s] = mods
    return Replay(model, B, outputs, plans, reasons, inputs["attention_mask"].shape[1]), "", result


def _model_precondition(model) -> str:
    if model.model.training:
        return "the model is in training mode (dropout would make replayed and computed rows differ)"
    if any("PBD" in b.layout for b in model.resolve_sites(model.site_names)):
        return "the model's activations are time-first (PBD)"
    try:
        blocks_of(model)
    except (AttributeError, TypeError) as e:
        return f"no block list: {e}"
    return ""
