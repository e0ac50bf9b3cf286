"""A synthetic protein world with planted, per-residue annotated features (ground truth for SAEs).

    ds = make_toy_world(5000, seed=0)        # same Dataset schema as read_proteins(...)
    ds[0]["sequence"], ds[0]["features"]     # planted spans: ZN_FING / TRANSMEM / MOTIF
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
  K/R before it (positive-inside rule). Only the core is annotated.
* **A nuclear localisation signal** (``MOTIF``): a monopartite, SV40-like run of 5-7 K/R.

Ground truth is clean by construction: a sequence is redrawn when background residues happen to
form a PS00028 match, a 19-residue window with mean hydropathy >= 1.6, or a run of >= 4 K/R
outside the planted spans. Seeded: ``make_toy_world(n, seed)`` is a pure function.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import numpy as np

from .alphabet import KYTE_DOOLITTLE, STANDARD_AA, background_probs
from .schema import TRACKS, Feature, ProteinRecord, to_dataset

PS00028 = re.compile(r"(?=(C.{2,4}C.{3}[LIVMFYWC].{8}H.{3,5}H))")
_FINGER = re.compile(r"..(C).{2,4}(C).{3}([LIVMFYWC]).{8}(H).{3,5}(H)")
PLANTED = ("ZN_FING", "TRANSMEM", "MOTIF")
AA = np.array(list(STANDARD_AA))
BG = np.array([background_probs()[a] for a in STANDARD_AA])
BG_NO_CH = np.where(np.isin(AA, ["C", "H"]), 0.0, BG)
BG_NO_CH /= BG_NO_CH.sum()
TM_COMPOSITION = {"L": 0.28, "I": 0.15, "V": 0.15, "F": 0.10, "A": 0.12, "M": 0.05, "G": 0.05, "W": 0.03,
                  "Y": 0.02, "T": 0.03, "S": 0.02}
KD = np.array([KYTE_DOOLITTLE[a] for a in STANDARD_AA])


@dataclass(frozen=True)
class WorldConfig:
    min_len: int = 64
    max_len: int = 96
    p_zinc_finger: float = 0.45
    p_tandem: float = 0.3          # a second finger, given one
    p_transmembrane: float = 0.45
    p_nls: float = 0.45
    consensus: float = 0.6         # finger positions outside the skeleton that take the consensus residue


def _letters(rng, probs: dict, n: int) -> str:
    keys = list(probs)
    p = np.array([probs[k] for k in keys], float)
    return "".join(rng.choice(keys, size=n, p=p / p.sum()))


def _bg(rng, n: int, no_ch: bool = False) -> str:
    return "".join(rng.choice(AA, size=n, p=BG_NO_CH if no_ch else BG))


def _cons(rng, consensus: str, p: float) -> str:
    keep = rng.random(len(consensus)) < p
    alt = rng.choice(AA, size=len(consensus), p=BG_NO_CH)
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


def nls(rng) -> str:
    return _letters(rng, {"K": 0.65, "R": 0.35}, int(rng.integers(5, 8)))


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
        pre, core = _letters(rng, {"K": 0.5, "R": 0.5}, 2), transmembrane_core(rng)
        segs.append((pre + core, [("TRANSMEM", 2, 2 + len(core), "Helical")]))
    if rng.random() < cfg.p_nls:
        s = nls(rng)
        segs.append((s, [("MOTIF", 0, len(s), "Nuclear localization signal")]))
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
    for m in re.finditer(r"[KR]{4,}", seq):  # basic runs: exactly a planted NLS, nothing more
        if not any(f.type == "MOTIF" and (f.start, f.end) == m.span() for f in feats):
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


def config_dict(cfg: WorldConfig | None = None) -> dict:
    return asdict(cfg or WorldConfig())
