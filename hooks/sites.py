"""Site tables: canonical names → concrete hook locations (bindings) for one model.

``resolve(table, "resid_post.*")`` expands wildcards; raw module paths such as
``"model.layers.3.mlp"`` (forward output) or ``"model.layers.3.mlp:input"`` (first input)
are accepted too.
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Optional

import torch

from .adapters.base import ATTENTION_SITES, GLOBAL_SITES, LAYER_SITES, Adapter, Site, get_module, has_module
from .errors import UnknownSiteError


@dataclass(frozen=True)
class Binding:
    """One concrete place to hook: a module (or the attention function of one)."""

    name: str
    module: Optional[torch.nn.Module]
    kind: str  # "output" | "input" | "attn"  (attn: dispatched by our attention function)
    layout: str = "BPD"
    inplace: bool = False
    layer: Optional[int] = None
    n_heads: Optional[int] = None
    readonly: bool = False  # caching only (see Site.readonly)
    call: Optional[int] = None  # only the call-th call of module within each forward of scope (Site.call)
    scope: Optional[torch.nn.Module] = None
    token_offset: Optional[int] = None  # the tokens are positions [offset, offset + P) of a longer stream

    def __hash__(self):
        return hash((self.name, id(self.module), self.kind))


LAYER_ORDER = ("resid_pre", "attn_scores", "attn_pattern", "head_out", "attn_out", "mixer_out", "resid_mid",
               "router_logits", "mlp_out", "resid_post")


class SiteTable(dict):
    """``{name: Binding}`` in forward order, plus ``absent``: ``{name: reason}`` for the canonical
    sites this model does not have (``resid_mid.L`` of a parallel block, attention sites of a Mamba
    layer) or that failed the load-time self-check (see :mod:`hooks.verify`)."""

    def __init__(self, *args, absent=None, **kw):
        super().__init__(*args, **kw)
        self.absent = dict(absent or {})


def n_layers(root: torch.nn.Module, adapter: Adapter) -> int:
    per_layer = adapter.extra.get("layer_sites")
    if per_layer is not None:  # (a shared block: adapter.layers is one module that runs once per layer)
        return len(per_layer)
    return len(get_module(root, adapter.layers))


def build_table(root: torch.nn.Module, adapter: Adapter) -> dict:
    """All canonical bindings of a model, in forward order (layer by layer).

    Per-layer tables (``adapter.extra["layer_sites"]``: one ``{kind: Site}`` per layer with
    absolute paths, as structural inference produces) override the ``{L}`` templates."""
    table = SiteTable(absent=adapter.extra.get("absent"))
    nh = adapter.n_heads(root)
    per_layer = adapter.extra.get("layer_sites")

    def add(name: str, spec: Site, layer=None):
        path = spec.path.format(L=layer) if layer is not None else spec.path
        if spec.kind == "attn":
            if not has_module(root, path):
                return
            table[name] = Binding(name, get_module(root, path), "attn", spec.layout, False, layer, nh, False,
                                  spec.call, get_module(root, spec.scope) if spec.call is not None else None)
            return
        if not has_module(root, path):
            if spec.optional:
                return
            raise AttributeError(f"adapter {adapter.name}: site {name} expects module {path!r}, which is missing")
        table[name] = Binding(name, get_module(root, path), spec.kind, spec.layout, spec.inplace, layer, nh,
                              spec.readonly, spec.call, get_module(root, spec.scope) if spec.call is not None else None,
                              spec.token_offset)

    if "embed" in adapter.sites:
        add("embed", adapter.sites["embed"])
    for L in range(n_layers(root, adapter)):
        if per_layer is not None:
            for kind in LAYER_ORDER:
                if kind in per_layer[L]:
                    add(f"{kind}.{L}", per_layer[L][kind], L)
            continue
        for kind in LAYER_ORDER:
            if kind in adapter.sites:
                add(f"{kind}.{L}", adapter.sites[kind], L)
    for g in ("final", "logits"):
        if g in adapter.sites:
            add(g, adapter.sites[g])
    return table


# TransformerLens hook names accepted on every model (TransformerLens's HookedTransformer names,
# transformer_lens/components/transformer_block.py and abstract_attention.py)
TL_ALIASES = [
    (re.compile(r"^blocks\.(\d+|\*)\.hook_(resid_pre|resid_mid|resid_post|attn_out|mlp_out)$"), r"\2.\1"),
    (re.compile(r"^blocks\.(\d+|\*)\.attn\.hook_pattern$"), r"attn_pattern.\1"),
    (re.compile(r"^blocks\.(\d+|\*)\.attn\.hook_attn_scores$"), r"attn_scores.\1"),
    (re.compile(r"^blocks\.(\d+|\*)\.attn\.hook_z$"), r"head_out.\1"),
    (re.compile(r"^hook_embed$"), "embed"),
    (re.compile(r"^ln_final\.hook_normalized$"), "final"),
]


def tl_alias(name: str):
    """The canonical name of a TransformerLens hook name (``blocks.3.hook_resid_post`` ->
    ``resid_post.3``, ``blocks.*.attn.hook_pattern`` -> ``attn_pattern.*``), else None."""
    for pat, repl in TL_ALIASES:
        if pat.match(name):
            return pat.sub(repl, name)
    return None


def resolve(table: dict, root: torch.nn.Module, names) -> list:
    """Expand site names/wildcards/module paths into bindings (order preserved, no duplicates).

    TransformerLens hook names are aliases of the canonical ones (see :func:`tl_alias`)."""
    if isinstance(names, str):
        names = [names]
    out: list = []
    seen = set()
    for name in names:
        if not isinstance(name, str) or not name:
            raise UnknownSiteError(str(name), list(table))
        alias = tl_alias(name) if name not in table else None
        if alias is not None and (alias in table or "*" in alias or alias in getattr(table, "absent", {})):
            name = alias
        if name in table:
            found = [table[name]]
        elif name in getattr(table, "absent", {}):
            raise UnknownSiteError(f"{name} (absent on this model: {table.absent[name]})", list(table))
        elif any(c in name for c in "*?["):
            found = [table[k] for k in table if fnmatch.fnmatchcase(k, name)]
            if not found:
                raise UnknownSiteError(name, list(table))
        else:
            path, _, kind = name.partition(":")
            kind = kind or "output"
            if kind not in ("output", "input") or not has_module(root, path) or path == "":
                valid = list(table) + [n for n, _ in root.named_modules() if n]
                raise UnknownSiteError(name, valid)
            found = [Binding(name, get_module(root, path), kind)]
        for b in found:
            if b.name not in seen:
                seen.add(b.name)
                out.append(b)
    return out


def family_names() -> tuple:
    return LAYER_SITES + ATTENTION_SITES + GLOBAL_SITES
