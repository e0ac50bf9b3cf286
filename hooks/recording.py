"""One recording forward: the first input and output of every module, and who calls attention.

Used by structural inference (:mod:`hooks.infer`) and the load-time self-check
(:mod:`hooks.verify`). The tensors recorded are exactly the ones a site would read: an
``input`` site the first positional tensor (else ``hidden_states``, else the first tensor
keyword), an ``output`` site the tensor or first element of a returned tuple.

    rec = record(model, ["model.layers.0", "model.layers.0.mlp"], {"input_ids": ids})
    rec.recs["model.layers.0.mlp"].out        # (B, P, D), cloned
"""
from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass, field
from typing import Optional

import torch

HEAD_KEYS = ("num_attention_heads", "n_head", "num_heads", "n_heads")


# -- config ----------------------------------------------------------------------------
def text_config(model):
    cfg = getattr(model, "config", None)
    if cfg is None:
        return None
    get = getattr(cfg, "get_text_config", None)
    try:
        return get(decoder=True) if get is not None else cfg
    except TypeError:
        return get()


def _first_int(cfg, keys) -> Optional[int]:
    for k in keys:
        v = getattr(cfg, k, None)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    return None


def n_heads_of(model) -> Optional[int]:
    return _first_int(text_config(model), HEAD_KEYS)


# -- recording ----------------------------------------------------------------------------
def first_input(args, kwargs):
    """The tensor an ``input`` site reads (the same rule as the trace's pre-hook)."""
    if args and isinstance(args[0], torch.Tensor):
        return args[0]
    if isinstance(kwargs.get("hidden_states"), torch.Tensor):
        return kwargs["hidden_states"]
    return next((v for v in kwargs.values() if isinstance(v, torch.Tensor)), None)


def first_output(output):
    """The tensor an ``output`` site reads (tensor, or first element of a tuple)."""
    t = output[0] if isinstance(output, tuple) and output else output
    return t if isinstance(t, torch.Tensor) else None


@dataclass
class Rec:
    path: str
    module: torch.nn.Module
    calls: int = 0
    start: int = -1
    end: int = -1
    inp: Optional[torch.Tensor] = None
    out: Optional[torch.Tensor] = None
    attn_calls: int = 0
    out_tuple: bool = False  # the module returned a tuple (its first element is ``out``)
    out_list: Optional[torch.Tensor] = None  # first element of a returned *list* (no output site can edit it)
    # modules that run several times (a shared layer, hooks.calls): the second call's input, the last call's output
    inp_next: Optional[torch.Tensor] = None
    out_last: Optional[torch.Tensor] = None


@dataclass
class Recording:
    recs: dict = field(default_factory=dict)  # path -> Rec
    output: object = None


def _float(t):
    return t is not None and isinstance(t, torch.Tensor) and t.is_floating_point() and t.dim() >= 2


@contextlib.contextmanager
def restoring_capture_hooks(model):
    """Leave the model as we found it: transformers installs its (inert) output-capturing hooks
    the first time ``output_hidden_states=True`` is asked for; if our check was that first time,
    the hooks it added during the check are removed again and its "installed" mark reset, so it
    reinstalls them when a user asks. Hooks that existed before are never touched."""
    flag = "_output_capturing_hooks_installed"
    mods = list(model.modules())
    before = {id(m): set(m._forward_hooks) | set(m._forward_pre_hooks) for m in mods}
    fresh = not any(getattr(m, flag, False) for m in mods)
    try:
        yield
    finally:
        if fresh:
            for m in mods:
                for d in (m._forward_hooks, m._forward_pre_hooks):
                    for k in [k for k in d if k not in before[id(m)]]:
                        if getattr(d[k], "__module__", "").startswith("transformers.utils.output_capturing"):
                            del d[k]
                if getattr(m, flag, False):
                    setattr(m, flag, False)


def record(model, paths: list, inputs: dict, probe: bool = True) -> Recording:
    """One forward recording first input/output, call count and order of each module in ``paths``."""
    from . import attention

    rec = Recording()
    clock = [0]
    handles = []
    probes = []

    def tick():
        clock[0] += 1
        return clock[0]

    for path in paths:
        mod = model.get_submodule(path) if path else model
        r = rec.recs[path] = Rec(path, mod)

        def pre(m, args, kwargs, r=r):
            r.calls += 1
            if r.calls == 1:
                r.start = tick()
                t = first_input(args, kwargs)
                r.inp = t.detach().clone() if _float(t) else None
            elif r.calls == 2:
                t = first_input(args, kwargs)
                r.inp_next = t.detach().clone() if _float(t) else None

        def post(m, args, kwargs, output, r=r):
            if r.calls > 1:
                t = first_output(output)
                r.out_last = t.detach().clone() if _float(t) else None
            if r.calls == 1 and r.end < 0:
                r.end = tick()
                t = first_output(output)
                r.out = t.detach().clone() if _float(t) else None
                r.out_tuple = isinstance(output, tuple)
                if isinstance(output, list) and output and _float(output[0]):
                    r.out_list = output[0].detach().clone()

        handles.append(mod.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(mod.register_forward_hook(post, with_kwargs=True))

        def probe_fn(stage, t, r=r):
            if stage == "scores":
                r.attn_calls += 1
            return None

        if probe:
            attention.add_handler(mod, probe_fn)
            probes.append((mod, probe_fn))
    try:
        with torch.no_grad(), restoring_capture_hooks(model):
            rec.output = call(model, inputs, output_hidden_states=True)
    finally:
        for h in handles:
            h.remove()
        for mod, probe in probes:
            attention.remove_handler(mod, probe)
    return rec


HIDDEN_KEYS = ("hidden_states", "encoder_hidden_states", "decoder_hidden_states")


def hidden_states_of(output, key: Optional[str] = None):
    """The ``output_hidden_states`` tuple of a model output: ``output.<key>`` when given (an
    encoder-decoder's ``encoder_hidden_states``), else the first of :data:`HIDDEN_KEYS` present."""
    for k in ((key,) if key else HIDDEN_KEYS):
        hs = getattr(output, k, None)
        if isinstance(hs, (tuple, list)) and hs:
            return hs
    return None


def accepts(model, name: str) -> bool:
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False
    return name in params


def call(model, inputs: dict, **kw):
    kw = dict(kw)
    if accepts(model, "use_cache"):
        kw["use_cache"] = False
    return model(**inputs, **kw)


def probe_ids(model, n: int = 5, batch: int = 1) -> torch.Tensor:
    """A few ordinary token ids (avoiding the config's special ids) on the model's device."""
    cfg = text_config(model)
    vocab = getattr(cfg, "vocab_size", None) or 64
    special = set()
    for c in (getattr(model, "config", None), cfg):
        for k, v in (vars(c).items() if c is not None else ()):
            if k.endswith("token_id") or k.endswith("token_index"):
                special.update(v if isinstance(v, (list, tuple)) else [v])
    ok = [i for i in range(3, min(vocab, 200)) if i not in special][: max(n * batch, 1)]
    g = torch.Generator().manual_seed(0)
    pick = torch.tensor(ok)[torch.randint(len(ok), (batch, n), generator=g)]
    try:
        dev = next(model.parameters()).device
    except StopIteration:
        dev = torch.device("cpu")
    return pick.to(dev)
