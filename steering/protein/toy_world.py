"""A synthetic protein world with planted, per-residue annotated features (ground truth for SAEs).

    ds = make_toy_world(5000, seed=0)        # same Dataset schema as read_proteins(...)
    ds[0]["sequence"], ds[0]["features"]     # planted spans: ZN_FING / TRANSMEM / COILED
    find_ps00028(ds[0]["sequence"])          # PROSITE PS00028 matches, [(start, end), ...]

Every sequence (64-96 residues, starts with M) is drawn from the UniProtKB/Swiss-Prot amino-acid
composition, then gets, independently, with the probabilities of :class:`WorldConfig`:

* **C2H2 zinc finger(s)** (``ZN_FING``, one or two in tandem joined by the ``TGEKP`` linker),
  each matching PROSITE PS00028 ``C-x(2,4)-C-x(3)-[LIVMFYWC]-x(8)-H-x(3,5)-H``. The skeleton
  (C, C, the hydrophobic, H, H) is always present; every other position takes the Krizek et al.
  (1991) consensus ``YKCPECGKSFSQKSDLVKHQRTH`` with probability ``consensus`` and a background
  residue (never C/H) otherwise, so an MLM can recover the skeleton from context. Annotated span:
  two residues before the first C through the last H (UniProt's C2H2-type ZN_FING convention).
* **A transmembrane helix** (``TRANSMEM``): an 18-22 residue core rich in L/I/V/F/A/M whose mean
  Kyte & Doolittle (1982) hydropathy is >= 1.6 (the usual 19-residue TM threshold), with
  two K/R before it (positive-inside rule) and two D/E/Q/N after it (a polar exit, so both ends
  are sharp). Only the core is annotated.
* **A coiled coil** (``COILED``): 3-4 leucine-zipper heptads ``abcdefg`` (Lupas 1996; GCN4-like):
  ``a`` I/V, ``d`` L, ``e`` E/Q/K, ``g`` K/E/R, ``b c f`` polar or charged.

Ground truth is clean by construction: a sequence is redrawn when background residues happen to
form a PS00028 match or a 19-residue window with mean hydropathy >= 1.6 outside the planted
spans. Seeded: ``make_toy_world(n, seed)`` is a pure function.

Design notes: a first version planted a 5-7 residue K/R nuclear localisation signal instead of
the coiled coil; a small model learned to predict it (masked accuracy 0.66 vs 0.65 ideal) but a
linear probe on its residues reached only F1 0.58 (a short run is a conjunction "K/R and K/R
neighbours" that unmasked positions need not represent), so it was replaced by a longer
composition- and period-defined segment that, like the TM helix, is readable from context.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import numpy as np

from .alphabet import KYTE_DOOLITTLE, STANDARD_AA, background_probs
from .schema import TRACKS, Feature, ProteinRecord, to_dataset

PS00028 = re.compile(r"(?=(C.{2,4}C.{3}[LIVMFYWC].{8}H.{3,5}H))")
_FINGER = re.compile(r"..(C).{2,4}(C).{3}([LIVMFYWC]).{8}(H).{3,5}(H)")
PLANTED = ("ZN_FING", "TRANSMEM", "COILED")
AA = np.array(list(STANDARD_AA))
BG = np.array([background_probs()[a] for a in STANDARD_AA])
BG_NO_CH = np.where(np.isin(AA, ["C", "H"]), 0.0, BG)
BG_NO_CH /= BG_NO_CH.sum()
TM_COMPOSITION = {"L": 0.30, "I": 0.17, "V": 0.17, "F": 0.11, "A": 0.10, "M": 0.05, "G": 0.03, "W": 0.03,
                  "Y": 0.02, "C": 0.02}
TM_EXIT = {"D": 0.3, "E": 0.3, "Q": 0.2, "N": 0.2}


@dataclass(frozen=True)
class WorldConfig:
    """Feature probabilities are per protein, drawn independently; when the drawn segments do not fit
    the drawn length, segments are dropped (in random order) until they do."""

    min_len: int = 64
    max_len: int = 96
    p_zinc_finger: float = 0.45
    p_tandem: float = 0.3          # a second finger, given one
    p_transmembrane: float = 0.45
    p_coiled_coil: float = 0.45
    consensus: float = 0.6         # finger positions outside the skeleton that take the consensus residue


_CDF: dict = {}


def _letters(rng, probs: dict, n: int) -> str:
    """``n`` letters drawn from ``probs`` (inverse-CDF sampling; the CDF is cached per distribution)."""
    key = tuple(probs.items())
    if key not in _CDF:
        p = np.array(list(probs.values()), float)
        _CDF[key] = (np.array(list(probs)), np.cumsum(p / p.sum()))
    letters, cdf = _CDF[key]
    return "".join(letters[np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), len(cdf) - 1)])


_BG, _BG_NO_CH = dict(zip(STANDARD_AA, BG)), dict(zip(STANDARD_AA, BG_NO_CH))


def _bg(rng, n: int, no_ch: bool = False) -> str:
    return _letters(rng, _BG_NO_CH if no_ch else _BG, n)


def _cons(rng, consensus: str, p: float) -> str:
    keep = rng.random(len(consensus)) < p
    alt = _bg(rng, len(consensus), no_ch=True)
    return "".join(c if k else a for c, k, a in zip(consensus, keep, alt))


def zinc_finger(rng, p: float) -> str:
    """One C2H2 finger: ``xx C x(2|4) C x3 Φ x8 H x(3|4|5) H`` around the consensus, matching PS00028."""
    a = 2 if rng.random() < 0.75 else 4
    b = int(rng.choice([3, 4, 5], p=[0.75, 0.15, 0.10]))
    phi = _letters(rng, {"F": 0.7, "Y": 0.1, "L": 0.1, "I": 0.05, "V": 0.05}, 1)
    x8 = _cons(rng, "SQKSD", p) + ("L" if rng.random() < 0.9 else _bg(rng, 1, True)) + _cons(rng, "VK", p)
    return (_cons(rng, "YK", p) + "C" + _cons(rng, {2: "PE", 4: "PEKE"}[a], p) + "C" + _cons(rng, "GKS", p) + phi
            + x8 + "H" + _cons(rng, {3: "QRT", 4: "QRKT", 5: "QRSKT"}[b], p) + "H")


def transmembrane_core(rng) -> str:
    while True:
        core = _letters(rng, TM_COMPOSITION, int(rng.integers(18, 23)))
        if np.mean([KYTE_DOOLITTLE[c] for c in core]) >= 1.6:
            return core


HEPTAD = {
    "a": {"I": 0.4, "V": 0.4, "L": 0.1, "A": 0.1},
    "b": {"E": 0.25, "K": 0.25, "A": 0.15, "Q": 0.1, "R": 0.1, "S": 0.1, "D": 0.05},
    "c": {"E": 0.25, "K": 0.25, "A": 0.15, "Q": 0.1, "R": 0.1, "S": 0.1, "D": 0.05},
    "d": {"L": 0.9, "M": 0.05, "I": 0.05},
    "e": {"E": 0.6, "Q": 0.2, "K": 0.2},
    "f": {"E": 0.25, "K": 0.25, "A": 0.15, "Q": 0.1, "R": 0.1, "S": 0.1, "D": 0.05},
    "g": {"K": 0.6, "E": 0.2, "R": 0.2},
}


def coiled_coil(rng) -> str:
    """3-4 heptads ``abcdefg`` starting at ``a``."""
    n = int(rng.integers(3, 5))
    cols = [_letters(rng, HEPTAD[p], n) for p in "abcdefg"]
    return "".join(cols[j][i] for i in range(n) for j in range(7))


def _segments(rng, cfg: WorldConfig) -> list:
    """Planted segments as ``(text, [(feature type, start, end, note) relative to the text])``."""
    segs = []
    if rng.random() < cfg.p_zinc_finger:
        f1 = zinc_finger(rng, cfg.consensus)
        if rng.random() < cfg.p_tandem:
            link, f2 = _cons(rng, "TGEKP", cfg.consensus), zinc_finger(rng, cfg.consensus)
            segs.append((f1 + link + f2, [("ZN_FING", 0, len(f1), "C2H2-type 1"),
                                          ("ZN_FING", len(f1) + 5, len(f1) + 5 + len(f2), "C2H2-type 2")]))
        else:
            segs.append((f1, [("ZN_FING", 0, len(f1), "C2H2-type")]))
    if rng.random() < cfg.p_transmembrane:
        pre, core, post = _letters(rng, {"K": 0.5, "R": 0.5}, 2), transmembrane_core(rng), _letters(rng, TM_EXIT, 2)
        segs.append((pre + core + post, [("TRANSMEM", 2, 2 + len(core), "Helical")]))
    if rng.random() < cfg.p_coiled_coil:
        s = coiled_coil(rng)
        segs.append((s, [("COILED", 0, len(s), f"{len(s) // 7} heptads")]))
    return segs


def _spurious(seq: str, feats: list) -> bool:
    """Feature-like patterns that background residues formed outside the planted spans."""
    def inside(a, b, kind):  # noqa: E306
        return any(f.type == kind and f.start <= a and b <= f.end for f in feats)

    def overlaps(a, b, kind):
        return any(f.type == kind and f.start < b and a < f.end for f in feats)

    for m in PS00028.finditer(seq):
        if not inside(m.start(), m.start() + len(m.group(1)), "ZN_FING"):
            return True
    kd = np.array([KYTE_DOOLITTLE[c] for c in seq])
    win = np.convolve(kd, np.ones(19) / 19, mode="valid")
    for i in np.nonzero(win >= 1.6)[0]:
        if not overlaps(i, i + 19, "TRANSMEM"):
            return True
    return False


def sample_protein(rng, cfg: WorldConfig, rid: str) -> ProteinRecord:
    """One toy protein (redrawn until its ground truth is clean)."""
    while True:
        L = int(rng.integers(cfg.min_len, cfg.max_len + 1))
        segs = _segments(rng, cfg)
        rng.shuffle(segs)
        while segs and sum(len(s) for s, _ in segs) + len(segs) + 1 > L - 1:
            segs.pop()
        free = L - 1 - sum(len(s) for s, _ in segs)
        cuts = np.sort(rng.choice(np.arange(1, free), size=len(segs), replace=False)) if segs else []
        parts, feats, pos, prev = ["M"], [], 1, 0
        for (text, spans), cut in zip(segs, cuts):
            gap = _bg(rng, int(cut - prev))
            parts.append(gap)
            pos += len(gap)
            feats += [Feature(t, pos + a, pos + b, note) for t, a, b, note in spans]
            parts.append(text)
            pos += len(text)
            prev = cut
        parts.append(_bg(rng, free - int(prev)))
        seq = "".join(parts)
        assert len(seq) == L
        if not _spurious(seq, feats):
            desc = " ".join(sorted(f.type for f in feats)) or "background"
            return ProteinRecord(rid, seq, desc, "toy", sorted(feats, key=lambda f: f.start))


def toy_records(n: int, seed: int = 0, config: WorldConfig | None = None) -> list:
    cfg = config or WorldConfig()
    rng = np.random.default_rng(seed)
    return [sample_protein(rng, cfg, f"toy{seed}_{i:05d}") for i in range(n)]


def make_toy_world(n: int = 5000, seed: int = 0, config: WorldConfig | None = None, tracks=TRACKS):
    """``n`` toy proteins as a protein Dataset (schema of :mod:`steering.protein.schema`)."""
    ds = to_dataset(toy_records(n, seed, config), tracks)
    return ds


def find_ps00028(seq: str) -> list:
    """PROSITE PS00028 (C2H2 zinc finger) matches in ``seq``, overlapping ones included."""
    return [(m.start(), m.start() + len(m.group(1))) for m in PS00028.finditer(seq)]


def skeleton_mask(seq: str, features) -> np.ndarray:
    """Residues of the C2H2 skeleton (C, C, hydrophobic, H, H) of each planted finger."""
    out = np.zeros(len(seq), dtype=bool)
    for f in features:
        ftype, start, end = (f.type, f.start, f.end) if isinstance(f, Feature) else (f["type"], f["start"], f["end"])
        if ftype == "ZN_FING":
            m = _FINGER.fullmatch(seq[start:end])
            if m:
                for g in range(1, 6):
                    out[start + m.start(g)] = True
    return out


def heptad_d_mask(seq: str, features) -> np.ndarray:
    """The ``d`` positions (4th of each heptad) of every planted coiled coil."""
    out = np.zeros(len(seq), dtype=bool)
    for f in features:
        ftype, start, end = (f.type, f.start, f.end) if isinstance(f, Feature) else (f["type"], f["start"], f["end"])
        if ftype == "COILED":
            out[start + 3:end:7] = True
    return out


def config_dict(cfg: WorldConfig | None = None) -> dict:
    return asdict(cfg or WorldConfig())
