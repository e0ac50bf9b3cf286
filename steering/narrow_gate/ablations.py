"""Attention-knockout ablations of the narrow gate (Serra et al. 2025, Sec. 4 and Table 1).

Definitions follow the authors' code (RitAreaSciencePark/Narrow-gate
``paper_experiments/Tab1_AblationVQA.py`` and ``Tab1_AblationCaptioning.py``, which build the
knockouts with ``src/ablation.py::AblationManager`` over the token sets of
``src/activations.py::TokenIndex``). Each ablation zeroes attention edges from a set of
queries to a set of image-side keys in a window of layers, all heads; generated tokens are
queries too, so it also acts during generation:

``none``      nothing (the clean model);
``eoi``       ``[EOI]`` (``@end-image``, type ``std``): ALL queries → the end-of-image key;
              Emu3: the pair ``<|extra_201|>`` + ``<|image end|>`` (``@end-image-emu``); models
              without an end-of-image marker (LLaVA) → the last image token (``@last-image``),
              labelled ``last image``, never ``[EOI]``;
``img_text``  ``img→text`` (``@img-text``, type ``block-img-txt``): TEXT queries → every
              image-side key except the ``[EOI]`` set (BOI, image tokens, in-block specials);
``random``    (``@random-image-10``, type ``std``): ALL queries → 10 image tokens drawn per
              example, the table entry being the mean over ``n_draws`` draws (5, as in
              ``Tab1_AblationVQA.py``; the captioning script uses 3, an earlier version 10).

``queries="text"`` on ``eoi``/``random`` gives our earlier text-queries-only variant.
``mode="zero"`` sets the post-softmax weight to 0 without renormalising (the authors'
``ablate_attn_mat_hook``); ``mode="mask"`` blocks the edge before the softmax. Layer windows:
``layers=None`` (all), ``last=k`` (the last k layers), or explicit indices::

    abl = [Ablation("none"), Ablation("eoi"), Ablation("img_text"), Ablation("random")]
    table = ablation_table(hm, {"VQAv2": (vqa_examples, "vqa")}, abl)     # rows: ablations
    table.attrs["draws"]                                                  # per-draw values of random rows
    windows = standard_ablations(hm.n_layers, windows=(8, 16))            # + last-8/16 variants
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from .errors import LayerWindowError, NarrowGateError

KINDS = ("none", "eoi", "img_text", "random")
LABELS = {"none": "none", "eoi": "[EOI]", "img_text": "img→text", "random": "random"}
GATE_LABELS = {"eoi": "[EOI]", "last_image": "last image"}
QUERIES = {"none": "all", "eoi": "all", "img_text": "text", "random": "all"}  # authors' query sets
N_DRAWS = 5


def layer_window(n_layers: int, last: Optional[int] = None, layers=None) -> list:
    """Layer indices of a window: ``last`` k layers, explicit ``layers``, or all of them."""
    if last is not None and layers is not None:
        raise LayerWindowError("Give either last=k or explicit layers, not both.")
    if last is not None:
        if not 1 <= int(last) <= n_layers:
            raise LayerWindowError(f"Layer window 'last {last}' is beyond the model's depth: it has {n_layers} layers; "
                                   f"use a window between 1 and {n_layers}.")
        return list(range(n_layers - int(last), n_layers))
    if layers is None:
        return list(range(n_layers))
    out = [int(L) for L in ([layers] if isinstance(layers, int) else layers)]
    bad = [L for L in out if not -n_layers <= L < n_layers]
    if bad:
        raise LayerWindowError(f"Layer(s) {bad} are beyond the model's depth: it has {n_layers} layers "
                               f"(0..{n_layers - 1}).")
    return sorted({L % n_layers for L in out})


@dataclass(frozen=True)
class Ablation:
    """One row of an ablation table (see the module docstring)."""

    kind: str = "none"
    last: Optional[int] = None  # window: last k layers (None = all, or see ``layers``)
    layers: Optional[tuple] = None
    mode: str = "zero"
    n_random: int = 10
    seed: int = 0
    queries: Optional[str] = None  # None: the authors' set for the kind (QUERIES); "all" | "text"
    n_draws: int = N_DRAWS  # random: draws averaged into the table entry
    gate_name: str = "eoi"  # "last_image" for models without an end-of-image marker (label only)

    def __post_init__(self):
        if self.queries is not None and self.queries not in ("all", "text"):
            raise NarrowGateError(f"Ablation queries must be 'all' or 'text', got {self.queries!r}.")
        if int(self.n_draws) < 1:
            raise NarrowGateError(f"n_draws must be at least 1, got {self.n_draws}.")
        if self.kind not in KINDS:
            raise NarrowGateError(f"Unknown ablation {self.kind!r}; use one of {KINDS}.")
        if self.mode not in ("zero", "mask"):
            raise NarrowGateError(f"Ablation mode must be 'zero' or 'mask', got {self.mode!r}.")
        if self.layers is not None and not isinstance(self.layers, tuple):
            object.__setattr__(self, "layers", tuple(self.layers) if not isinstance(self.layers, int) else (self.layers,))

    @property
    def query_set(self) -> str:
        return self.queries or QUERIES[self.kind]

    @property
    def label(self) -> str:
        s = GATE_LABELS.get(self.gate_name, "[EOI]") if self.kind == "eoi" else LABELS[self.kind]
        if self.kind == "none":
            return s
        if self.last is not None:
            s += f" (last {self.last})"
        elif self.layers is not None:
            s += f" (layers {','.join(map(str, self.layers))})"
        if self.mode == "mask":
            s += " [mask]"
        if self.queries is not None and self.queries != QUERIES[self.kind]:
            s += f" [{self.queries} queries]"
        return s

    def layer_list(self, n_layers: int) -> list:
        return layer_window(n_layers, self.last, self.layers)

    def keys(self, layout, batch_index: int = 0, draw: int = 0) -> Optional[torch.Tensor]:
        """``(B, P)`` bool mask of the knocked-out keys for one prepared batch (``draw``: random draw)."""
        if self.kind == "none":
            return None
        if self.kind == "eoi":
            return layout.gate.clone()
        if self.kind == "img_text":
            return layout.side & ~layout.gate
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + batch_index) * 7919 + draw)
        cand = layout.image & ~layout.gate
        out = torch.zeros_like(cand)
        for b in range(cand.shape[0]):
            idx = cand[b].nonzero().flatten()
            pick = idx[torch.randperm(len(idx), generator=g)[: self.n_random]]
            out[b, pick] = True
        return out

    def interventions(self, hm, layout, batch_index: int = 0, draw: int = 0) -> list:
        """The ``hooks.Knockout`` of this ablation for one batch (empty for ``none``)."""
        import hooks

        keys = self.keys(layout, batch_index, draw)
        if keys is None:
            return []
        return [hooks.Knockout(self.layer_list(hm.n_layers), queries=self.query_set, keys=keys, mode=self.mode)]


def standard_ablations(n_layers: int, windows=(None,), mode: str = "zero", n_random: int = 10, seed: int = 0,
                       n_draws: int = N_DRAWS, gate_name: str = "eoi") -> list:
    """``none`` plus ``[EOI]`` (or ``last image``) / ``img→text`` / ``random`` for every window (``None`` = all layers)."""
    out = [Ablation("none")]
    for w in windows:
        if w is not None:
            layer_window(n_layers, w)  # fail early on a window beyond the depth
        for k in ("eoi", "img_text", "random"):
            out.append(Ablation(k, last=w, mode=mode, n_random=n_random, seed=seed, n_draws=n_draws,
                                gate_name=gate_name))
    return out


def gate_name_of(hm, examples, task: str, template=None) -> str:
    """``"eoi"`` or ``"last_image"``: what the ``eoi`` ablation cuts in this model (from one example)."""
    from .layout import image_layout
    from .tasks import encode

    return image_layout(hm, encode(hm, examples[:1], task, template)).gate_name


def ablation_table(hm, tasks: dict, ablations=None, *, batch_size: int = 8, template=None, progress=None):
    """Table 1 of the paper: one row per ablation, one column per (dataset, metric).

    ``tasks`` maps a column prefix to ``(examples, task)``, e.g.
    ``{"VQAv2": (vqa, "vqa"), "COCO": (coco, "caption")}``. Returns a pandas DataFrame indexed
    by the ablation labels, with an ``ablation`` column of kinds.
    """
    import dataclasses

    import pandas as pd

    from .tasks import check_ready, evaluate

    first_examples, first_task = next(iter(tasks.values()))
    for examples, task in tasks.values():
        check_ready(task, examples)  # e.g. CIDEr's package: fail before any generation
    gate = gate_name_of(hm, first_examples, first_task, template)
    ablations = list(ablations) if ablations is not None else standard_ablations(hm.n_layers)
    ablations = [dataclasses.replace(a, gate_name=gate) for a in ablations]
    for a in ablations:
        a.layer_list(hm.n_layers)  # validate every window before running anything
    rows, draws = [], {}
    for a in ablations:
        row = {"ablation": a.kind, "label": a.label}
        for col, (examples, task) in tasks.items():
            n = a.n_draws if a.kind == "random" else 1
            vals: dict = {}
            for d in range(n):
                make = (lambda inputs, lay, i, _a=a, _d=d: _a.interventions(hm, lay, i, _d))
                res = evaluate(hm, examples, task, interventions=make, batch_size=batch_size, template=template)
                for metric, v in res.items():
                    vals.setdefault(f"{col} {metric}" if len(tasks) > 1 or col else metric, []).append(v)
            for name, v in vals.items():
                row[name] = sum(v) / len(v)  # the authors' table entry: the mean over draws
                if n > 1:
                    draws.setdefault(a.label, {})[name] = v
        rows.append(row)
        if progress is not None:
            progress(row)
    df = pd.DataFrame(rows).set_index("label")
    df.attrs["draws"] = draws
    df.attrs["gate_name"] = gate
    return df

