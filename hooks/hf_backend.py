"""How HookedModel talks to a transformers model: tokenizing, calling, reading outputs.

TransformerLens and fair-esm adapters provide their own versions of these four functions.
"""
from __future__ import annotations

import torch

from .errors import HookError


def prepare(hm, batch) -> dict:
    """Turn texts / token ids / a tokenized dict into model inputs on the model's device."""
    if isinstance(batch, str):
        batch = [batch]
    if isinstance(batch, (list, tuple)) and batch and all(isinstance(b, str) for b in batch):
        tok = hm.tokenizer
        if tok is None:
            raise HookError("This model has no tokenizer; pass token ids (a LongTensor or {'input_ids': ...}).")
        side = hm.adapter.padding_side or getattr(tok, "padding_side", "right")
        old = tok.padding_side
        tok.padding_side = side
        try:
            if tok.pad_token is None:
                tok.pad_token = tok.eos_token or tok.unk_token
            enc = tok(list(batch), return_tensors="pt", padding=True)
        finally:
            tok.padding_side = old
        inputs = dict(enc)
    elif isinstance(batch, torch.Tensor):
        ids = batch if batch.dim() == 2 else batch[None]
        inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    elif isinstance(batch, dict) or hasattr(batch, "keys"):
        inputs = dict(batch)
        if "input_ids" in inputs and "attention_mask" not in inputs:
            inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
    elif isinstance(batch, (list, tuple)) and batch and all(
            isinstance(b, (list, tuple)) or (isinstance(b, torch.Tensor) and b.dim() == 1) for b in batch):
        inputs = pad_sequences(hm, [torch.as_tensor(b, dtype=torch.long) for b in batch])
    else:
        raise HookError(f"Cannot use a {type(batch).__name__} as a batch; pass texts, token ids or a tokenized dict.")
    dev = hm.device
    return {k: (v.to(dev) if isinstance(v, torch.Tensor) else v) for k, v in inputs.items()}


def pad_sequences(hm, seqs: list) -> dict:
    """Pad 1-D token-id tensors into ``input_ids``/``attention_mask`` on the adapter's padding side."""
    tok = hm.tokenizer
    pad = getattr(tok, "pad_token_id", None) if tok is not None else None
    if pad is None:
        pad = getattr(getattr(hm.model, "config", None), "pad_token_id", None) or 0
    side = hm.adapter.padding_side or (getattr(tok, "padding_side", None) if tok is not None else None) or "right"
    P = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), P), int(pad), dtype=torch.long)
    am = torch.zeros(len(seqs), P, dtype=torch.long)
    for b, s in enumerate(seqs):
        sl = slice(0, len(s)) if side == "right" else slice(P - len(s), P)
        ids[b, sl], am[b, sl] = s, 1
    return {"input_ids": ids, "attention_mask": am}


def forward(hm, inputs: dict, **kw):
    inputs = dict(inputs)
    am = inputs.get("attention_mask")
    if hm.adapter.position_ids and am is not None and "position_ids" not in inputs and am.dim() == 2:
        inputs["position_ids"] = (am.long().cumsum(-1) - 1).clamp(min=0)
    if hm.adapter.position_ids:  # decoder LMs: no KV cache for a plain forward
        kw.setdefault("use_cache", False)
    return hm.model(**inputs, **kw)


def call_inputs(args, kwargs):
    """(input_ids or None, attention_mask or None, (B, q)) of one forward call."""
    ids = kwargs.get("input_ids")
    if ids is None and args and isinstance(args[0], torch.Tensor) and not args[0].is_floating_point():
        ids = args[0]
    am = kwargs.get("attention_mask")
    if ids is not None:
        shape = tuple(ids.shape[:2])
    else:
        emb = kwargs.get("inputs_embeds")
        if emb is None:
            return None, None, None
        shape = tuple(emb.shape[:2])
    if am is not None and (am.dim() != 2 or am.shape[0] != shape[0]):
        am = None
    return ids, am, shape


def logits_of(output):
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict) and "logits" in output:
        return output["logits"]
    return getattr(output, "logits", None)
