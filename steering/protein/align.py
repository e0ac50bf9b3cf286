"""Per-residue annotations -> token positions of an ESM batch, exactly as ``hooks`` selects them.

    batch = encode_sequences(seqs, max_length=model.model.config.max_position_embeddings)
    res = model.run(batch.inputs, [Cache("resid_post.2", "residues", layout="flat")])
    tm = residue_token_mask(masks_of(ds, "TRANSMEM")[:len(seqs)], batch)   # (B, P) bool
    y = tm[res.cache.masks["resid_post.2"]]       # one label per cached residue row, same order

ESM token layout (Lin et al. 2023): ``<cls>`` at position 0, residue ``i`` (0-based) at token
``i + 1``, ``<eos>`` right after the last residue kept, then ``<pad>`` (right padding). A sequence
longer than ``max_length - 2`` residues keeps its first ``max_length - 2`` residues (its EOS is
still appended, as HF tokenizers do): a :class:`TruncationWarning` is issued and the row is
recorded in ``batch.truncated``; ``strict=True`` raises :class:`SequenceTooLongError` instead.
:func:`residue_token_mask` places masks on the positions of the ``"residues"`` span (real tokens
that are neither CLS nor EOS), so padding, CLS and EOS are never selected; it also accepts batches
made by ``model.prepare(sequences)``.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from .alphabet import CLS_ID, EOS_ID, PAD_ID, TOKEN_ID, check_sequence
from .errors import AlignmentError, SequenceTooLongError


class TruncationWarning(UserWarning):
    """Sequences were cut to the model's context."""


@dataclass
class EncodedBatch:
    input_ids: torch.Tensor           # (B, P) long
    attention_mask: torch.Tensor      # (B, P) long
    n_residues: list                  # residues kept per row
    lengths: list                     # original residue counts
    truncated: list = field(default_factory=list)   # row indices that were cut

    @property
    def inputs(self) -> dict:
        """Model inputs (``model.run(batch.inputs)`` / ``hf_model(**batch.inputs)``)."""
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask}

    def residues(self) -> torch.Tensor:
        """(B, P) bool: the residue positions (what hooks' ``"residues"`` span selects)."""
        return residue_positions(self.input_ids, self.attention_mask)


def _token_ids(tokenizer) -> tuple:
    if tokenizer is None:
        return TOKEN_ID, CLS_ID, EOS_ID, PAD_ID
    vocab = tokenizer.get_vocab()
    return vocab, tokenizer.cls_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id


def encode_sequences(sequences, tokenizer=None, *, max_length: int | None = None, strict: bool = False,
                     ids=None) -> EncodedBatch:
    """Tokenize protein sequences as ``<cls> residues <eos> <pad>...``.

    ``tokenizer``: an ESM tokenizer whose vocabulary to use (default: the ESM-2 ids of
    :mod:`steering.protein.alphabet`). ``max_length``: the model's context in tokens including
    CLS and EOS (ESM-2: 1026); ``None`` = no limit. ``ids``: record ids for messages.
    """
    seqs = [sequences] if isinstance(sequences, str) else list(sequences)
    if not seqs:
        raise AlignmentError("No sequences to encode.")
    ids = [f"row{i}" for i in range(len(seqs))] if ids is None else list(ids)
    vocab, cls, eos, pad = _token_ids(tokenizer)
    if max_length is not None and max_length < 3:
        raise AlignmentError(f"max_length={max_length} leaves no room for residues besides <cls> and <eos>.")
    cap = None if max_length is None else max_length - 2
    rows, kept, lengths, cut = [], [], [], []
    for i, (s, rid) in enumerate(zip(seqs, ids)):
        s = check_sequence(s, rid)
        lengths.append(len(s))
        if cap is not None and len(s) > cap:
            if strict:
                raise SequenceTooLongError(rid, len(s), cap)
            s = s[:cap]
            cut.append(i)
        kept.append(len(s))
        rows.append([cls] + [vocab[c] for c in s] + [eos])
    if cut:
        warnings.warn(f"{len(cut)} sequence(s) longer than {cap} residues were truncated to {cap} "
                      f"(rows {cut[:10]}{'...' if len(cut) > 10 else ''}); see batch.truncated.",
                      TruncationWarning, stacklevel=2)
    from hooks.hf_backend import pad_rows

    return EncodedBatch(*pad_rows(rows, pad), kept, lengths, cut)


def residue_positions(input_ids, attention_mask, cls_id: int = CLS_ID, eos_id: int = EOS_ID) -> torch.Tensor:
    """(B, P) bool: real tokens that are neither CLS nor EOS (= ``hooks.adapters.esm.esm_spans``)."""
    am = attention_mask.bool()
    return am & (input_ids != cls_id) & (input_ids != eos_id)


def residue_token_mask(masks, batch, *, allow_truncation: bool = False, cls_id: int = CLS_ID,
                       eos_id: int = EOS_ID) -> torch.Tensor:
    """Place per-residue masks (one 1-D array per row, original sequence length) on token positions.

    ``batch``: an :class:`EncodedBatch` (which knows what it truncated) or a dict with
    ``input_ids``/``attention_mask`` (e.g. from ``model.prepare(sequences)``; pass
    ``allow_truncation=True`` if you truncated it yourself). Returns a (B, P) bool tensor on the
    batch's device. A mask whose length does not match its row raises :class:`AlignmentError`.
    """
    encoded = isinstance(batch, EncodedBatch)
    if encoded:
        ids, am = batch.input_ids, batch.attention_mask
    else:
        ids, am = batch["input_ids"], batch.get("attention_mask")
        am = torch.ones_like(ids) if am is None else am
    masks = list(masks)
    if len(masks) != ids.shape[0]:
        raise AlignmentError(f"{len(masks)} per-residue masks for a batch of {ids.shape[0]} rows.")
    res = residue_positions(ids, am, cls_id, eos_id).cpu()
    out = torch.zeros(ids.shape, dtype=torch.bool)
    for b, m in enumerate(masks):
        m = torch.as_tensor(np.asarray(m, dtype=bool))
        pos = res[b].nonzero().squeeze(-1)
        if encoded and len(m) != batch.lengths[b]:
            raise AlignmentError(f"Row {b}: mask of {len(m)} residues for a sequence of {batch.lengths[b]}.")
        if len(m) < len(pos) or (len(m) > len(pos) and not encoded and not allow_truncation):
            raise AlignmentError(
                f"Row {b}: mask covers {len(m)} residues but the batch row has {len(pos)} residue tokens. "
                "Either the sequence was tokenized differently (e.g. lower-case letters merged into one <unk>; "
                "use encode_sequences, which upper-cases and checks), or it was truncated on purpose: then "
                "pass allow_truncation=True.")
        out[b, pos] = m[:len(pos)]
    return out.to(ids.device)


def dataset_token_masks(ds_rows, tracks, batch) -> dict:
    """``{track: (B, P) bool}`` for rows of a protein dataset (a slice ``ds[i:j]`` or a list of dicts)."""
    if isinstance(ds_rows, dict):
        cols = ds_rows
    else:
        cols = {f"mask_{t}": [r[f"mask_{t}"] for r in ds_rows] for t in tracks}
    return {t: residue_token_mask(cols[f"mask_{t}"], batch) for t in tracks}
