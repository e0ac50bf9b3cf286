"""Semantic localisation: where the class of an image can be read (Serra et al. 2025, Sec. 4.2).

For labelled images (e.g. ImageNet classes), per layer, the label overlap (k = 30: the fraction
of each point's 30 nearest neighbours with the same class, class-weighted, Doimo et al. 2020)
computed on raw Euclidean distances between residuals, as the authors do (``dadapy``
``Data(coordinates=...)`` with its default Euclidean metric, RitAreaSciencePark/Narrow-gate
``src/metrics/overlap.py``; ``normalize=True`` L2-normalises first, our earlier variant),
of three representations of each example: the residual at ``[EOI]`` (the gate; Emu3: ``<|image end|>``), at the last
image token, and the mean of the image tokens. In native models the class becomes readable at
``[EOI]`` in the middle layers while the image tokens stay poorly organised by class.

    loc = semantic_localisation(hm, examples, k=30)   # DataFrame: layer × {eoi, last_image, mean_image}

Uses :func:`geometry.label_overlap` (imported lazily).
"""
from __future__ import annotations

import torch

from .errors import DatasetError

REPS = ("eoi", "last_image", "mean_image")


@torch.no_grad()
def gate_representations(hm, examples, *, layers=None, batch_size: int = 8, task: str = "classify", template=None):
    """``{rep: {layer: (N, d)}}`` for rep in ``eoi`` (the gate), ``last_image``, ``mean_image``."""
    import hooks

    from .ablations import layer_window
    from .layout import _last, image_layout
    from .tasks import encode

    layers = layer_window(hm.n_layers, layers=layers)
    out = {r: {L: [] for L in layers} for r in REPS}
    sites = [f"resid_post.{L}" for L in layers]
    for start in range(0, len(examples), batch_size):
        inputs = encode(hm, examples[start : start + batch_size], task, template)
        lay = image_layout(hm, inputs)
        gate_last = _last(lay.gate)  # Emu3's [EOI] pair: its <|image end|>
        res = hm.run(inputs, [hooks.Cache(sites, positions="all", layout="padded", dtype=torch.float32)])
        for L in layers:
            h = res.cache[f"resid_post.{L}"]
            dev = h.device
            out["eoi"][L].append(h[gate_last.to(dev)])
            out["last_image"][L].append(h[lay.last_image.to(dev)])
            im = lay.image.to(dev).float()
            out["mean_image"][L].append((h * im[..., None]).sum(1) / im.sum(1, keepdim=True))
    return {r: {L: torch.cat(v) for L, v in d.items()} for r, d in out.items()}


def semantic_localisation(hm, examples, *, k: int = 30, layers=None, batch_size: int = 8, normalize: bool = False,
                          template=None):
    """Label overlap per layer at the gate, the last image token and the image mean (a DataFrame)."""
    import pandas as pd

    from geometry import label_overlap

    labels = [e.get("label", e.get("label_name")) for e in examples]
    if any(lbl is None for lbl in labels):
        raise DatasetError("Semantic localisation needs class labels ('label' or 'label_name') on every example.")
    if len(examples) <= k:
        raise DatasetError(f"Label overlap with k={k} needs more than {k} examples; got {len(examples)}.")
    codes = {v: i for i, v in enumerate(sorted(set(map(str, labels))))}
    y = torch.tensor([codes[str(v)] for v in labels])
    reps = gate_representations(hm, examples, layers=layers, batch_size=batch_size, template=template)
    rows = {}
    for r, per_layer in reps.items():
        for L, X in per_layer.items():
            X = torch.nn.functional.normalize(X.double(), dim=-1) if normalize else X.double()
            rows.setdefault(L, {})[r] = label_overlap(X, y, k=k, device="cpu", on_duplicates="warn")
    return pd.DataFrame.from_dict(rows, orient="index")[list(REPS)].rename_axis("layer")
