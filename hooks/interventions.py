"""Declarative interventions that round-trip through JSON and YAML.

Each intervention names sites (canonical names, wildcards or module paths) and positions
(see :mod:`hooks.positions`). Use them three ways::

    with model.trace(batch) as tr:            # 1. inside a trace
        acts = tr.cache("resid_post.*", positions="last")
        tr.add(Ablate("attn_out.3"))
    model.run(batch, interventions=[Steer("resid_post.2", vector=v, scale=4.0)])   # 2.
    model.generate(prompts, interventions=[Steer(..., apply_to="new")])              # 3.

``apply_to`` matters while generating: ``"all"`` (default) acts on prompt and generated
positions picked by the selector, ``"prompt"`` only on the prompt, ``"new"`` only on
generated tokens. Specs load from a file with :func:`load_spec` and save with
:func:`save_spec`; ``Intervention.from_dict(x.to_dict()) == x`` for every kind.
"""
from __future__ import annotations

import importlib
import json
import operator
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Optional, Union

import torch

from . import positions as P
from .errors import SpecError

Sites = Union[str, list]
_REGISTRY: dict = {}
#: Old field names still accepted (constructor keywords, spec files) and readable as attributes.
ALIASES = {"edit": {"site": "sites"}, "ablate": {"how": "method"}, "knockout": {"mode": "method"}}


def _register(cls):
    _REGISTRY[cls.__name__.lower()] = cls
    aliases = ALIASES.get(cls.__name__.lower(), {})
    if aliases:
        init = cls.__init__

        def __init__(self, *args, __init=init, __aliases=aliases, **kw):
            init(self, *args, **_rename(type(self).__name__, kw, __aliases))

        __init__.__doc__ = init.__doc__
        cls.__init__ = __init__
        for old, new in aliases.items():
            setattr(cls, old, property(lambda self, _n=new: getattr(self, _n), doc=f"Old name of ``{new}``."))
    return cls


def _rename(kind: str, kw: dict, aliases: dict) -> dict:
    for old, new in aliases.items():
        if old in kw:
            if new in kw:
                raise SpecError(f"{kind}: give {new!r} or its old name {old!r}, not both.")
            kw[new] = kw.pop(old)
    return kw


def _heads(heads):
    """``None`` (every head), an int or a list of ints -> ``None`` or a sorted list of distinct ints."""
    if heads is None or (isinstance(heads, str) and heads == "all"):
        return None
    try:
        hs = [operator.index(heads)] if not isinstance(heads, (list, tuple, range)) else [operator.index(h) for h in heads]
    except TypeError:
        hs = None
    if not hs or any(isinstance(h, bool) or h < 0 for h in (heads if isinstance(heads, (list, tuple)) else hs)):
        raise SpecError(f"heads must be an int or a non-empty list of non-negative ints (or None for all), got {heads!r}.")
    return sorted(set(hs))


def _dtype_name(dt):
    return None if dt is None else str(dt).replace("torch.", "")


@dataclass
class Intervention:
    """Base class: ``sites`` and ``positions`` plus the generation phase it applies to."""

    def _check(self):
        ap = getattr(self, "apply_to", "all")
        if ap not in ("all", "prompt", "new"):
            raise SpecError(f"{type(self).__name__}: apply_to must be 'all', 'prompt' or 'new', got {ap!r}.")

    def __post_init__(self):
        if hasattr(self, "positions"):
            self.positions = P.normalize(self.positions)
        if hasattr(self, "heads"):
            self.heads = _heads(self.heads)
        self._check()

    # -- serialisation -------------------------------------------------
    def to_dict(self) -> dict:
        out = {"type": type(self).__name__.lower()}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in ("positions", "queries", "keys", "source_positions"):
                v = P.to_json(v)
            elif isinstance(v, torch.Tensor):
                v = v.detach().cpu().tolist()
            elif isinstance(v, torch.dtype):
                v = _dtype_name(v)
            elif callable(v):
                v = _callable_path(v)
            elif isinstance(v, tuple):
                v = list(v)
            out[f.name] = v
        return out

    @staticmethod
    def from_dict(d: dict) -> "Intervention":
        if not isinstance(d, dict) or "type" not in d:
            raise SpecError(f"Each intervention needs a 'type' key (one of {sorted(_REGISTRY)}), got {d!r}.")
        kind = str(d["type"]).lower()
        if kind not in _REGISTRY:
            raise SpecError(f"Unknown intervention type {d['type']!r}; known: {sorted(_REGISTRY)}.")
        cls = _REGISTRY[kind]
        names = {f.name for f in fields(cls)}
        kwargs = _rename(cls.__name__, {k: v for k, v in d.items() if k != "type"}, ALIASES.get(kind, {}))
        extra = set(kwargs) - names
        if extra:
            raise SpecError(f"{cls.__name__} has no field(s) {sorted(extra)}; valid: {sorted(names)}.")
        return cls(**kwargs)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


def _callable_path(fn) -> str:
    mod, qn = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
    if not mod or "<" in qn:
        raise SpecError(
            f"Cannot serialise {fn!r}: Edit functions written to a spec must be importable module-level "
            "functions (given as 'package.module:function')."
        )
    return f"{mod}:{qn}"


def import_callable(path: str) -> Callable:
    """Import ``'package.module:function'``."""
    if callable(path):
        return path
    if not isinstance(path, str) or ":" not in path:
        raise SpecError(f"Edit fn must be a callable or 'package.module:function', got {path!r}.")
    mod, qn = path.split(":", 1)
    obj = importlib.import_module(mod)
    for part in qn.split("."):
        obj = getattr(obj, part)
    return obj


@_register
@dataclass
class Cache(Intervention):
    """Record activations. Results are CPU tensors unless ``device`` says otherwise.

    ``layout``: ``"auto"`` gives ``(B, ...)`` for single-position selectors, the full padded
    ``(B, P, ...)`` tensor for ``"all"`` and a flat ``(N, ...)`` tensor of the selected
    positions (row-major) otherwise; ``"flat"``, ``"padded"`` and ``"row"`` force one.
    ``heads`` (an int or a list) keeps only those heads of a site with a head axis
    (``head_out.L`` → ``(..., len(heads), D)``; ``attn_pattern.L`` → ``(B, len(heads), Q, K)``).
    """

    sites: Sites = "resid_post.*"
    positions: Any = "all"
    device: Optional[str] = "cpu"
    dtype: Any = None
    layout: str = "auto"
    apply_to: str = "all"
    heads: Any = None

    def _check(self):
        super()._check()
        if self.layout not in ("auto", "flat", "padded", "row"):
            raise SpecError(f"Cache layout must be auto|flat|padded|row, got {self.layout!r}.")
        if isinstance(self.dtype, str):
            self.dtype = getattr(torch, self.dtype)


@_register
@dataclass
class Ablate(Intervention):
    """Replace activations by zero, the reference mean, or resampled reference activations.

    ``reference`` (for ``mean`` and ``resample``): a list of texts/sequences, a path to a
    text/jsonl file, or a ``datasets.Dataset``. Means are taken over all real tokens of the
    reference; resampling copies, for each row, the activation at the same real-token index
    of a random reference row (clamped to its length), seeded by ``seed``
    (Chan et al. 2022, causal scrubbing). ``heads`` restricts the ablation to those heads
    of a site with a head axis (``head_out.L``, ``attn_pattern.L``). ``method`` was called
    ``how`` before; ``how`` is still accepted.
    """

    sites: Sites = ""
    positions: Any = "all"
    method: str = "zero"
    reference: Any = None
    seed: int = 0
    apply_to: str = "all"
    heads: Any = None

    def _check(self):
        super()._check()
        if self.method not in ("zero", "mean", "resample"):
            raise SpecError(f"Ablate method (old name: how) must be zero|mean|resample, got {self.method!r}.")
        if self.method != "zero" and self.reference is None:
            raise SpecError(f"Ablate(method={self.method!r}) needs reference=<texts, file or dataset> to take statistics from.")


@_register
@dataclass
class Patch(Intervention):
    """Activation patching: write activations from ``source`` into this run.

    ``source`` is another input (texts, token ids, a tokenized dict) run with the same
    sites, or cached activations (``{site: tensor}`` as returned by ``Cache``). The k-th
    selected position of each row receives the k-th selected position of the same source
    row, so ``positions="last"`` patches last token into last token whatever the lengths.
    ``heads`` patches only those heads of a site with a head axis; a source cache taken
    with the same ``heads`` (fewer heads than the site) is accepted too.
    """

    sites: Sites = ""
    positions: Any = "all"
    source: Any = None
    source_positions: Any = None
    apply_to: str = "all"
    heads: Any = None

    def __post_init__(self):
        super().__post_init__()
        if self.source_positions is not None:
            self.source_positions = P.normalize(self.source_positions)
        if self.source is None:
            raise SpecError("Patch needs source=<other input or cached activations>.")


@_register
@dataclass
class Steer(Intervention):
    """Add ``scale * vector`` to the activations at the selected positions.

    With ``heads`` (on ``head_out.L``) the vector is added to those heads only; it has the
    shape of one head (``(D,)``), one row per listed head (``(len(heads), D)``) or the site.
    """

    sites: Sites = ""
    positions: Any = "all"
    vector: Any = None
    scale: float = 1.0
    apply_to: str = "all"
    heads: Any = None

    def __post_init__(self):
        super().__post_init__()
        if self.vector is None:
            raise SpecError("Steer needs vector=<tensor or list of floats>.")
        if isinstance(self.vector, (list, tuple)):
            self.vector = torch.tensor(self.vector, dtype=torch.float32)

    def __eq__(self, other):
        return (
            type(other) is Steer
            and self.to_dict() == other.to_dict()
        )


@_register
@dataclass
class Knockout(Intervention):
    """Cut attention edges from ``queries`` to ``keys`` in ``layers`` (and ``heads``).

    ``method="zero"`` sets post-softmax weights to 0 without renormalising (the Narrow Gate
    paper's ablation, Serra et al. 2025); ``method="mask"`` blocks the edge before the softmax
    so the remaining weights renormalise (``mode`` is the old name of ``method``). ``keys="others"`` means every key except the
    query's own position. Works through transformers' ``AttentionInterface``, TransformerLens
    ``hook_attn_scores``/``hook_pattern`` and fair-esm's attention.
    """

    layers: Any = "all"
    heads: Any = None
    queries: Any = "all"
    keys: Any = "all"
    method: str = "zero"
    apply_to: str = "all"

    def __post_init__(self):
        self.queries = P.normalize(self.queries)
        if self.keys != "others":
            self.keys = P.normalize(self.keys)
        if isinstance(self.layers, tuple):
            self.layers = list(self.layers)
        self._check()
        if self.method not in ("zero", "mask"):
            raise SpecError(f"Knockout mode must be 'zero' or 'mask' (field 'method'; 'mode' is its old name), got {self.method!r}.")


@_register
@dataclass
class Edit(Intervention):
    """Apply ``fn`` to the selected activations: ``fn(acts) -> acts`` with ``acts`` of shape
    ``(N, ...)`` (the selected positions, row-major). The extension point used by SAE
    splicing and latent clamping. ``fn`` may be ``'package.module:function'`` in specs.
    ``sites`` was called ``site`` before; ``site`` is still accepted.
    """

    sites: Sites = ""
    positions: Any = "all"
    fn: Any = None
    apply_to: str = "all"

    def __post_init__(self):
        super().__post_init__()
        if self.fn is None:
            raise SpecError("Edit needs fn=<callable or 'package.module:function'>.")
        self.fn = import_callable(self.fn)


# -- spec files --------------------------------------------------------------
def load_spec(path_or_obj) -> list:
    """Load interventions from a YAML/JSON file, a string of either, or a parsed object.

    The file holds a list, or a mapping with an ``interventions`` list::

        interventions:
          - {type: ablate, sites: attn_out.1, positions: all, method: zero}
          - {type: knockout, layers: [0, 1], queries: last, keys: 0, method: zero}
    """
    obj = path_or_obj
    if isinstance(obj, (str, os.PathLike)):
        raw = str(obj)
        looks_inline = "\n" in raw or raw.lstrip().startswith(("[", "{", "-"))
        if looks_inline:
            text = raw
        elif Path(raw).exists():
            text = Path(raw).read_text()
        else:
            raise SpecError(f"Spec file {raw!r} does not exist.")
        try:
            import yaml

            obj = yaml.safe_load(text)
        except Exception as e:  # noqa: BLE001 - report as a spec error
            raise SpecError(f"Could not parse spec {str(path_or_obj)!r} as YAML/JSON: {e}") from None
    if isinstance(obj, dict):
        obj = obj.get("interventions", None)
    if not isinstance(obj, list):
        raise SpecError("A spec is a list of interventions or a mapping with an 'interventions' list.")
    return [x if isinstance(x, Intervention) else Intervention.from_dict(x) for x in obj]


def dump_spec(interventions: list, fmt: str = "yaml") -> str:
    data = {"interventions": [iv.to_dict() for iv in interventions]}
    if fmt == "json":
        return json.dumps(data, indent=2)
    import yaml

    return yaml.safe_dump(data, sort_keys=False)


def save_spec(interventions: list, path) -> None:
    """Write a spec atomically (temp file then rename); format from the suffix."""
    path = Path(path)
    from .io import write_text_atomic

    write_text_atomic(path, dump_spec(interventions, "json" if path.suffix == ".json" else "yaml"))
