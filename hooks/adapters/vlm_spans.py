"""Image spans of vision-language models from one declarative table.

Every VLM that merges image features into its token sequence marks the image positions with a
placeholder id, and most bracket an image with begin/end-of-image markers. Which config or
processor attribute names those ids differs per family; :data:`SPECS` records it, family by
family, and :func:`spans` turns it into the ``positions=`` spans of :mod:`hooks.positions`:

``image``   the image placeholder positions (the positions whose embedding the model replaces
            with image features; checked against the model's own merge in
            tests/hooks/test_vlm_spans.py)
``video``   video placeholder positions, where the family has them (Qwen2-VL, LLaVA-OneVision)
``boi``     begin-of-image marker (one per image block)
``eoi``     end-of-image marker (Pixtral's ``[IMG_END]``; Gemma-3's ``<end_of_image>``)
``text``    real tokens outside every image block

Ids come from, in order: the config (``config.image_token_id`` and the like, or its
``text_config``), the processor's ``*_id`` attributes, the processor's token strings looked up
in the tokenizer, the literal token strings of the table looked up in the tokenizer. A marker
whose id none of them gives (e.g. Idefics3's ``<fake_token_around_image>`` when the model was
wrapped without its processor or tokenizer) is reported as absent with that reason, and asking
for it (``positions="boi"``) is an error that says so; a span a family does not have (PaliGemma
and LLaVA write no markers; Mllama reads images through cross-attention, so its text stream has
no image positions) is an error naming why.

Families (``model_type``; ``SPECS`` keys)::

    llava / llava_next / llava_next_video / llava_onevision / vipllava
                        <image> x N, no markers (LLaVA-NeXT's row newlines are image features
                        at <image> positions, so they are "image")
    pixtral             [IMG] rows separated by [IMG_BREAK], closed by [IMG_END] (= eoi); no boi.
                        A LLaVA whose vision tower is Pixtral, and Mistral-3
    qwen2_vl / qwen2_5_vl / qwen3_vl / qwen3_vl_moe
                        <|vision_start|> <|image_pad|> x N <|vision_end|> (video: <|video_pad|>)
    idefics2 / idefics3 / smolvlm
                        <fake_token_around_image> opens, separates and closes tiles (one id for
                        boi and eoi); <row_i_col_j>, <global-img> and row newlines are inside the
                        block and in no span
    paligemma           <image> x N as a prefix before BOS, no markers
    gemma3              <start_of_image> <image_soft_token> x N <end_of_image>
    llama4              <|image_start|> <|patch|> x N (tile separators inside) <|image_end|>
    internvl            <img> <IMG_CONTEXT> x N </img>
    aya_vision          <|START_OF_IMG|> <|IMG_PATCH|> x N ... <|END_OF_IMG|> (marker ids from
                        the processor/tokenizer)
    mllama              no image positions (cross-attention); <|image|> is in no span

Any other VLM gets :data:`DEFAULT` (the config's ``image_token_id``/``image_token_index`` and
its begin/end-of-image ids under the usual names). Chameleon, Emu3 and Janus keep their own
span functions (VQ code ids from ``vocabulary_map``; Janus' ``generation_kwargs``).

Layouts: transformers ``models/<family>/processing_<family>.py`` (``_prompt_split_image`` of
Idefics3, ``replace_image_token`` of Pixtral, ``full_image_sequence`` of Gemma-3).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch

from . import _vlm

IMAGE_IDS = ("config.image_token_id", "config.image_token_index")
BOI_IDS = ("config.boi_token_id", "config.boi_token_index", "config.image_start_token_id",
           "config.vision_start_token_id", "config.image_begin_token_id", "config.start_image_token_id",
           "config.begin_of_image_token_id")
EOI_IDS = ("config.eoi_token_id", "config.eoi_token_index", "config.image_end_token_id", "config.vision_end_token_id",
           "config.end_image_token_id", "config.end_of_image_token_id")
VIDEO_IDS = ("config.video_token_id", "config.video_token_index")

NO_MARKERS = "{family} writes its image tokens with no begin/end-of-image markers"


@dataclass(frozen=True)
class SpanSpec:
    """Where one family's image-related token ids come from.

    Each field is a tuple of sources, tried in order: ``"config.ATTR"`` (the config or its
    ``text_config``), ``"processor.ATTR"`` (an int id, or a token string looked up in the
    tokenizer), ``"token.STRING"`` (looked up in the tokenizer)."""

    image: tuple = IMAGE_IDS
    video: tuple = ()
    boi: tuple = ()
    eoi: tuple = ()
    inside: tuple = ()  # ids inside an image block that belong to no span (Pixtral [IMG_BREAK])
    shared_marker: bool = False  # boi and eoi are one id that also separates tiles (Idefics)
    absent: dict = field(default_factory=dict)  # span -> why this family has none


LLAVA = SpanSpec(video=VIDEO_IDS, absent={"boi": NO_MARKERS.format(family="LLaVA"),
                                          "eoi": NO_MARKERS.format(family="LLaVA")})
PIXTRAL = SpanSpec(
    eoi=("processor.image_end_token_id", "processor.image_end_token", "token.[IMG_END]"),
    inside=("processor.image_break_token_id", "processor.image_break_token", "token.[IMG_BREAK]"),
    absent={"boi": "Pixtral opens an image with its first [IMG] row (no begin marker); [IMG_END] is its eoi"})
QWEN_VL = SpanSpec(video=VIDEO_IDS, boi=("config.vision_start_token_id", "token.<|vision_start|>"),
                   eoi=("config.vision_end_token_id", "token.<|vision_end|>"))
IDEFICS = SpanSpec(boi=("processor.fake_image_token_id", "processor.fake_image_token",
                        "token.<fake_token_around_image>"), shared_marker=True)
MLLAMA = SpanSpec(image=(), inside=IMAGE_IDS, absent=dict.fromkeys(("image", "boi", "eoi"), (
    "Mllama reads images through cross-attention layers (text_config.cross_attention_layers), so its text "
    "stream holds one <|image|> token per image and no image positions; read the image path at raw module "
    "paths such as 'model.language_model.layers.{L}.cross_attn' (the <|image|> token itself is in no span)")))
DEFAULT = SpanSpec(video=VIDEO_IDS, boi=BOI_IDS, eoi=EOI_IDS)

SPECS = {
    **dict.fromkeys(("llava", "llava_next", "llava_next_video", "llava_onevision", "vipllava"), LLAVA),
    **dict.fromkeys(("pixtral", "mistral3"), PIXTRAL),
    **dict.fromkeys(("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe"), QWEN_VL),
    **dict.fromkeys(("idefics2", "idefics3", "smolvlm"), IDEFICS),
    "paligemma": SpanSpec(absent={"boi": NO_MARKERS.format(family="PaliGemma") + " (a prefix before BOS)",
                                  "eoi": NO_MARKERS.format(family="PaliGemma") + " (a prefix before BOS)"}),
    "gemma3": SpanSpec(boi=("config.boi_token_id", "config.boi_token_index", "processor.boi_token",
                            "token.<start_of_image>"),
                       eoi=("config.eoi_token_id", "config.eoi_token_index", "processor.eoi_token",
                            "token.<end_of_image>")),
    "llama4": SpanSpec(boi=("config.boi_token_id", "config.boi_token_index", "token.<|image_start|>"),
                       eoi=("config.eoi_token_id", "config.eoi_token_index", "token.<|image_end|>")),
    "internvl": SpanSpec(video=VIDEO_IDS, boi=("processor.start_image_token_id", "token.<img>"),
                         eoi=("processor.end_image_token_id", "token.</img>")),
    "aya_vision": SpanSpec(boi=("processor.start_of_img_token", "token.<|START_OF_IMG|>"),
                           eoi=("processor.end_of_img_token", "token.<|END_OF_IMG|>")),
    "mllama": MLLAMA,
}


class Spans(dict):
    """``{name: (B, L) bool mask}`` plus ``absent``: ``{name: why this model has no such span}``."""

    def __init__(self, masks=(), absent=None):
        super().__init__(masks)
        self.absent = dict(absent or {})


def family(model) -> str:
    """The :data:`SPECS` key of ``model`` (a LLaVA with a Pixtral vision tower is ``"pixtral"``)."""
    cfg = model.config
    mt = getattr(cfg, "model_type", None)
    if mt == "llava" and getattr(getattr(cfg, "vision_config", None), "model_type", None) == "pixtral":
        return "pixtral"
    return mt


def spec_for(model) -> SpanSpec:
    return SPECS.get(family(model), DEFAULT)


def _int(v) -> Optional[int]:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _token(tok, s: str) -> Optional[int]:
    if tok is None or not isinstance(s, str):
        return None
    try:
        tid = tok.convert_tokens_to_ids(s)
    except Exception:  # noqa: BLE001 - tokenizers differ on unknown strings
        return None
    unk = getattr(tok, "unk_token_id", None)
    return tid if _int(tid) is not None and (tid != unk or s == getattr(tok, "unk_token", None)) else None


def resolve_id(hm, sources) -> Optional[int]:
    """The first id one of ``sources`` (see :class:`SpanSpec`) gives, else None."""
    cfg = hm.model.config
    proc, tok = getattr(hm, "processor", None), hm.tokenizer
    for src in sources:
        kind, _, name = src.partition(".")
        if kind == "config":
            for c in (cfg, getattr(cfg, "text_config", None)):
                v = _int(getattr(c, name, None)) if c is not None else None
                if v is not None:
                    return v
        elif kind == "processor" and proc is not None:
            v = getattr(proc, name, None)
            v = _int(v) if not isinstance(v, str) else _token(tok, v)
            if v is not None:
                return v
        elif kind == "token":
            v = _token(tok, name)
            if v is not None:
                return v
    return None


def _missing(sources, fam) -> str:
    names = [s.partition(".")[2] for s in sources if s.startswith("token.")]
    if not names:  # config attributes only (a family outside the table)
        return (f"{fam!r} is not in hooks/adapters/vlm_spans.py's table and its config names no such id "
                f"({', '.join(s.partition('.')[2] for s in sources)}); add the family to vlm_spans.SPECS")
    return (f"the id of {names[0]} is not in the model's config: wrap the model with its processor or tokenizer "
            "(hooks.wrap(model, processor)) so the span can be found")


def resolve_ids(hm, spec: SpanSpec) -> tuple:
    """``(ids, absent)``: ``ids`` maps image/video/boi/eoi/inside to an id or None; ``absent``
    maps spans this model lacks to the reason (the family's, else the unresolved marker's)."""
    ids = {k: resolve_id(hm, getattr(spec, k)) for k in ("image", "video", "boi", "eoi", "inside")}
    absent = dict(spec.absent)
    for k in ("boi", "eoi"):
        src = spec.boi if spec.shared_marker else getattr(spec, k)
        if ids["boi" if spec.shared_marker else k] is None and k not in absent:
            absent[k] = _missing(src, family(hm.model)) if src else f"{family(hm.model)} has no {k} marker in the table"
    if ids["image"] is None and "image" not in absent:
        absent["image"] = _missing(spec.image, family(hm.model))
    return ids, absent


def spans(hm, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Spans:
    """The spans of ``hm``'s family on a batch (see the module docstring)."""
    spec = spec_for(hm.model)
    ids, absent = resolve_ids(hm, spec)
    image = [ids["image"]] if ids["image"] is not None else []
    inside = [i for i in (ids["inside"], ids["video"]) if i is not None]
    if spec.shared_marker:
        out = _vlm.shared_marker_spans(input_ids, attention_mask, image, ids["boi"], block_ids=inside)
    else:
        out = _vlm.image_spans(input_ids, attention_mask, image, ids["boi"], ids["eoi"], block_ids=inside)
    if ids["video"] is not None:
        out["video"] = (input_ids == ids["video"]) & attention_mask.bool()
    for k in absent:
        out.pop(k, None)
    return Spans(out, absent)
