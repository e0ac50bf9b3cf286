"""Chameleon (``ChameleonForConditionalGeneration`` / ``ChameleonModel``): early fusion — a
VQ-VAE turns each image into discrete codes whose (text-table) embeddings replace the
``<image>`` placeholders; one decoder (``model.layers``) reads the mixed sequence.

Two block variants, chosen by ``config.swin_norm``:

* ``chameleon`` (``swin_norm=False``): Llama-style pre-norm blocks;
* ``chameleon_swin`` (``swin_norm=True``, Swin-style norm reordering): the norms follow
  attention and MLP, so ``attn_out`` is the output of ``input_layernorm`` (the normalised
  attention output that is added to the residual), ``mlp_out`` that of
  ``post_attention_layernorm``, and ``resid_mid`` is read as the MLP input (``inplace``: it
  is also the residual).

Both keep ``resid_mid = resid_pre + attn_out`` and ``resid_post = resid_mid + mlp_out``.
``logits`` is the ``lm_head`` output *before* the model masks the image-token columns
(``ForConditionalGeneration`` sets them to the dtype minimum afterwards).

Spans: ``"image"`` (placeholders and ``IMGIMG*`` code tokens), ``"boi"`` / ``"eoi"``
(``<racm3:break>`` / ``<eoss>``, or the processor tokenizer's ``boi_token``/``eoi_token``),
``"text"`` (real tokens outside image blocks).
"""
from . import _vlm
from .base import Site
from .llama import SITES as LLAMA_SITES


def _vocab(model):
    return getattr(model.config, "vocabulary_map", None) or {}


def chameleon_spans(hm, ids, am):
    vocab = _vocab(hm.model)
    vm = _vlm.vocabulary_mapping(hm.model)
    # the placeholder and every IMGIMG* code id (so image tokens given as ids count too)
    codes = [vm.image_token_id, *vm.image_tokens] if vm is not None else [vocab.get("<image>")]
    boi = _vlm.token_id(hm, "<racm3:break>", "boi_token", vocab)
    eoi = _vlm.token_id(hm, "<eoss>", "eoi_token", vocab)
    return _vlm.image_spans(ids, am, codes, boi, eoi)


SITES = {**LLAMA_SITES, "embed": Site("layers.0", kind="input")}

SWIN_SITES = {
    **SITES,
    "attn_out": Site("layers.{L}.input_layernorm"),
    "resid_mid": Site("layers.{L}.mlp", kind="input", inplace=True),
    "mlp_out": Site("layers.{L}.post_attention_layernorm"),
}

_COMMON = dict(
    model_types=("chameleon",),
    bases=("model", ""),
    layers="layers",
    attention_backend="hf",
    n_heads=_vlm.text_heads,
    spans=chameleon_spans,
    extra={"backend": _vlm},
)

ADAPTERS = [
    _vlm.VLMAdapter(name="chameleon", sites=SITES, requires=lambda m: not getattr(m.config, "swin_norm", False),
                    **_COMMON),
    _vlm.VLMAdapter(name="chameleon_swin", sites=SWIN_SITES, requires=lambda m: bool(getattr(m.config, "swin_norm", False)),
                    **_COMMON),
]
