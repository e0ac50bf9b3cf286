"""Prefix reuse: a patch at position ``p`` of a causal model cannot change positions ``< p``.

In a causal model every position before the first one a patch changes is, at every layer,
identical to the base run; so a stacked variant needs only its *suffix* computed, attending
to the base run's keys and values of the prefix through the model's own KV cache:

    pre, why = find(model, base_inputs, base_logits_last)     # None (+ reason) when not possible
    inputs, kw = pre.suffix(rows, c)     # base rows ``rows`` from padded column c on, with their cache
    logits = model.run(inputs, edits, **kw).logits              # (len(rows), P - c, vocab)

Found by what the model is, not by transformers' argument names (which change: 5.25 renamed
``past_key_values`` to ``cache``; TransformerLens calls it ``past_kv_cache``):

* the cache argument is a parameter of the model's ``forward`` whose name mentions ``cache``
  or ``past`` (``use_cache`` and ``cache_position`` excluded), tried in signature order;
* the prefix's cache is either *returned* by the forward (an output value answering
  ``get_seq_length()``, as :func:`hooks.model.find_kv_cache` recognises caches; the forward is
  asked with ``use_cache=True`` where it has that parameter: transformers) or *filled in
  place* (an empty cache built by the ``init_cache(cfg, device, batch_size)`` class method of
  the parameter's annotated class: TransformerLens);
* the cache is copied to the stacked rows by selecting, in every tensor it holds whose first
  dimension is the batch, the rows wanted (no per-family layout);
* the attention mask of the suffix call is either the full (prefix + suffix) mask or the
  suffix's alone (TransformerLens appends it to the cache's); position ids, where the model
  takes them (the wrapped model's adapter says so), are the suffix's columns of
  ``cumsum(mask) - 1``, so left padding is right.

Causality and every choice above are *checked*, not assumed: :func:`find` keeps a mechanism
only if a suffix run (rows permuted, one duplicated) reproduces the base run's last-token
logits to 1e-5, at the smallest and largest prefix the sweep will use (a
bidirectional model fails: its prefix depends on the suffix). Models whose config says
``is_decoder=False`` and that are not causal LMs (ESM, BERT as a masked LM), and
TransformerLens models with ``attention_dir="bidirectional"``, are refused before trying. Anything else
(no cache argument, an error, a mismatch) returns ``None`` with the reason, and the sweep
runs full rows (``df.attrs["prefix_off"]``).

Method: the KV-cache continuation every causal-LM generator uses (transformers ``generate``;
TransformerLens ``HookedTransformer.generate`` with ``TransformerLensKeyValueCache``), applied
to a patched suffix instead of new tokens.
"""
from __future__ import annotations

import copy
import importlib
import inspect
import re

import torch

from .common import take_rows

_SKIP = {"use_cache", "cache_position", "cache_positions"}
_PLAIN = (type(None), bool, int, float, str, torch.device, torch.dtype)


def _params(model) -> dict:
    try:
        return dict(inspect.signature(model.model.forward).parameters)
    except (TypeError, ValueError):
        return {}


def _cache_params(params: dict) -> list:
    return [n for n in params if n not in _SKIP and ("cache" in n.lower() or "past" in n.lower())]


def _returned_cache(out):
    vals = list(out.values()) if hasattr(out, "values") and callable(out.values) else \
        list(out) if isinstance(out, (tuple, list)) else []
    for v in vals:
        if callable(getattr(v, "get_seq_length", None)):
            return v
    return None


def _annotated_class(model, param):
    """The class a parameter's annotation names (``Optional[X]`` as a string too), looked up in the
    forward's module and the model's top-level package."""
    ann = param.annotation
    names = re.findall(r"[A-Za-z_][A-Za-z0-9_]*", ann if isinstance(ann, str) else getattr(ann, "__name__", str(ann)))
    fwd = getattr(type(model.model).forward, "__globals__", {})
    top = importlib.import_module(type(model.model).__module__.split(".")[0])
    for n in names:
        cls = fwd.get(n) or getattr(top, n, None)
        if isinstance(cls, type) and callable(getattr(cls, "init_cache", None)):
            return cls
    return None


def select_rows(obj, B: int, rows: torch.Tensor, root: str, depth: int = 0):
    """A copy of a cache object with every batch-major tensor (``shape[0] == B``) it holds at
    ``rows``; objects of the cache's own package are copied shallowly, anything else shared."""
    if isinstance(obj, torch.Tensor):
        return obj.index_select(0, rows.to(obj.device)) if obj.dim() >= 1 and obj.shape[0] == B else obj
    if depth > 6 or isinstance(obj, (_PLAIN, torch.nn.Module)):
        return obj
    if type(obj) in (list, tuple):
        return type(obj)(select_rows(v, B, rows, root, depth + 1) for v in obj)
    if type(obj) is dict:
        return {k: select_rows(v, B, rows, root, depth + 1) for k, v in obj.items()}
    if hasattr(obj, "__dict__") and type(obj).__module__.split(".")[0] == root:
        new = copy.copy(obj)
        for k, v in vars(obj).items():
            setattr(new, k, select_rows(v, B, rows, root, depth + 1))
        return new
    return obj


class Prefix:
    """One working way to run suffixes of the base rows on top of the base run's cached prefix."""

    def __init__(self, model, base: dict, name: str, how: str, mask: str, pos: bool, caches=None):
        self.model, self.base, self.name, self.how, self.mask, self.pos = model, base, name, how, mask, pos
        self.B, self.P = base["attention_mask"].shape
        self._caches: dict = {} if caches is None else caches  # cut -> filled prefix cache (shared by mask modes)

    def describe(self) -> str:
        return f"{self.name}= ({self.how}), {self.mask} attention mask" + (", position ids" if self.pos else "")

    def _cut(self, inputs: dict, lo: int, hi=None) -> dict:
        return {k: v[:, lo:hi] if isinstance(v, torch.Tensor) and v.dim() >= 2 and tuple(v.shape[:2]) ==
                (inputs["attention_mask"].shape[0], self.P) else v for k, v in inputs.items()}

    def _positions(self, am: torch.Tensor) -> torch.Tensor:
        return (am.long().cumsum(-1) - 1).clamp(min=0)

    def cache(self, c: int):
        """The base run's cache of padded columns ``[0, c)`` (one forward of the prefix, kept)."""
        if c not in self._caches:
            inp = self._cut(self.base, 0, c)
            if self.pos:
                inp["position_ids"] = self._positions(inp["attention_mask"])
            with torch.no_grad():
                if self.how == "returned":
                    got = _returned_cache(self.model.forward(inp, use_cache=True))
                    if got is None:
                        raise RuntimeError("the forward returned no cache object")
                else:
                    cls = _annotated_class(self.model, _params(self.model)[self.name])
                    dev = inp["attention_mask"].device
                    got = cls.init_cache(self.model.model.cfg, dev, self.B)
                    self.model.forward(inp, **{self.name: got})
            if len(self._caches) >= 4:  # a few prefixes at a time (the sweep runs them in order)
                self._caches.pop(next(iter(self._caches)))
            self._caches[c] = got
        return self._caches[c]

    def suffix(self, rows: torch.Tensor, c: int):
        """``(inputs, forward kwargs)`` for base rows ``rows`` from padded column ``c`` on."""
        cache = self.cache(c)
        full = take_rows(self.base, rows)
        inp = self._cut(full, c)
        if self.mask == "full":
            inp["attention_mask"] = full["attention_mask"]
        if self.pos:
            inp["position_ids"] = self._positions(full["attention_mask"])[:, c:]
        kw = {self.name: select_rows(cache, self.B, rows, type(cache).__module__.split(".")[0])}
        if self.how == "returned" and "use_cache" in _params(self.model):
            kw["use_cache"] = True
        # a suffix continues the base prefix of *other* rows: not the previous forward's ids
        self.model.forget_window()
        return inp, kw


def refused(model) -> str:
    """A reason not to try prefix reuse at all ('' when it may be tried)."""
    cfg = getattr(model.model, "config", None)
    if cfg is not None and getattr(cfg, "is_decoder", None) is False and not _causal_lm(model):
        return "the model's config says is_decoder=False and it is not a causal LM (bidirectional attention)"
    if getattr(getattr(model.model, "cfg", None), "attention_dir", None) == "bidirectional":  # TransformerLens
        return "the model's cfg says attention_dir='bidirectional'"
    if not _cache_params(_params(model)):
        return "the model's forward takes no KV-cache argument"
    return ""


def _causal_lm(model) -> bool:
    return any("CausalLM" in c.__name__ or "LMHead" in c.__name__ for c in type(model.model).__mro__)


def find(model, base: dict, check, cuts: list):
    """A :class:`Prefix` that reproduces the base run at every cut in ``cuts``, or ``(None, why)``.

    ``check(inputs, kw, rows, c)`` -> True when the suffix run of base rows ``rows`` matches the
    base run (the sweep's own forward, so the check covers what the sweep does)."""
    why = refused(model)
    if why or not cuts:
        return None, why or "no patched position after the first column"
    params = _params(model)
    cuts = sorted(set(cuts))
    probe = [cuts[0], cuts[-1]]
    am = base["attention_mask"].bool().cpu()

    def rows_at(c):  # the rows with real tokens from column c on, reversed, the first one repeated
        r = am[:, c:].any(1).nonzero()[:, 0].flip(0)
        return torch.cat([r, r[:1]])
    pos = bool(getattr(model.adapter, "position_ids", False)) and "position_ids" in params
    errors, filled = [], {}
    for name in _cache_params(params):
        hows = (["returned"] if "use_cache" in params else []) + \
               (["filled"] if _annotated_class(model, params[name]) is not None else [])
        for how in hows:
            for mask in ("full", "suffix"):
                pre = Prefix(model, base, name, how, mask, pos, filled.setdefault((name, how), {}))
                try:
                    ok = all(check(*pre.suffix(rows_at(c), c), rows_at(c), c) for c in dict.fromkeys(probe))
                except Exception as e:  # noqa: BLE001 - any failure means: this way does not work
                    errors.append(f"{pre.describe()}: {type(e).__name__}: {str(e)[:120]}")
                    continue
                if ok:
                    return pre, ""
                errors.append(f"{pre.describe()}: suffix run differs from the base run")
    return None, "prefix reuse through the KV cache failed its check (" + "; ".join(errors or ["nothing to try"]) + ")"
