"""Where the image is in a batch: the masks every narrow-gate analysis is built on.

Serra et al. 2025 ("The Narrow Gate: Localized Image-Text Communication in Native Multimodal
Models") split the *image side* of a prompt into the image tokens, the special tokens of the
image block (``[BOI]``, Emu3's size header, ...) and the end-of-image token ``[EOI]``, and
look at what the *text* tokens read from each. This module derives those sets from the hook
registry's modality spans (``hm.spans``: ``image``, ``text``, ``boi``, ``eoi``)::

    inputs = hm.prepare(batch)
    lay = image_layout(hm, inputs)
    lay.eoi          # (B, P) bool: one [EOI] per row (or the proxy below)
    lay.side         # every image-side position: image tokens, specials, [EOI]
    lay.text         # real tokens outside the image block (the queries of the flow)

Models without an end-of-image marker (LLaVA; Janus wrapped without its tokenizer) get the
*last image-side token* as the gate candidate (``lay.gate_name == "last_image"``): that is
the position the paper compares [EOI] against in non-native models.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import ImageSpanError


@dataclass
class ImageLayout:
    """Boolean ``(B, P)`` masks of one prepared batch (see the module docstring)."""

    attention_mask: torch.Tensor
    text: torch.Tensor
    image: torch.Tensor
    side: torch.Tensor  # image block: image tokens + specials + eoi
    eoi: torch.Tensor  # zeros when the model has no end-of-image marker
    special: torch.Tensor  # side & ~image & ~eoi (BOI, headers, ...)
    last_image: torch.Tensor  # last image token of each row
    gate: torch.Tensor  # eoi, or last_image when there is no eoi
    gate_name: str  # "eoi" | "last_image"

    @property
    def internal(self) -> torch.Tensor:
        """Image tokens except the last one."""
        return self.image & ~self.last_image

    @property
    def text_after(self) -> torch.Tensor:
        """Text positions after the image block (those that can read it)."""
        after = self.side.long().cumsum(1) > 0
        return self.text & after & ~self.side

    def categories(self) -> dict:
        """The four key groups of the flow shares, disjoint and covering ``side``."""
        return {"special": self.special, "image": self.internal, "last_image": self.last_image & ~self.eoi,
                "eoi": self.eoi}


def _last(mask: torch.Tensor) -> torch.Tensor:
    B, P = mask.shape
    idx = torch.arange(P, device=mask.device).expand(B, P)
    last = torch.where(mask, idx, torch.full_like(idx, -1)).amax(1)
    out = torch.zeros_like(mask)
    rows = last >= 0
    out[rows.nonzero().flatten(), last[rows]] = True
    return out


def image_layout(hm, inputs: dict) -> ImageLayout:
    """Image-side masks of a prepared batch; :class:`ImageSpanError` when there is no image.

    Every row must hold exactly one image (one block, at most one ``[EOI]``).
    """
    ids = inputs.get("input_ids")
    am = inputs.get("attention_mask")
    if ids is None:
        raise ImageSpanError("The batch has no input_ids; the image span is read from token ids. "
                             "Pass texts/examples or the processor's output.")
    if am is None:
        am = torch.ones_like(ids)
    am = am.bool()
    spans = hm.spans(ids, am)
    if "image" not in spans:
        raise ImageSpanError(
            f"Model {type(hm.model).__name__} (adapter {hm.adapter.name!r}) has no image span: the narrow-gate "
            "analyses need a vision-language model whose adapter marks image tokens (LLaVA, Chameleon, Janus, "
            "Emu3, or the toy models 'toy:gated' / 'toy:free')."
        )
    image = spans["image"].bool() & am
    counts = image.sum(1)
    if bool((counts == 0).any()):
        b = int((counts == 0).nonzero()[0])
        raise ImageSpanError(
            f"No image tokens found in batch row {b}. Each prompt needs one image: put the processor's image "
            "placeholder in the text and pass the image (or, for the toy models, the patch tokens between "
            "<racm3:break> and <eoss>)."
        )
    text = spans.get("text", am & ~image).bool() & am
    side = am & ~text
    eoi = spans.get("eoi")
    if eoi is not None:
        eoi = eoi.bool() & am
        n = eoi.sum(1)
        if bool((n > 1).any()):
            b = int((n > 1).nonzero()[0])
            raise ImageSpanError(f"Batch row {b} holds {int(n[b])} end-of-image tokens; use one image per prompt.")
        if bool((n == 0).any()):
            eoi = None  # a marker the tokenizer knows but this batch lacks: fall back to the proxy
    # one image block per row: side positions are contiguous
    first = torch.where(side, torch.arange(side.shape[1], device=side.device), side.shape[1]).amin(1)
    last = torch.where(side, torch.arange(side.shape[1], device=side.device), -1).amax(1)
    if bool(((last - first + 1) != side.sum(1)).any()):
        b = int(((last - first + 1) != side.sum(1)).nonzero()[0])
        raise ImageSpanError(f"Batch row {b} holds more than one image block; use one image per prompt.")
    last_image = _last(image)
    if eoi is None:
        eoi_mask = torch.zeros_like(image)
        gate, name = _last(side), "last_image"
    else:
        eoi_mask, gate, name = eoi, eoi, "eoi"
    special = side & ~image & ~eoi_mask
    if name == "last_image":  # the proxy gate is the last side token: count it as last_image, not special
        special = special & ~gate
        last_image = gate
        image = image | gate
    return ImageLayout(am, text, image, side, eoi_mask, special, last_image, gate, name)
