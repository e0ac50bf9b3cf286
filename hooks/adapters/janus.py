"""Janus / Janus-Pro (``JanusForConditionalGeneration`` / ``JanusModel``): a SigLIP vision
encoder + ``aligner`` fill the ``<image_placeholder>`` positions of a Llama language model
(``model.language_model``) for understanding; a separate VQ path (``generation_embeddings``,
``generation_aligner``, ``generation_head``) is used for image generation.

Sites are Llama's, under ``language_model``; ``embed`` is the merged sequence entering
layer 0. ``logits`` is the text head (``lm_head``); image generation scores come from
``model.generation_head`` (a raw module path).

Spans: ``"image"`` (``config.image_token_id``), ``"boi"`` / ``"eoi"`` (the tokenizer's
``boi_token``/``eoi_token`` — ``<begin_of_image>``/``<end_of_image>`` — else
``generation_config.generation_kwargs["boi_token_id"]``; ``eoi`` needs the tokenizer),
``"text"`` (real tokens outside image blocks).

Text generation goes through ``HookedModel.generate``. Image generation
(``generation_mode="image"``) calls the language model directly, outside the wrapped root
module, and doubles the batch for classifier-free guidance; use :func:`generate_image`, which
keeps position selectors working there.
"""
from __future__ import annotations

import torch

from . import _vlm
from .base import Site
from .llama import ADAPTER as LLAMA


def _boi_from_config(model):
    gk = getattr(getattr(model, "generation_config", None), "generation_kwargs", None) or {}
    return gk.get("boi_token_id")


def janus_spans(hm, ids, am):
    boi = _vlm.token_id(hm, "<begin_of_image>", "boi_token")
    if boi is None:
        boi = _boi_from_config(hm.model)
    eoi = _vlm.token_id(hm, "<end_of_image>", "eoi_token")
    return _vlm.image_spans(ids, am, [hm.model.config.image_token_id], boi, eoi)


ADAPTER = _vlm.VLMAdapter(
    name="janus",
    model_types=("janus",),
    requires=lambda m: _vlm.text_config(m).model_type in LLAMA.model_types,
    bases=("model.language_model", "language_model"),
    layers="layers",
    sites={**LLAMA.sites, "embed": Site("layers.0", kind="input")},
    attention_backend="hf",
    n_heads=_vlm.text_heads,
    spans=janus_spans,
    extra={"backend": _vlm},
)


def _language_model(model):
    for path in ("model.language_model", "language_model"):
        try:
            return model.get_submodule(path)
        except AttributeError:
            continue
    raise AttributeError("no language_model in this Janus model")


@torch.no_grad()
def generate_image(hm, batch, interventions=(), *, do_sample: bool = False, **gen_kwargs):
    """Janus image generation (``generation_mode="image"``) with interventions active.

    ``batch`` is the prompt (texts through the processor, which appends ``<begin_of_image>``,
    or ids ending with it). Janus runs the language model on ``2·B`` rows — rows ``B..2B`` are
    the unconditional copies used for classifier-free guidance — so caches have ``2·B`` rows
    and interventions act on both halves. Positions: ``"text"``/``"boi"`` are the prompt's
    spans, ``"image"`` the generated image tokens, ``"last"`` the newest token; ``apply_to``
    works as in :meth:`HookedModel.generate`. Returns a ``GenerateResult`` whose ``sequences``
    are the ``(B, num_image_tokens)`` VQ codes (decode with ``hm.model.decode_image_tokens``)
    and ``texts`` is None. Generation settings (``guidance_scale``, pad/bos ids,
    ``generation_kwargs["boi_token_id"]``) come from ``model.generation_config`` or ``gen_kwargs``.
    """
    from .. import positions as P
    from ..model import GenerateResult, as_interventions

    ivs = as_interventions(interventions)
    tok = hm.tokenizer
    old = getattr(tok, "padding_side", None)
    if tok is not None:
        tok.padding_side = "left"
    try:
        if getattr(hm, "processor", None) is not None:  # the processor appends <begin_of_image>
            if isinstance(batch, str) or (isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], str)):
                batch = {"text": batch}
            if isinstance(batch, dict) and "text" in batch and "input_ids" not in batch:
                batch = {**batch, "generation_mode": batch.get("generation_mode", "image")}
        inputs = hm.prepare(batch)
    finally:
        if tok is not None:
            tok.padding_side = old
    ids, am = inputs["input_ids"], inputs["attention_mask"].bool()
    prompt_len = ids.shape[1]
    ids2, am2 = ids.repeat(2, 1), am.repeat(2, 1)
    prompt_spans = hm.spans(ids2, am2)

    def spans_upto(L):
        extra = L - prompt_len
        out = {}
        for name, m in prompt_spans.items():
            tail = m.new_full((m.shape[0], extra), name == "image")
            out[name] = torch.cat([m, tail], 1)
        return out

    seen = [0]  # positions fed to the language model so far

    def set_context(module, args, kwargs):
        emb = kwargs.get("inputs_embeds")
        if emb is None or emb.shape[0] != ids2.shape[0]:
            hm._ctx = None
            return None
        q = emb.shape[1]
        seen[0] += q  # the first call is the prompt (prefill), then one token per step
        L = seen[0]
        mask = kwargs.get("attention_mask")
        if mask is None or mask.dim() != 2 or mask.shape[1] != L:  # static caches pass 4-D masks
            mask = torch.cat([am2, am2.new_ones(am2.shape[0], L - prompt_len)], 1)
        hm._ctx = P.BatchContext(attention_mask=mask.bool(), input_ids=None, window_start=L - q,
                                 prompt_len=prompt_len, span_fn=(lambda L=L: spans_upto(L)), tokenizer=tok)
        return None

    lm = _language_model(hm.model)
    with hm.trace() as tr:
        results = [tr.add(iv) for iv in ivs]
        handle = lm.register_forward_pre_hook(set_context, with_kwargs=True)
        try:
            inputs = {k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask")}
            # Janus generates with its own static cache (keys = cache slots, not positions); the
            # context above counts positions itself and Knockout leaves unwritten slots alone.
            seqs = hm.model.generate(**inputs, generation_mode="image", do_sample=do_sample, **gen_kwargs)
        finally:
            handle.remove()
            hm._ctx = None
    cache: dict = {}
    for r in results:
        if r is not None:
            cache.update(r)
    return GenerateResult(seqs, None, prompt_len, cache)
