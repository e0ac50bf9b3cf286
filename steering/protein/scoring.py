"""Scores for generated proteins: PROSITE motifs, TM-like segments, composition, pseudo-perplexity.

    from steering.protein.scoring import prosite_to_regex, find_motif, PS00028, score_sequences
    rx = prosite_to_regex(PS00028)         # C-x(2,4)-C-x(3)-[LIVMFYWC]-x(8)-H-x(3,5)-H
    find_motif("AACPECGKSFSQKSDLVKHQRTHAA", rx)            # [(2, 23)]
    tm_segments("M" + "L" * 25 + "K" * 10)                  # [(1, 26)]
    s = score_sequences(seqs, model=hm)    # per-sequence scores + summary (motif/TM rates, PPPL)
    compare_rates(s_steered, s_plain)      # Fisher's exact test on the motif rate

* PROSITE patterns (Sigrist et al. 2013, PROSITE user manual §IV.E): elements joined by ``-``;
  ``x`` any residue; ``[ABC]`` one of; ``{ABC}`` none of; ``e(n)`` / ``e(n,m)`` repeats; ``<`` /
  ``>`` anchor at the N / C terminus (also inside brackets: ``[G>]``). Converted to a Python
  regex searched with a lookahead, so overlapping matches count. Built in: PS00028, the C2H2
  zinc finger ``C-x(2,4)-C-x(3)-[LIVMFYWC]-x(8)-H-x(3,5)-H``; any pattern can be passed.
* Transmembrane-like segments: windows of ``window`` residues (19) whose mean Kyte & Doolittle
  (1982) hydropathy is ``>= threshold`` (1.6), merged into segments.
* Composition: fraction of each standard amino acid.
* Pseudo-perplexity (Salazar et al. 2020, "Masked language model scoring"; Wang & Cho 2019):
  ``exp(-mean_i log p(x_i | x_without_i))``, each residue masked in turn, all masked copies of
  all sequences batched; under the model as given (pass the unsteered model).
"""
from __future__ import annotations

import re
from typing import Optional, Sequence

import numpy as np
import torch

from .alphabet import KYTE_DOOLITTLE, MASK_ID, STANDARD_AA
from .errors import ProteinDataError

PS00028 = "C-x(2,4)-C-x(3)-[LIVMFYWC]-x(8)-H-x(3,5)-H"
_ELEMENT = re.compile(r"^(<)?(x|[A-Z]|\[[A-Z>]+\]|\{[A-Z]+\})(?:\((\d+)(?:,(\d+))?\))?(>)?$")


class PatternError(ProteinDataError):
    """A PROSITE pattern that does not parse."""


def prosite_to_regex(pattern: str) -> re.Pattern:
    """Compile a PROSITE pattern into a regex whose group 1 is the match (overlaps allowed)."""
    p = pattern.strip().rstrip(".").replace(" ", "")
    if not p:
        raise PatternError("Empty PROSITE pattern.")
    elems = p.split("-")
    parts = []
    for i, e in enumerate(elems):
        m = _ELEMENT.match(e)
        if not m:
            raise PatternError(f"PROSITE element {i + 1} ({e!r}) of {pattern!r} does not parse; elements look like "
                               "C, x, [LIVM], {P}, x(2,4), <M or H> and are joined by '-'.")
        n_anchor, core, lo, hi, c_anchor = m.groups()
        if (n_anchor and i != 0) or (c_anchor and i != len(elems) - 1):
            raise PatternError(f"'<' may only start and '>' only end a PROSITE pattern: {pattern!r}.")
        if core == "x":
            rx = "."
        elif core.startswith("["):
            letters = core[1:-1]
            rx = f"[{letters.replace('>', '')}]"
            if ">" in letters:
                if i != len(elems) - 1:
                    raise PatternError(f"'>' inside brackets must be in the last element: {pattern!r}.")
                rx = f"(?:{rx}|$)" if letters.replace(">", "") else "$"
        elif core.startswith("{"):
            rx = f"[^{core[1:-1]}]"
        else:
            rx = core
        if lo is not None:
            rx = f"(?:{rx}){{{lo}}}" if hi is None else f"(?:{rx}){{{lo},{hi}}}"
        parts.append(("^" if n_anchor else "") + rx + ("$" if c_anchor else ""))
    return re.compile("(?=(" + "".join(parts) + "))")


def find_motif(seq: str, regex) -> list:
    """``[(start, end)]`` of every (overlapping) match of a compiled pattern in ``seq``."""
    rx = prosite_to_regex(regex) if isinstance(regex, str) else regex
    return [(m.start(), m.start() + len(m.group(1))) for m in rx.finditer(seq)]


def hydropathy_windows(seq: str, window: int = 19) -> np.ndarray:
    """Mean Kyte-Doolittle hydropathy of every ``window``-residue window (non-standard letters: 0)."""
    kd = np.array([KYTE_DOOLITTLE.get(c, 0.0) for c in seq])
    if len(kd) < window:
        return np.zeros(0)
    return np.convolve(kd, np.ones(window) / window, mode="valid")


def tm_segments(seq: str, window: int = 19, threshold: float = 1.6) -> list:
    """``[(start, end)]``: unions of windows with mean hydropathy ``>= threshold``."""
    hits = np.flatnonzero(hydropathy_windows(seq, window) >= threshold)
    segs = []
    for i in hits.tolist():
        if segs and i <= segs[-1][1]:
            segs[-1][1] = i + window
        else:
            segs.append([int(i), int(i + window)])
    return [tuple(s) for s in segs]


def composition(seqs: Sequence[str]) -> dict:
    """Fraction of each standard amino acid over all residues of ``seqs``."""
    text = "".join(seqs)
    n = max(len(text), 1)
    return {a: text.count(a) / n for a in STANDARD_AA}


@torch.no_grad()
def pseudo_perplexity(model, seqs: Sequence[str], *, batch_size: int = 512, interventions=()) -> np.ndarray:
    """Pseudo-perplexity of each sequence under ``model`` (every residue masked in turn, batched)."""
    from .align import encode_sequences

    seqs = list(seqs)
    if not seqs:
        return np.zeros(0)
    enc = encode_sequences(seqs)
    ids, am = enc.input_ids, enc.attention_mask
    row = torch.repeat_interleave(torch.arange(len(seqs)), torch.tensor([len(s) for s in seqs]))
    pos = torch.cat([torch.arange(1, len(s) + 1) for s in seqs])
    nll = torch.zeros(len(row), dtype=torch.float64)
    for i in range(0, len(row), batch_size):
        r, p = row[i:i + batch_size], pos[i:i + batch_size]
        x = ids[r].clone()
        true = x[torch.arange(len(r)), p]
        x[torch.arange(len(r)), p] = MASK_ID
        logits = model.run({"input_ids": x, "attention_mask": am[r]}, interventions).logits.float().cpu()
        lp = torch.log_softmax(logits[torch.arange(len(r)), p], -1)
        nll[i:i + batch_size] = -lp[torch.arange(len(r)), true].double()
    total = torch.zeros(len(seqs), dtype=torch.float64).index_add_(0, row, nll)
    return torch.exp(total / torch.tensor([len(s) for s in seqs], dtype=torch.float64)).numpy()


def score_sequences(seqs: Sequence[str], *, pattern: str = PS00028, model=None, tm_window: int = 19,
                    tm_threshold: float = 1.6, batch_size: int = 512) -> dict:
    """Per-sequence scores and their summary. ``model``: also pseudo-perplexity under it."""
    rx = prosite_to_regex(pattern)
    seqs = list(seqs)
    motifs = [find_motif(s, rx) for s in seqs]
    tms = [tm_segments(s, tm_window, tm_threshold) for s in seqs]
    pppl = pseudo_perplexity(model, seqs, batch_size=batch_size) if model is not None else None
    per = [{"sequence": s, "motifs": m, "tm_segments": t, **({"pppl": float(pppl[i])} if pppl is not None else {})}
           for i, (s, m, t) in enumerate(zip(seqs, motifs, tms))]
    n = len(seqs)
    summary = {"n": n, "pattern": pattern, "motif_count": sum(bool(m) for m in motifs),
               "motif_rate": sum(bool(m) for m in motifs) / n if n else 0.0,
               "tm_count": sum(bool(t) for t in tms), "tm_rate": sum(bool(t) for t in tms) / n if n else 0.0,
               "mean_length": float(np.mean([len(s) for s in seqs])) if n else 0.0,
               "composition": composition(seqs)}
    if pppl is not None:
        summary.update({"pppl_mean": float(np.mean(pppl)), "pppl_median": float(np.median(pppl))})
    return {"summary": summary, "sequences": per}


def compare_rates(k1: int, n1: int, k0: int, n0: int) -> dict:
    """Fisher's exact test of a rate ``k1/n1`` (steered) against ``k0/n0`` (unsteered): the
    one-sided p-value for "steered is higher" (the hypothesis stated before looking) and the
    two-sided one, with the sample odds ratio."""
    from scipy.stats import fisher_exact

    for k, n in ((k1, n1), (k0, n0)):
        if n < 1 or not 0 <= k <= n:
            raise ProteinDataError(f"A rate needs 0 <= k <= n and n >= 1, got k={k}, n={n}.")
    table = [[k1, n1 - k1], [k0, n0 - k0]]
    odds, p_greater = fisher_exact(table, alternative="greater")
    _, p_two = fisher_exact(table, alternative="two-sided")
    return {"steered_rate": k1 / n1, "baseline_rate": k0 / n0, "p_value": float(p_greater),
            "p_two_sided": float(p_two), "odds_ratio": float(odds), "table": table}


def write_fasta(path, seqs: Sequence[str], ids: Optional[Sequence[str]] = None, descriptions=None):
    """Write a FASTA file atomically (60 residues per line)."""
    from hooks.io import write_text_atomic

    ids = list(ids) if ids is not None else [f"seq{i}" for i in range(len(seqs))]
    lines = []
    for i, (rid, s) in enumerate(zip(ids, seqs)):
        d = f" {descriptions[i]}" if descriptions is not None else ""
        lines.append(f">{rid}{d}")
        lines += [s[j:j + 60] for j in range(0, len(s), 60)] or [""]
    return write_text_atomic(path, "\n".join(lines) + "\n")
