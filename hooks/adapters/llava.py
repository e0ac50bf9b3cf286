"""LLaVA (``LlavaForConditionalGeneration`` / ``LlavaModel``): a vision tower whose features
go through ``multi_modal_projector`` into the ``<image>`` positions of a decoder LM
(``model.language_model``, any ``AutoModel``).

The language model decides the block layout, so there is one variant per supported text
family (Llama/Mistral/Qwen2/Qwen3, Gemma, Gemma 2/3-text), chosen by
``config.text_config.model_type``; their sites are those of the text adapters, moved under
``language_model``. ``embed`` is the merged sequence entering layer 0 (see
:mod:`hooks.adapters._vlm`). Spans: ``"image"`` (the ``image_token_id`` positions) and
``"text"`` (every other real token); LLaVA has no begin/end-of-image markers. Pixtral (a LLaVA
whose ``vision_config.model_type`` is ``"pixtral"``) writes rows of ``[IMG]`` separated by
``[IMG_BREAK]`` and closes the image with ``[IMG_END]``: ``[IMG_END]`` is its ``"eoi"`` span,
the breaks are inside the image block (not ``"text"``), ids read from the processor/tokenizer.

The vision tower and projector are reachable as raw module paths, e.g.
``"model.vision_tower.encoder.layers.3"`` or ``"model.multi_modal_projector"``.
"""
from dataclasses import replace

from . import _vlm
from .gemma import GEMMA, GEMMA2
from .llama import ADAPTER as LLAMA


def _pixtral_ids(hm):
    """``([IMG_BREAK], [IMG_END])`` ids of a Pixtral-class LLaVA (from its processor or tokenizer), else Nones."""
    if getattr(getattr(hm.model.config, "vision_config", None), "model_type", None) != "pixtral":
        return None, None
    proc = getattr(hm, "processor", None)
    brk = getattr(proc, "image_break_token_id", None)
    end = getattr(proc, "image_end_token_id", None)
    if brk is None:
        brk = _vlm.token_id(hm, "[IMG_BREAK]")
    if end is None:
        end = _vlm.token_id(hm, "[IMG_END]")
    return brk, end


def llava_spans(hm, ids, am):
    brk, end = _pixtral_ids(hm)
    return _vlm.image_spans(ids, am, [hm.model.config.image_token_id], eoi_id=end,
                            block_ids=[brk] if brk is not None else ())


def _text_family(model_types):
    return lambda model: _vlm.text_config(model).model_type in model_types


def _variant(text_adapter, name):
    sites = dict(text_adapter.sites)
    sites["embed"] = replace(sites["resid_pre"], path="layers.0")  # merged text+image embeddings
    return _vlm.VLMAdapter(
        name=name,
        model_types=("llava",),
        requires=_text_family(text_adapter.model_types),
        bases=("model.language_model", "language_model"),
        layers="layers",
        sites=sites,
        attention_backend="hf",
        n_heads=_vlm.text_heads,
        spans=llava_spans,
        extra={"backend": _vlm},
        notes=f"LLaVA over a {text_adapter.name}-style language model",
    )


ADAPTERS = [_variant(LLAMA, "llava"), _variant(GEMMA, "llava_gemma"), _variant(GEMMA2, "llava_gemma2")]
