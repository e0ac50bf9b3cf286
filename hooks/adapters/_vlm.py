"""Shared pieces of the vision-language adapters (LLaVA, Chameleon, Janus, Emu3).

All four feed one token sequence to a decoder-only language model; image positions hold a
placeholder id (``<image>``) whose embedding is replaced by image features (LLaVA, Janus:
projected vision-encoder states; Chameleon, Emu3: embeddings of VQ codes) before the first
layer. The canonical sites therefore live on that language model, and:

* ``embed`` is the *merged* sequence entering layer 0 (text embeddings with the image
  features scattered in), i.e. ``hidden_states[0]`` of ``output_hidden_states=True``.
  It is read as the input of layer 0, so an edit there is what layer 0 sees. The pieces
  before the merge stay reachable as raw module paths (e.g. ``"model.multi_modal_projector"``
  for LLaVA, ``"model.aligner"`` for Janus).
* spans (``positions="image"`` etc.) are computed from the input ids:

  ``image``  image positions: the placeholder id, plus (Chameleon, Emu3) real image-token
             ids, so generated image tokens count as image too;
  ``boi`` / ``eoi``  the begin/end-of-image markers (absent for LLaVA, which has none;
             Pixtral-class LLaVA: ``[IMG_END]`` is ``eoi``, its ``[IMG_BREAK]`` row breaks are
             inside the block but in no span);
  ``text``   real tokens outside every image block (a block runs from a ``boi`` to its
             ``eoi`` inclusive, to the end of the row while unclosed; when only one marker id
             is known — or none, as for LLaVA — the image and marker positions).

Batches: everything :mod:`hooks.hf_backend` accepts (token ids, a processor's
``BatchFeature``/dict with ``input_ids`` and ``pixel_values``), plus, when the model was
wrapped with its processor (``hooks.wrap(model, processor)``):

* texts — run through the processor (so its conventions apply: Emu3 prepends BOS, Chameleon
  appends ``sep_token`` unless ``return_for_text_completion=True``);
* ``{"text": [...], "images": [...], **processor_kwargs}``;
* a list of examples ``[{"text": ..., "image": ...}, ...]`` (what dataset iteration yields,
  e.g. for ``Ablate(how="mean", reference=...)``).

Floating tensors (``pixel_values``) are cast to the model's dtype.
"""
from __future__ import annotations

from typing import Optional

import torch

from .. import hf_backend
from ..errors import HookError
from .base import Adapter


VLMAdapter = Adapter  # kept as an alias: ``requires`` now lives on the base Adapter


def text_config(model):
    cfg = model.config
    get = getattr(cfg, "get_text_config", None)
    return get() if get is not None else getattr(cfg, "text_config", cfg)


def text_heads(model) -> int:
    return text_config(model).num_attention_heads


def vocabulary_mapping(model):
    """The ``vocabulary_mapping`` helper of Chameleon/Emu3 models (cached id lists), or None."""
    for m in (model, getattr(model, "model", None)):
        vm = getattr(m, "vocabulary_mapping", None) if m is not None else None
        if vm is not None and hasattr(vm, "image_tokens"):
            return vm
    return None


# -- spans -------------------------------------------------------------------------------
def _isin(ids: torch.Tensor, values) -> torch.Tensor:
    values = [int(v) for v in values if v is not None]
    if not values:
        return torch.zeros_like(ids, dtype=torch.bool)
    return torch.isin(ids, torch.tensor(values, device=ids.device, dtype=ids.dtype))


def image_spans(ids: torch.Tensor, am: torch.Tensor, image_ids, boi_id=None, eoi_id=None, block_ids=()) -> dict:
    """``image``/``text`` (and ``boi``/``eoi`` when the model has them) masks, each (B, L).

    ``block_ids``: ids inside an image block that are in no span (Pixtral's ``[IMG_BREAK]``):
    they are not ``text``.
    """
    am = am.bool()
    image = _isin(ids, image_ids) & am
    out = {"image": image}
    block = image | (_isin(ids, block_ids) & am)
    boi = (ids == boi_id) & am if boi_id is not None else None
    eoi = (ids == eoi_id) & am if eoi_id is not None else None
    if boi is not None:
        out["boi"] = boi
        block = block | boi
    if eoi is not None:
        out["eoi"] = eoi
        block = block | eoi
    if boi is not None and eoi is not None:
        # inside a block: more boi's than eoi's seen up to here (an unclosed block runs to the end)
        opened = boi.long().cumsum(1) - eoi.long().cumsum(1)
        block = block | ((opened > 0) & am)
    out["text"] = am & ~block
    return out


def shared_marker_spans(ids: torch.Tensor, am: torch.Tensor, image_ids, marker_id=None, block_ids=()) -> dict:
    """Spans when one marker id opens, separates and closes image tiles (Idefics2/3, SmolVLM:
    ``<fake_token_around_image>``).

    The markers cut a row into segments (a marker up to the next one); a segment holding an
    image token is inside an image block, with its trailing text-like tokens (Idefics3's
    ``<row_i_col_j>`` tags, ``<global-img>`` and row newlines: in no span). ``boi`` is a marker
    that opens a block after a non-image segment, ``eoi`` one that closes a block before a
    non-image segment (a marker between two tiles is neither)."""
    if marker_id is None:
        return image_spans(ids, am, image_ids, block_ids=block_ids)
    am = am.bool()
    image = _isin(ids, image_ids) & am
    mark = (ids == marker_id) & am
    seg = mark.long().cumsum(1)  # segment k runs from the k-th marker up to the next one; 0 = before any
    B, L = ids.shape
    n_img = torch.zeros(B, L + 2, dtype=torch.long, device=ids.device)
    n_img.scatter_add_(1, seg, image.long())
    inside_seg = n_img > 0
    inside_seg[:, 0] = False
    inside = inside_seg.gather(1, seg)
    inside_prev = inside_seg.gather(1, (seg - 1).clamp(min=0)) & (seg > 0)
    boi = mark & inside & ~inside_prev
    eoi = mark & inside_prev & ~inside
    block = ((inside | (mark & inside_prev)) & am) | image | (_isin(ids, block_ids) & am)
    return {"image": image, "boi": boi, "eoi": eoi, "text": am & ~block}


def token_id(hm, name: str, attr: Optional[str] = None, vocab: Optional[dict] = None):
    """Id of a special token: from the tokenizer (``attr`` such as ``"boi_token"``, or the
    literal ``name``), else from the model's ``vocabulary_map``; None when unknown."""
    tok = hm.tokenizer
    if tok is not None:
        if attr is not None:
            tid = getattr(tok, f"{attr}_id", None)
            if isinstance(tid, int):
                return tid
            s = getattr(tok, attr, None)
            if isinstance(s, str):
                name = s
        try:
            tid = tok.convert_tokens_to_ids(name)
        except Exception:  # noqa: BLE001 - tokenizers differ on unknown strings
            tid = None
        unk = getattr(tok, "unk_token_id", None)
        if isinstance(tid, int) and tid != unk:
            return tid
    if vocab:
        return vocab.get(name)
    return None


# -- backend -------------------------------------------------------------------------------
def _model_dtype(model) -> Optional[torch.dtype]:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return None


def _merge_examples(batch: list) -> dict:
    """``[{"text": t, "image": im}, ...]`` (what dataset iteration yields) -> one processor batch."""
    texts, images = [], []
    for ex in batch:
        texts.append(ex.get("text", ""))
        im = ex.get("images", ex.get("image"))
        if im is not None:
            images.extend(im if isinstance(im, (list, tuple)) else [im])
    out = {"text": texts}
    if images:
        out["images"] = images
    return out


def prepare(hm, batch, *, prepend_bos=None) -> dict:
    """hf_backend.prepare plus processor batches; pixel values cast to the model dtype.

    Texts through the processor keep the processor's BOS placement (PaliGemma puts BOS after the
    image tokens, Emu3 prepends it, LLaVA's tokenizer adds it): ``prepend_bos`` applies to texts
    tokenized without a processor (:mod:`hooks.hf_backend`)."""
    proc = getattr(hm, "processor", None)
    if isinstance(batch, (list, tuple)) and batch and all(isinstance(b, dict) and "input_ids" not in b for b in batch):
        batch = _merge_examples(list(batch))
    raw = isinstance(batch, dict) and ("images" in batch or "text" in batch) and "input_ids" not in batch
    texts = isinstance(batch, str) or (
        isinstance(batch, (list, tuple)) and bool(batch) and all(isinstance(b, str) for b in batch)
    )
    if raw or (texts and proc is not None):
        if proc is None:
            raise HookError(
                "Batches given as {'text': ..., 'images': ...} need the model's processor: wrap with "
                "hooks.wrap(model, processor), or pass the processor's output (input_ids, attention_mask, "
                "pixel_values)."
            )
        kw = {"text": batch} if texts else dict(batch)
        text = kw.pop("text", None)
        if isinstance(text, str):
            text = [text]
        images = kw.pop("images", None)
        tok = hm.tokenizer
        old = getattr(tok, "padding_side", None)
        if tok is not None:
            tok.padding_side = hm.adapter.padding_side or old or "right"
            if tok.pad_token is None:
                tok.pad_token = tok.eos_token or tok.unk_token
        try:
            kw.setdefault("padding", True)
            enc = proc(text=text, images=images, return_tensors="pt", **kw)
        finally:
            if tok is not None:
                tok.padding_side = old
        batch = dict(enc)
    inputs = hf_backend.prepare(hm, batch, prepend_bos=prepend_bos)
    dt = _model_dtype(hm.model)
    if dt is not None:
        inputs = {
            k: (v.to(dt) if isinstance(v, torch.Tensor) and v.is_floating_point() and k != "attention_mask" else v)
            for k, v in inputs.items()
        }
    return inputs


# the rest of the backend protocol is hf_backend's (looked up at call time)
def forward(hm, inputs: dict, **kw):
    return hf_backend.forward(hm, inputs, **kw)


def call_inputs(args, kwargs):
    return hf_backend.call_inputs(args, kwargs)


def logits_of(output):
    return hf_backend.logits_of(output)
