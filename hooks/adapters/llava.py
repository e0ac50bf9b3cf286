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
the breaks are inside the image block (not ``"text"``), ids read from the processor/tokenizer
(:mod:`hooks.adapters.vlm_spans`, the table of every family's image tokens).

The vision tower and projector are reachable as raw module paths, e.g.
``"model.vision_tower.encoder.layers.3"`` or ``"model.multi_modal_projector"``.
"""
from dataclasses import replace

from . import _vlm, vlm_spans
from .gemma import GEMMA, GEMMA2
from .llama import ADAPTER as LLAMA


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
        spans=vlm_spans.spans,
        extra={"backend": _vlm},
        notes=f"LLaVA over a {text_adapter.name}-style language model",
    )


ADAPTERS = [_variant(LLAMA, "llava"), _variant(GEMMA, "llava_gemma"), _variant(GEMMA2, "llava_gemma2")]
