"""Emu3 (``Emu3ForConditionalGeneration`` / ``Emu3Model``, and the text-only
``Emu3ForCausalLM``): a VQ-VAE turns images into ``<|visual token…|>`` ids (one extra
end-of-line token ``<|extra_200|>`` per row) whose embeddings fill the ``<image>``
placeholders; one Llama-style decoder (``model.text_model``) reads the sequence and also
generates images as visual tokens through ``lm_head``.

Sites are Llama's, under ``text_model``; ``embed`` is the merged sequence entering layer 0.
Spans: ``"image"`` (placeholders, visual-token ids and the end-of-line id — so generated
image tokens are ``"image"`` too), ``"boi"`` / ``"eoi"`` (``<|image start|>`` /
``<|image end|>``), ``"text"`` (real tokens outside image blocks). Inside a block Emu3's
processor also writes a size header (``H*W``), ``<|image token|>`` and ``<|extra_201|>``:
those positions are in no span but ``"all"``.
"""
from . import _vlm
from .base import Site
from .llama import SITES as LLAMA_SITES


def emu3_spans(hm, ids, am):
    vm = _vlm.vocabulary_mapping(hm.model)
    vocab = getattr(hm.model.config, "vocabulary_map", None) or {}
    image = [vm.image_token_id, vm.eol_token_id, *vm.image_tokens] if vm is not None else [vocab.get("<image>")]
    boi = _vlm.token_id(hm, "<|image start|>", "boi_token", vocab)
    eoi = _vlm.token_id(hm, "<|image end|>", "eoi_token", vocab)
    return _vlm.image_spans(ids, am, image, boi, eoi)


ADAPTER = _vlm.VLMAdapter(
    name="emu3",
    model_types=("emu3", "emu3_text_model"),
    bases=("model.text_model", "text_model", "model", ""),
    layers="layers",
    sites={**LLAMA_SITES, "embed": Site("layers.0", kind="input")},
    attention_backend="hf",
    n_heads=_vlm.text_heads,
    spans=emu3_spans,
    extra={"backend": _vlm},
)
