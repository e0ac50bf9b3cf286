"""The narrow gate: image→text communication in vision-language models, on stock transformers.

Reproduces Serra et al. 2025, "The Narrow Gate: Localized Image-Text Communication in Native
Multimodal Models": native multimodal models (Chameleon, Emu3: trained from scratch to generate
images and text) route image information to the text through one post-image token (``[EOI]``),
non-native ones (LLaVA, Pixtral, Janus: the paper's latest version, arXiv 2412.06646v4) spread it
over the image tokens. Definitions follow the authors' code (RitAreaSciencePark/Narrow-gate);
each module cites the file it takes them from. Everything runs through the hook registry (VLM adapters, modality
spans, ``Knockout``, ``Patch``)::

    import hooks
    from steering.narrow_gate import (load_data, attention_flow, modality_gap, semantic_localisation,
                                      standard_ablations, ablation_table, patch_gate, make_pairs)
    hm = hooks.load("facebook/chameleon-7b", dtype="bfloat16", device="cuda")
    vqa, _ = load_data("vqav2", n=2000, seed=42)
    attention_flow(hm, vqa).gate()                       # GateReport(key='eoi', share=..., narrow=True)
    ablation_table(hm, {"VQAv2": (vqa, "vqa")}, standard_ablations(hm.n_layers, windows=(None, 8, 16)))

Modules: :mod:`.layout` (image-side masks), :mod:`.flow` (attention flow, gate detection),
:mod:`.gap` (modality gap), :mod:`.semantic` (label overlap at the gate), :mod:`.ablations`
(``[EOI]`` / ``img→text`` / ``random`` knockouts, layer windows, Table 1), :mod:`.patching`
(steering by patching the gate), :mod:`.flow_attention` (the flow summed inside the attention
function, chunked over queries: no attention pattern is materialised), :mod:`.tasks` and :mod:`.metrics` (VQA accuracy, CIDEr,
constrained classification), :mod:`.data` (VQAv2, COCO-Karpathy, Flickr30k, ImageNet-style
folders), :mod:`.toy` (the planted-gate toy world with known answers). Shell:
``interp gate flow|ablate|steer|toy`` and ``interp toy train-gate-models``.

Importing this package imports nothing heavy (not even torch); names load on first use.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "image_layout": "layout", "ImageLayout": "layout", "is_native": "layout", "NATIVE": "layout",
    "attention_flow": "flow", "FlowResult": "flow", "GateReport": "flow",
    "modality_gap": "gap", "semantic_localisation": "semantic",
    "Ablation": "ablations", "standard_ablations": "ablations", "ablation_table": "ablations",
    "layer_window": "ablations",
    "patch_gate": "patching", "make_pairs": "patching", "PatchResult": "patching",
    "predict": "tasks", "evaluate": "tasks", "score": "tasks",
    "vqa_accuracy": "metrics", "cider": "metrics", "classification_accuracy": "metrics",
    "load_data": "data", "load_image_folder": "data",
    "NarrowGateError": "errors", "ImageSpanError": "errors", "DatasetError": "errors",
    "LayerWindowError": "errors", "TaskError": "errors",
}


def __getattr__(name):
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'steering.narrow_gate' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{mod}", __name__), name)


__all__ = sorted(_EXPORTS)
