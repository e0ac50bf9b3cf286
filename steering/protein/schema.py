"""The protein Dataset schema shared by real data (``data.py``) and the toy world (``toy_world.py``).

    recs = [ProteinRecord("P1", "MKTAYIAK", features=[Feature("TRANSMEM", 2, 6)])]
    ds = to_dataset(recs)                 # datasets.Dataset, one row per protein
    ds[0]["mask_TRANSMEM"]                # [False, False, True, True, True, True, False, False]
    save_dataset(ds, "prot.parquet"); ds = load_dataset_file("prot.parquet")

Columns (every dataset has all of them, so statistics run unchanged on toy and real data):

* ``id`` (str), ``description`` (str), ``source`` (str: fasta/tmbed/uniprot-swiss/uniprot-xml/
  uniprot-json/uniprot-tsv/toy), ``sequence`` (str, upper-case one-letter), ``length`` (int32)
* ``tmbed_labels`` (str): TMbed's raw per-residue classes (empty when the source has none)
* ``features``: list of ``{type, start, end, note}`` spans, 0-based half-open ``[start, end)`` in
  residue coordinates (UniProt's 1-based inclusive ``5..25`` is ``start=4, end=25``); every feature
  type of the source is kept here, so per-domain recall is computable for any of them
* ``mask_<TRACK>`` (list[bool], one per residue) for each track of :data:`TRACKS` (plus any extra
  tracks asked for): residue ``i`` is ``True`` when a feature of that type covers it (multi-label:
  a residue may be in several tracks). TMbed classes give ``TMBED_H`` (``H``/``h``, either
  orientation), ``TMBED_B`` (``B``/``b``), ``TMBED_S``, ``TMBED_1`` (inside), ``TMBED_2``
  (outside), ``TMBED_U`` (unknown); their runs of ``H``/``h``/``B``/``b`` also become ``TRANSMEM``
  features and runs of ``S`` ``SIGNAL`` features.

Feature types use UniProt flat-file keys (TRANSMEM, ZN_FING, BINDING, SIGNAL, DOMAIN, MOTIF, ...);
XML and REST names are mapped onto them (:data:`XML_TYPES`, :data:`REST_TYPES`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import LabelLengthError, ProteinDataError, ProteinFormatError

TRACKS = ("TRANSMEM", "ZN_FING", "BINDING", "SIGNAL", "DOMAIN", "MOTIF", "COILED",
          "TMBED_H", "TMBED_B", "TMBED_S", "TMBED_1", "TMBED_2", "TMBED_U")
TMBED_CLASSES = {"H": "TMBED_H", "h": "TMBED_H", "B": "TMBED_B", "b": "TMBED_B", "S": "TMBED_S",
                 "1": "TMBED_1", "2": "TMBED_2", "U": "TMBED_U"}
MASK_PREFIX = "mask_"

# UniProt XML <feature type="..."> and REST JSON/TSV names -> flat-file keys
XML_TYPES = {
    "transmembrane region": "TRANSMEM", "zinc finger region": "ZN_FING", "binding site": "BINDING",
    "signal peptide": "SIGNAL", "domain": "DOMAIN", "short sequence motif": "MOTIF", "coiled-coil region": "COILED",
    "intramembrane region": "INTRAMEM", "topological domain": "TOPO_DOM", "DNA-binding region": "DNA_BIND",
    "nucleotide phosphate-binding region": "NP_BIND", "calcium-binding region": "CA_BIND",
    "metal ion-binding site": "METAL", "active site": "ACT_SITE", "site": "SITE", "region of interest": "REGION",
    "compositionally biased region": "COMPBIAS", "repeat": "REPEAT", "transit peptide": "TRANSIT",
    "propeptide": "PROPEP", "peptide": "PEPTIDE", "chain": "CHAIN", "initiator methionine": "INIT_MET",
    "glycosylation site": "CARBOHYD", "disulfide bond": "DISULFID", "lipid moiety-binding region": "LIPID",
    "modified residue": "MOD_RES", "cross-link": "CROSSLNK", "helix": "HELIX", "strand": "STRAND", "turn": "TURN",
    "sequence variant": "VARIANT", "splice variant": "VAR_SEQ", "mutagenesis site": "MUTAGEN",
    "sequence conflict": "CONFLICT", "non-terminal residue": "NON_TER", "non-consecutive residues": "NON_CONS",
    "non-standard amino acid": "NON_STD", "unsure residue": "UNSURE",
}
REST_TYPES = {
    "Transmembrane": "TRANSMEM", "Zinc finger": "ZN_FING", "Binding site": "BINDING", "Signal": "SIGNAL",
    "Signal peptide": "SIGNAL", "Domain": "DOMAIN", "Motif": "MOTIF", "Coiled coil": "COILED",
    "Intramembrane": "INTRAMEM", "Topological domain": "TOPO_DOM", "DNA binding": "DNA_BIND",
    "Active site": "ACT_SITE", "Site": "SITE", "Region": "REGION", "Compositional bias": "COMPBIAS",
    "Repeat": "REPEAT", "Transit peptide": "TRANSIT", "Propeptide": "PROPEP", "Peptide": "PEPTIDE",
    "Chain": "CHAIN", "Initiator methionine": "INIT_MET", "Glycosylation": "CARBOHYD", "Disulfide bond": "DISULFID",
    "Lipidation": "LIPID", "Modified residue": "MOD_RES", "Cross-link": "CROSSLNK", "Helix": "HELIX",
    "Beta strand": "STRAND", "Turn": "TURN", "Natural variant": "VARIANT", "Alternative sequence": "VAR_SEQ",
    "Mutagenesis": "MUTAGEN", "Sequence conflict": "CONFLICT", "Non-terminal residue": "NON_TER",
}


@dataclass
class Feature:
    """One annotated span, 0-based half-open residue coordinates."""
    type: str
    start: int
    end: int
    note: str = ""


@dataclass
class ProteinRecord:
    id: str
    sequence: str
    description: str = ""
    source: str = ""
    features: list = field(default_factory=list)
    tmbed_labels: str = ""


def tmbed_features(labels: str) -> list:
    """Runs of TM helix/strand -> TRANSMEM features, runs of ``S`` -> SIGNAL (note keeps the class letter)."""
    out, i, n = [], 0, len(labels)
    while i < n:
        c, j = labels[i], i
        while j < n and labels[j] == c:
            j += 1
        if c in "HhBb":
            out.append(Feature("TRANSMEM", i, j, f"{'helix' if c in 'Hh' else 'beta strand'} ({c})"))
        elif c == "S":
            out.append(Feature("SIGNAL", i, j, "signal peptide (S)"))
        i = j
    return out


def residue_masks(rec: ProteinRecord, tracks=TRACKS) -> dict:
    """``{track: bool array (L,)}`` for one record (features clipped to the sequence)."""
    L = len(rec.sequence)
    masks = {t: np.zeros(L, dtype=bool) for t in tracks}
    for f in rec.features:
        if f.type in masks:
            masks[f.type][max(f.start, 0):min(f.end, L)] = True
    if rec.tmbed_labels:
        if len(rec.tmbed_labels) != L:
            raise LabelLengthError(rec.id, len(rec.tmbed_labels), L)
        lab = np.frombuffer(rec.tmbed_labels.encode(), dtype=np.uint8)
        for ch, track in TMBED_CLASSES.items():
            if track in masks:
                masks[track] |= lab == ord(ch)
    return masks


def to_dataset(records, tracks=TRACKS):
    """Build the :mod:`datasets` Dataset of ``records`` (see the module docstring for the schema)."""
    import pyarrow as pa

    records = list(records)
    tracks = tuple(dict.fromkeys(tuple(TRACKS) + tuple(tracks)))
    if not records:
        raise ProteinDataError("No protein records to build a dataset from.")
    lengths = np.array([len(r.sequence) for r in records], dtype=np.int64)
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    cols = {
        "id": pa.array([r.id for r in records], pa.string()),
        "description": pa.array([r.description for r in records], pa.string()),
        "source": pa.array([r.source for r in records], pa.string()),
        "sequence": pa.array([r.sequence for r in records], pa.string()),
        "length": pa.array(lengths.astype(np.int32)),
        "tmbed_labels": pa.array([r.tmbed_labels for r in records], pa.string()),
        "features": pa.array([[{"type": f.type, "start": int(f.start), "end": int(f.end), "note": f.note}
                               for f in r.features] for r in records], type=_feature_type()),
    }
    per = [residue_masks(r, tracks) for r in records]
    for t in tracks:
        flat = np.concatenate([m[t] for m in per]) if lengths.sum() else np.zeros(0, bool)
        cols[MASK_PREFIX + t] = pa.ListArray.from_arrays(offsets, pa.array(flat, pa.bool_()))
    return _dataset(pa.table(cols))


def _feature_type():
    import pyarrow as pa

    return pa.list_(pa.struct([("type", pa.string()), ("start", pa.int32()), ("end", pa.int32()),
                               ("note", pa.string())]))


def _dataset(table):
    from datasets import Dataset
    from datasets.table import InMemoryTable

    return Dataset(InMemoryTable(table))


def track_names(ds) -> list:
    """The annotation tracks of a dataset (``mask_TRANSMEM`` -> ``TRANSMEM``)."""
    return [c[len(MASK_PREFIX):] for c in ds.column_names if c.startswith(MASK_PREFIX)]


def masks_of(ds, track: str) -> list:
    """Per-residue boolean arrays of one track, one per row."""
    col = MASK_PREFIX + track
    if col not in ds.column_names:
        raise ProteinDataError(f"Track {track!r} is not in this dataset; it has {track_names(ds)}.")
    return [np.asarray(m, dtype=bool) for m in ds[col]]


def spans_of(ds, ftype: str) -> list:
    """Per-row lists of ``(start, end)`` spans of feature type ``ftype`` (for per-domain recall)."""
    return [[(f["start"], f["end"]) for f in fs if f["type"] == ftype] for fs in ds["features"]]


def save_dataset(ds, path) -> Path:
    """Write ``ds`` as parquet atomically (temp file in the same folder, then rename)."""
    import pyarrow.parquet as pq

    from hooks.io import atomic_path

    with atomic_path(path) as tmp:
        pq.write_table(ds.with_format("arrow")[:], str(tmp))   # respects any select/shuffle of ds
    return Path(path)


def load_dataset_file(path):
    """Read a parquet dataset written by :func:`save_dataset` (no HF cache involved)."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.exists():
        raise ProteinFormatError(f"Dataset file {str(path)!r} does not exist.")
    table = pq.read_table(path)
    missing = [c for c in ("id", "sequence", "features") if c not in table.column_names]
    if missing:
        raise ProteinFormatError(f"{path.name} is not a protein dataset (missing columns {missing}).")
    return _dataset(table)
