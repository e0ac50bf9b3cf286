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
the position the paper compares [EOI] against in non-native models (the authors' ``@last-image``).

The end-of-image set follows the authors' token categories (RitAreaSciencePark/Narrow-gate
``src/activations.py::TokenIndex.categorize_tokens`` and ``@end-image-emu``): Chameleon
``<eoss>``, Janus ``<end_of_image>``, Pixtral ``[IMG_END]`` (its ``[IMG_BREAK]`` row breaks
are specials inside the block), and for Emu3 the *pair* ``<|extra_201|>`` (end of frame) +
``<|image end|>``, which the authors ablate together (``lay.eoi`` then holds two positions).

Which models are native (trained from scratch to generate images and text) follows the
paper's latest version (arXiv 2412.06646v4, Sec. 1-2): Chameleon and Emu3 are native; LLaVA,
Pixtral, Janus (adapted from DeepSeek-LLM) and VILA-U are not (:data:`NATIVE`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import ImageSpanError

# adapter family -> native multimodal (arXiv 2412.06646v4: trained from scratch to generate images and text)
NATIVE = {"chameleon": True, "emu3": True, "janus": False, "llava": False, "pixtral": False}
EMU3_EOF = "<|extra_201|>"  # Emu3's end-of-frame token, part of its [EOI] pair (authors' ``@end-image-emu``)


def family(hm) -> str:
    """``chameleon`` | ``emu3`` | ``janus`` | ``llava`` | ``pixtral`` (LLaVA-class with a Pixtral vision tower)."""
    name = hm.adapter.name.split("_")[0]
    if name == "llava":
        vc = getattr(getattr(hm.model, "config", None), "vision_config", None)
        if getattr(vc, "model_type", None) == "pixtral":
            return "pixtral"
    return name


def is_native(hm) -> bool:
    """Native multimodal per the paper's latest classification (:data:`NATIVE`); unknown families are not."""
    return NATIVE.get(family(hm), False)


def _emu3_eof_id(hm):
    tok = hm.tokenizer
    if tok is not None:
        tid = tok.convert_tokens_to_ids(EMU3_EOF)
        if isinstance(tid, int) and tid != getattr(tok, "unk_token_id", None):
            return tid
    vocab = getattr(getattr(hm.model, "config", None), "vocabulary_map", None) or {}
    return vocab.get(EMU3_EOF)


@dataclass
class ImageLayout:
    """Boolean ``(B, P)`` masks of one prepared batch (see the module docstring)."""

    attention_mask: torch.Tensor
    text: torch.Tensor
    image: torch.Tensor
    side: torch.Tensor  # image block: image tokens + specials + eoi
    eoi: torch.Tensor  # zeros when the model has no end-of-image marker; Emu3: two positions per row
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

    @property
    def flow_keys(self) -> torch.Tensor:
        """The keys the flow is normalised over: image-side positions from the first image token
        on (image tokens, in-block specials such as Pixtral's breaks, [EOI]); BOI and headers
        before the first image token are left out, as in the authors' ``Fig3_CrossAttention.py``."""
        return self.side & (self.image.long().cumsum(1) > 0)

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


def side_of(spans: dict, am: torch.Tensor) -> torch.Tensor:
    text = spans.get("text", am & ~spans["image"].bool())
    return am & ~text.bool()


def image_layout(hm, inputs: dict) -> ImageLayout:
    """Image-side masks of a prepared batch; :class:`ImageSpanError` when there is no image.

    Every row must hold exactly one image (one block, at most one ``[EOI]``, or the Emu3 pair).
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
            "analyses need a vision-language model whose image tokens are marked (the families of "
            "hooks/adapters/vlm_spans.py: LLaVA, Pixtral, Qwen-VL, Idefics, Gemma-3, ...; Chameleon, Janus, Emu3; "
            "or the toy models 'toy:gated' / 'toy:free')."
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
    per_image = 1
    if eoi is not None:
        eoi = eoi.bool() & am
        if hm.adapter.name.startswith("emu3"):
            eof = _emu3_eof_id(hm)
            if eof is not None and bool((ids == eof).any()):
                eoi = eoi | ((ids == eof) & am & side_of(spans, am))
                per_image = 2
        n = eoi.sum(1)
        if bool((n > per_image).any()):
            b = int((n > per_image).nonzero()[0])
            raise ImageSpanError(f"Batch row {b} holds {int(n[b])} end-of-image tokens; use one image per prompt.")
        if bool((n == 0).any()):
            eoi = None  # a marker the tokenizer knows but this batch lacks: fall back to the proxy
    # one image block per row: side positions are contiguous
    first = torch.where(side, torch.arange(side.shape[1], device=side.device), side.shape[1]).amin(1)
    last = torch.where(side, torch.arange(side.shape[1], device=side.device), -1).amax(1)
    if bool(((last - first + 1) != side.sum(1)).any()):
        b = int(((last - first + 1) != side.sum(1)).nonzero()[0])
        raise ImageSpanError(f"Batch row {b} holds more than one image block; use one image per prompt (Pixtral: "
                             "wrap the model with its processor or tokenizer so [IMG_BREAK]/[IMG_END] are known).")
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
