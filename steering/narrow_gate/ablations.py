"""Attention-knockout ablations of the narrow gate (Serra et al. 2025, Sec. 4 and Table 1).

Each ablation cuts edges from the *text* queries (prompt text and generated tokens, so it
also acts during generation) to a set of image-side keys, in a window of layers, all heads:

``none``      nothing (the clean model);
``eoi``       ``[EOI]``: the end-of-image key (for models without one, the last image token);
``img_text``  ``img→text``: every image-side key except ``[EOI]`` (image tokens, ``[BOI]``
              and the other specials of the image block);
``random``    10 image tokens drawn per example (seeded), a control with the size of a gate.

``mode="zero"`` sets the post-softmax weight to 0 without renormalising (the paper's
ablation); ``mode="mask"`` blocks the edge before the softmax. Layer windows: ``layers=None``
(all), ``last=k`` (the last k layers), or explicit indices::

    abl = [Ablation("none"), Ablation("eoi"), Ablation("img_text"), Ablation("random")]
    table = ablation_table(hm, {"VQAv2": (vqa_examples, "vqa")}, abl)     # rows: ablations
    windows = standard_ablations(hm.n_layers, windows=(8, 16))            # + last-8/16 variants
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from .errors import LayerWindowError, NarrowGateError

KINDS = ("none", "eoi", "img_text", "random")
LABELS = {"none": "none", "eoi": "[EOI]", "img_text": "img→text", "random": "random"}


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

    def __post_init__(self):
        if self.kind not in KINDS:
            raise NarrowGateError(f"Unknown ablation {self.kind!r}; use one of {KINDS}.")
        if self.mode not in ("zero", "mask"):
            raise NarrowGateError(f"Ablation mode must be 'zero' or 'mask', got {self.mode!r}.")
        if self.layers is not None and not isinstance(self.layers, tuple):
            object.__setattr__(self, "layers", tuple(self.layers) if not isinstance(self.layers, int) else (self.layers,))

    @property
    def label(self) -> str:
        s = LABELS[self.kind]
        if self.kind == "none":
            return s
        if self.last is not None:
            s += f" (last {self.last})"
        elif self.layers is not None:
            s += f" (layers {','.join(map(str, self.layers))})"
        if self.mode == "mask":
            s += " [mask]"
        return s

    def layer_list(self, n_layers: int) -> list:
        return layer_window(n_layers, self.last, self.layers)

    def keys(self, layout, batch_index: int = 0) -> Optional[torch.Tensor]:
        """``(B, P)`` bool mask of the knocked-out keys for one prepared batch."""
        if self.kind == "none":
            return None
        if self.kind == "eoi":
            return layout.gate.clone()
        if self.kind == "img_text":
            return layout.side & ~layout.gate
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + batch_index)
        cand = layout.image & ~layout.gate
        out = torch.zeros_like(cand)
        for b in range(cand.shape[0]):
            idx = cand[b].nonzero().flatten()
            pick = idx[torch.randperm(len(idx), generator=g)[: self.n_random]]
            out[b, pick] = True
        return out

    def interventions(self, hm, layout, batch_index: int = 0) -> list:
        """The ``hooks.Knockout`` of this ablation for one batch (empty for ``none``)."""
        import hooks

        keys = self.keys(layout, batch_index)
        if keys is None:
            return []
        return [hooks.Knockout(self.layer_list(hm.n_layers), queries="text", keys=keys, mode=self.mode)]


def standard_ablations(n_layers: int, windows=(None,), mode: str = "zero", n_random: int = 10, seed: int = 0) -> list:
    """``none`` plus ``[EOI]`` / ``img→text`` / ``random`` for every window (``None`` = all layers)."""
    out = [Ablation("none")]
    for w in windows:
        if w is not None:
            layer_window(n_layers, w)  # fail early on a window beyond the depth
        for k in ("eoi", "img_text", "random"):
            out.append(Ablation(k, last=w, mode=mode, n_random=n_random, seed=seed))
    return out


def ablation_table(hm, tasks: dict, ablations=None, *, batch_size: int = 8, template=None, progress=None):
    """Table 1 of the paper: one row per ablation, one column per (dataset, metric).

    ``tasks`` maps a column prefix to ``(examples, task)``, e.g.
    ``{"VQAv2": (vqa, "vqa"), "COCO": (coco, "caption")}``. Returns a pandas DataFrame indexed
    by the ablation labels, with an ``ablation`` column of kinds.
    """
    import pandas as pd

    from .tasks import evaluate

    ablations = list(ablations) if ablations is not None else standard_ablations(hm.n_layers)
    for a in ablations:
        a.layer_list(hm.n_layers)  # validate every window before running anything
    rows = []
    for a in ablations:
        row = {"ablation": a.kind, "label": a.label}
        for col, (examples, task) in tasks.items():
            make = (lambda inputs, lay, i, _a=a: _a.interventions(hm, lay, i))
            res = evaluate(hm, examples, task, interventions=make, batch_size=batch_size, template=template)
            for metric, v in res.items():
                row[f"{col} {metric}" if len(tasks) > 1 or col else metric] = v
        rows.append(row)
        if progress is not None:
            progress(row)
    return pd.DataFrame(rows).set_index("label")

