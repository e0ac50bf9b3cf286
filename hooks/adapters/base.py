"""Declarative adapters: one small file per model family maps canonical sites to modules.

An adapter says, for one architecture, where each canonical site lives::

    ADAPTER = Adapter(
        name="gpt2",
        model_types=("gpt2",),
        layers="transformer.h",
        sites={
            "embed": Site("transformer.wte"),
            "resid_pre": Site("transformer.h.{L}", kind="input"),
            ...
        },
    )

``Site.kind`` is ``"output"`` (forward hook, tensor or first tuple element) or ``"input"``
(forward pre-hook on the first positional argument / ``hidden_states`` keyword).
``layout`` is ``"BPD"`` (batch, position, features), ``"PBD"`` (fair-esm's time-first
layout), ``"heads"`` (last dimension split into ``(n_heads, head_dim)``) or ``"tokens"``
(batch and positions flattened, ``(B·P, E)``: an MoE router's logits, viewed as ``(B, P, E)``).
``call=L`` (with ``scope``) binds a site to the ``L``-th call of a module that runs several times per
forward (ALBERT shares one layer module across all its layers; see :mod:`hooks.calls`).
``inplace=True`` marks sites whose hooked tensor is also the residual stream kept by the
surrounding code (e.g. ``resid_mid`` read as the input of a norm): edits there are written
into the tensor so both branches see them.

To add an architecture, write ``hooks/adapters/<family>.py`` with an ``ADAPTER`` (or a
list ``ADAPTERS``) and add the module name to ``hooks.adapters.FAMILIES``. Most transformers
models need none (structural inference, :mod:`hooks.infer`); where inference cannot know
something (ESM's CLS/EOS spans), ``extends_inferred=True`` makes the file a thin override::

    ADAPTER = Adapter(name="esm", model_types=("esm",), bases=("esm", ""), layers="encoder.layer",
                      sites={"embed": Site("embeddings")}, spans=esm_spans, extends_inferred=True)
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Optional

import torch

LAYER_SITES = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "head_out", "router_logits")
ATTENTION_SITES = ("attn_scores", "attn_pattern")
GLOBAL_SITES = ("embed", "final", "logits")


@dataclass(frozen=True)
class Site:
    """Where one canonical site lives, relative to the wrapped root module."""

    path: str
    kind: str = "output"  # "output" | "input"
    layout: str = "BPD"  # "BPD" | "PBD" | "heads" | "heads_PBD"
    inplace: bool = False
    optional: bool = False  # skip silently when the module is absent (e.g. logits on a base model)
    readonly: bool = False  # readable only: an edit would not reach the model (a router that already routed)
    # a module that runs several times per forward (ALBERT's one layer, shared by every layer): the site is its
    # ``call``-th call (0-based) within each forward of ``scope`` (a module that runs once per forward; "" the root)
    call: Optional[int] = None
    scope: str = ""
    # a stream longer than the input (Longformer pads to its attention window, CPM-Ant prepends a learned
    # prompt, ProphetNet appends its n-gram streams): the tokens are positions [token_offset, token_offset + P)
    token_offset: Optional[int] = None


@dataclass(frozen=True)
class Adapter:
    """Declarative description of one architecture family."""

    name: str
    layers: str  # path of the ModuleList of blocks (extra['shared_block']: of the one block run once per layer)
    sites: dict
    model_types: tuple = ()  # HF config.model_type values
    class_names: tuple = ()  # root class names (non-HF models)
    attention: Optional[str] = None  # path template of the attention module per layer
    attention_backend: Optional[str] = None  # "hf" | "tl" | "fair_esm" | None
    n_heads: Callable = lambda model: model.config.num_attention_heads
    padding_side: Optional[str] = None  # forced padding side ("right" for ESM), else tokenizer's
    position_ids: bool = True  # pass position ids computed from the attention mask (padding-correct)
    spans: Callable = None  # (hooked_model, input_ids, attention_mask) -> {name: bool mask}
    bases: tuple = ("",)  # candidate prefixes of the base model (e.g. "model" in *ForCausalLM)
    notes: str = ""
    extra: dict = field(default_factory=dict)
    requires: Optional[Callable] = None  # (model) -> bool: extra predicate (block variant, wrapped LM type)
    # True: a thin override — the table is structural inference's (hooks.infer) with these sites, spans,
    # name and notes on top (see hooks.adapters.on_inferred); False: a complete hand-written table
    extends_inferred: bool = False

    def matches(self, model: torch.nn.Module) -> bool:
        cfg = getattr(model, "config", None)
        mt = getattr(cfg, "model_type", None)
        hit = (mt is not None and mt in self.model_types) or type(model).__name__ in self.class_names
        return hit and (self.requires is None or bool(self.requires(model)))


def rebase(adapter: Adapter, model: torch.nn.Module) -> Adapter:
    """Prefix the adapter's paths with the first base path under which its layers exist.

    Paths starting with ``/`` are relative to the root (e.g. ``/lm_head``).
    """
    for base in adapter.bases:
        layers = f"{base}.{adapter.layers}" if base else adapter.layers
        if has_module(model, layers):
            break
    else:
        raise AttributeError(f"adapter {adapter.name}: no {adapter.layers!r} under any of {adapter.bases}")

    def fix(path: str) -> str:
        if path.startswith("/"):
            return path[1:]
        return f"{base}.{path}" if base and path else (base or path)

    sites = {k: replace(v, path=fix(v.path), scope=fix(v.scope) if v.scope else "") for k, v in adapter.sites.items()}
    return replace(adapter, layers=layers, sites=sites, bases=("",),
                   attention=fix(adapter.attention) if adapter.attention else None)


def get_module(root: torch.nn.Module, path: str) -> torch.nn.Module:
    """``root.get_submodule(path)`` that accepts ``""`` for the root."""
    return root if path == "" else root.get_submodule(path)


def has_module(root: torch.nn.Module, path: str) -> bool:
    try:
        get_module(root, path)
        return True
    except AttributeError:
        return False
