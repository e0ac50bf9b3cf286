"""How HookedModel talks to a transformers model: tokenizing, calling, reading outputs.

TransformerLens and fair-esm adapters provide their own versions of these four functions.

BOS policy (``prepend_bos``, one convention on every backend; see docs/concepts/positions.md):
texts are tokenized so that **position 0 is the BOS token whenever the tokenizer has one**
(``prepend_bos=True``, the default), whether or not the tokenizer adds it itself. That is
TransformerLens' convention (``default_prepend_bos: bool = True`` in
transformer_lens/config/transformer_lens_config.py, used by ``HookedTransformer.to_tokens``), so a
spec means the same tokens on an HF model and on a TransformerLens wrapping of the same weights,
and GPT-2-style tokenizers (which add no BOS) get the attention-sink token that SAEs trained
with SAELens' default (``prepend_bos: bool = True``, sae_lens/config.py) saw at position 0.
``prepend_bos=False`` gives no BOS at all: one the tokenizer added is removed (TransformerLens
does the same), one written in the text is kept. Tokenizers without a BOS token (BERT, Qwen,
ESM) are unaffected either way.
Override per wrap (``hooks.wrap(model, tok, prepend_bos=False)`` or ``hm.prepend_bos = False``)
or per call (``hm.run(texts, ..., prepend_bos=False)``, ``hm.prepare``, ``hm.trace``,
``hm.generate``). Token ids given as tensors, rows or dicts are never changed.
"""
from __future__ import annotations

import torch

from .errors import HookError

PREPEND_BOS = True  # the documented default (module docstring)


def bos_policy(hm, prepend_bos=None) -> bool:
    """The BOS policy of one call: ``prepend_bos`` if given, else the wrap's (``hm.prepend_bos``)."""
    pb = getattr(hm, "prepend_bos", PREPEND_BOS) if prepend_bos is None else prepend_bos
    if not isinstance(pb, bool):
        raise HookError(f"prepend_bos must be True or False (or None for the wrap's default), got {pb!r}.")
    return pb


def set_bos_policy(hm, prepend_bos):
    """Set ``hm``'s BOS policy when ``prepend_bos`` is given (``hooks.wrap``/``hooks.load``); returns ``hm``."""
    if prepend_bos is not None:
        hm.prepend_bos = bos_policy(hm, prepend_bos)
    return hm


def with_bos_policy(tok, texts, rows: list, prepend_bos: bool) -> list:
    """``rows`` (the tokenizer's ids of ``texts``, special tokens included) under the BOS policy."""
    bos = getattr(tok, "bos_token_id", None)
    if bos is None:
        return [list(r) for r in rows]
    if prepend_bos:
        return [list(r) if r and r[0] == bos else [bos, *r] for r in rows]
    if not any(r and r[0] == bos for r in rows):
        return [list(r) for r in rows]
    plain = tok(list(texts), add_special_tokens=False)["input_ids"]  # what the text itself holds
    return [list(r[1:]) if r and r[0] == bos and not (p and p[0] == bos) else list(r) for r, p in zip(rows, plain)]


def encode_texts(tok, texts, prepend_bos: bool) -> list:
    """Token-id rows of ``texts`` under the BOS policy (see the module docstring)."""
    return with_bos_policy(tok, texts, tok(list(texts), add_special_tokens=True)["input_ids"], prepend_bos)


def tokenize_texts(hm, texts, prepend_bos=None) -> dict:
    """Padded ``input_ids``/``attention_mask`` (and the tokenizer's other outputs while the
    policy changed nothing) of ``texts`` with ``hm``'s tokenizer."""
    tok = hm.tokenizer
    if tok is None:
        raise HookError("This model has no tokenizer; pass token ids (a LongTensor or {'input_ids': ...}).")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    side = hm.adapter.padding_side or getattr(tok, "padding_side", "right")
    old = tok.padding_side
    tok.padding_side = side
    try:
        enc = dict(tok(list(texts), return_tensors="pt", padding=True))
    finally:
        tok.padding_side = old
    ids, am = enc["input_ids"], enc["attention_mask"].bool()
    own = [ids[b][am[b]].tolist() for b in range(ids.shape[0])]
    rows = with_bos_policy(tok, texts, own, bos_policy(hm, prepend_bos))
    if rows == own:
        return enc  # the tokenizer's own output already follows the policy (keeps token_type_ids etc.)
    return pad_sequences(hm, [torch.tensor(r, dtype=torch.long) for r in rows])


def prepare(hm, batch, *, prepend_bos=None) -> dict:
    """Turn texts / token ids / a tokenized dict into model inputs on the model's device.

    Texts follow the BOS policy (module docstring); ``prepend_bos`` overrides the wrap's."""
    if isinstance(batch, str):
        batch = [batch]
    if isinstance(batch, (list, tuple)) and batch and all(isinstance(b, str) for b in batch):
        inputs = tokenize_texts(hm, batch, prepend_bos)
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


def pad_rows(rows, pad: int, side: str = "right") -> tuple:
    """``(input_ids, attention_mask)``: token-id rows (lists or 1-D tensors) padded with ``pad`` to
    the longest, on the ``"right"`` or ``"left"``; the mask is 1 on real tokens.

        pad_rows([[5, 6, 7], [8]], pad=0)           # ids [[5, 6, 7], [8, 0, 0]], mask [[1, 1, 1], [1, 0, 0]]
    """
    P = max(len(r) for r in rows)
    ids = torch.full((len(rows), P), int(pad), dtype=torch.long)
    am = torch.zeros(len(rows), P, dtype=torch.long)
    for b, r in enumerate(rows):
        sl = slice(0, len(r)) if side == "right" else slice(P - len(r), P)
        ids[b, sl], am[b, sl] = torch.as_tensor(r, dtype=torch.long), 1
    return ids, am


def pad_token_id(hm) -> int:
    """The id ``hm`` pads with: its tokenizer's, else its config's, else 0."""
    tok = hm.tokenizer
    pad = getattr(tok, "pad_token_id", None) if tok is not None else None
    if pad is None:
        pad = getattr(getattr(hm.model, "config", None), "pad_token_id", None) or 0
    return int(pad)


def pad_sequences(hm, seqs: list) -> dict:
    """Pad 1-D token-id tensors into ``input_ids``/``attention_mask`` on the adapter's padding side."""
    tok = hm.tokenizer
    side = hm.adapter.padding_side or (getattr(tok, "padding_side", None) if tok is not None else None) or "right"
    ids, am = pad_rows(seqs, pad_token_id(hm), side)
    return {"input_ids": ids, "attention_mask": am}


# processor outputs from which the model builds its own multimodal (M-RoPE) positions, from the
# attention mask (Qwen2-VL ``get_rope_index``): 1-D positions of ours would replace them
MODEL_POSITIONS = ("image_grid_thw", "video_grid_thw")


def forward(hm, inputs: dict, **kw):
    inputs = dict(inputs)
    am = inputs.get("attention_mask")
    own = any(inputs.get(k) is not None for k in MODEL_POSITIONS)
    if hm.adapter.position_ids and am is not None and "position_ids" not in inputs and am.dim() == 2 and not own:
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
