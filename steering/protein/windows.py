"""Sliding windows: every residue of a long protein embedded inside the model's context.

    from steering.protein.windows import window_spans, owned_residues, window_sequences
    spans = window_spans(300, width=126, stride=63)     # [(0, 126), (63, 189), (126, 252), (174, 300)]
    own = owned_residues(300, spans)                    # per window: the residues it scores
    pieces = window_sequences(["M" * 300], width=126, stride=63)   # SAE training text

A protein of ``L`` residues longer than the model's ``width`` (= context − CLS − EOS; 126 for
the toy model, 1022 for ESM-2) is cut into windows of ``width`` residues every ``stride``
residues, the last one aligned to the protein's end. Each residue is scored from exactly one
window: the one in which it sits most centrally (largest distance to the window's nearer edge;
ties go to the earlier window) — the usual overlap-and-keep-the-centre scheme for long
proteins in protein-LM embedding pipelines (e.g. the ESM repository's
``scripts/extract.py`` truncates instead; ProtTrans/TMbed embed windows and stitch them).
Proteins that fit get one window, so their embeddings are exactly the unwindowed ones.
"""
from __future__ import annotations

import numpy as np

from .errors import ProteinDataError


def window_spans(length: int, width: int, stride: int | None = None) -> list:
    """``[(start, end)]`` windows of ``width`` residues every ``stride`` (default ``width // 2``)
    covering ``range(length)``; the last window ends at ``length``."""
    if width < 1:
        raise ProteinDataError(f"window width must be >= 1 residue, got {width}.")
    stride = max(1, width // 2) if stride is None else int(stride)
    if not 1 <= stride <= width:
        raise ProteinDataError(f"window stride must be in 1..width ({width}), got {stride}.")
    if length <= width:
        return [(0, int(length))]
    starts = list(range(0, length - width, stride)) + [length - width]
    return [(int(s), int(s) + width) for s in starts]


def owned_residues(length: int, spans: list) -> list:
    """Per window, the ``(lo, hi)`` residue range (protein coordinates) it scores: each residue
    goes to the window where it is most central. The ranges tile ``range(length)`` exactly."""
    pos = np.arange(length)
    depth = np.stack([np.where((pos >= a) & (pos < e), np.minimum(pos - a, e - 1 - pos), -1) for a, e in spans])
    owner = depth.argmax(0)            # first maximum: ties go to the earlier window
    out = []
    for w in range(len(spans)):
        idx = np.flatnonzero(owner == w)
        out.append((int(idx[0]), int(idx[-1]) + 1) if len(idx) else (spans[w][0], spans[w][0]))
    return out


def window_sequences(sequences, width: int, stride: int | None = None) -> list:
    """Every window of every sequence (for SAE training: each residue seen inside the context;
    residues in overlaps are seen once per window that holds them)."""
    return [s[a:e] for s in sequences for a, e in window_spans(len(s), width, stride)]
