"""UniProtKB records: flat files and XML through Biopython, REST JSON and TSV exports by hand.

    recs = read_biopython("Q13639.txt", "swiss")          # Bio.SeqIO.parse(path, "swiss")
    recs = read_biopython("multi_ex.xml", "uniprot-xml")  # Bio.SeqIO.parse(path, "uniprot-xml")
    recs = parse_rest_json(json.load(open("page.json")))  # https://rest.uniprot.org/uniprotkb/search?format=json
    recs = read_rest_tsv("export.tsv")                    # columns Entry, Sequence, Transmembrane, ...

Feature positions become 0-based half-open spans; features whose start or end is unknown
(``?``) are dropped; fuzzy ends (``<1``, ``>120``) keep their number. Feature types are
mapped to flat-file keys (``transmembrane region``/``Transmembrane`` -> ``TRANSMEM``).
"""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from .alphabet import check_sequence
from .errors import ProteinFormatError
from .schema import REST_TYPES, XML_TYPES, Feature, ProteinRecord


def _bio_feature(f, xml: bool):
    try:
        start, end = int(f.location.start), int(f.location.end)
    except (AttributeError, TypeError, ValueError):  # unknown position ('?')
        return None
    ftype = XML_TYPES.get(f.type, f.type) if xml else f.type
    q = f.qualifiers
    note = q.get("note", q.get("description", ""))
    note = " ".join(note) if isinstance(note, list) else str(note)
    return Feature(ftype, start, end, note)


def read_biopython(path, fmt: str) -> list:
    """UniProt flat file (``fmt="swiss"``) or XML (``"uniprot-xml"``) via ``Bio.SeqIO.parse``."""
    try:
        from Bio import SeqIO
    except ImportError as e:  # pragma: no cover - biopython is a dependency
        raise ImportError("Reading UniProt flat files/XML needs biopython: pip install biopython") from e
    xml = fmt == "uniprot-xml"
    out = []
    try:
        for r in SeqIO.parse(str(path), fmt):
            feats = [f for f in (_bio_feature(f, xml) for f in r.features) if f is not None]
            desc = f"{r.name} {r.description}".strip()
            out.append(ProteinRecord(r.id, check_sequence(str(r.seq), r.id), desc, f"uniprot-{'xml' if xml else 'swiss'}",
                                     feats))
    except ProteinFormatError:
        raise
    except ValueError as e:
        if e.__class__.__module__.startswith("steering."):
            raise
        raise ProteinFormatError(f"{Path(path).name} does not parse as UniProt {fmt}: {e}") from None
    except Exception as e:  # Biopython's parser errors (SwissProtParserError, XML errors)
        raise ProteinFormatError(f"{Path(path).name} does not parse as UniProt {fmt}: {e}") from None
    if not out:
        raise ProteinFormatError(f"{Path(path).name} holds no UniProt {fmt} entries.")
    return out


def _rest_pos(p):
    if not isinstance(p, dict) or p.get("value") is None or p.get("modifier") == "UNKNOWN":
        return None
    return int(p["value"])


def parse_rest_entry(e: dict) -> ProteinRecord:
    """One entry of the UniProt REST JSON (``results[i]``)."""
    acc = e.get("primaryAccession")
    seq = (e.get("sequence") or {}).get("value")
    if not acc or seq is None:
        raise ProteinFormatError("A UniProt REST JSON entry lacks 'primaryAccession' or 'sequence.value'.")
    feats = []
    for f in e.get("features") or []:
        loc = f.get("location") or {}
        start, end = _rest_pos(loc.get("start")), _rest_pos(loc.get("end"))
        if start is None or end is None:
            continue
        feats.append(Feature(REST_TYPES.get(f.get("type", ""), f.get("type", "")), start - 1, end,
                             f.get("description", "") or ""))
    name = e.get("uniProtkbId", "")
    pname = (((e.get("proteinDescription") or {}).get("recommendedName") or {}).get("fullName") or {}).get("value", "")
    return ProteinRecord(acc, check_sequence(seq, acc), f"{name} {pname}".strip(), "uniprot-json", feats)


def parse_rest_json(obj) -> list:
    """A REST page (``{"results": [...]}``), a list of entries, or one entry."""
    if isinstance(obj, dict) and "results" in obj:
        obj = obj["results"]
    if isinstance(obj, dict):
        obj = [obj]
    if not isinstance(obj, list):
        raise ProteinFormatError("UniProt REST JSON must be {'results': [...]}, a list of entries or one entry.")
    return [parse_rest_entry(e) for e in obj]


def read_rest_json(path) -> list:
    try:
        obj = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ProteinFormatError(f"{Path(path).name} is not valid JSON: {e}") from None
    recs = parse_rest_json(obj)
    if not recs:
        raise ProteinFormatError(f"{Path(path).name} holds no UniProt entries.")
    return recs


# "TRANSMEM 5..25; /note="Helical"; /evidence="ECO:0000255"; TRANSMEM 40..60; ..."
_TSV_FEATURE = re.compile(r'\s*([A-Z][A-Z_]+)\s+([<>?]?\d*|\?)(?:\.\.([<>?]?\d*|\?))?\s*((?:;\s*/[A-Za-z_]+="[^"]*")*)\s*;?')
_TSV_NOTE = re.compile(r'/note="([^"]*)"')


def parse_tsv_features(cell: str, record_id: str = "?") -> list:
    """Features of one REST TSV cell in flat-file notation (``TRANSMEM 5..25; /note="..."; ...``)."""
    out, pos, cell = [], 0, (cell or "").strip()
    while pos < len(cell):
        m = _TSV_FEATURE.match(cell, pos)
        if m is None or m.end() == pos:
            raise ProteinFormatError(f"Record {record_id!r}: cannot parse feature text {cell[pos:pos + 60]!r} "
                                     "(expected e.g. 'TRANSMEM 5..25; /note=\"Helical\"').")
        pos = m.end()
        a, b = m.group(2).lstrip("<>"), (m.group(3) or m.group(2)).lstrip("<>")
        if a.isdigit() and b.isdigit():
            note = _TSV_NOTE.search(m.group(4) or "")
            out.append(Feature(m.group(1), int(a) - 1, int(b), note.group(1) if note else ""))
    return out


def read_rest_tsv(path) -> list:
    """UniProt REST TSV: an ``Entry`` and a ``Sequence`` column; every other column whose cells are in
    flat-file feature notation (Transmembrane, Zinc finger, Binding site, Signal peptide, Domain [FT],
    Motif, ...) contributes features."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    if not rows:
        raise ProteinFormatError(f"{Path(path).name} holds no rows.")
    cols = list(rows[0])
    if "Sequence" not in cols:
        raise ProteinFormatError(f"{Path(path).name}: no 'Sequence' column (columns: {cols}).")
    id_col = next((c for c in ("Entry", "Accession", "Entry Name") if c in cols), None)
    skip = {"Sequence", "Entry", "Entry Name", "Accession", "Protein names", "Gene Names", "Organism", "Length",
            "Reviewed"}
    out = []
    for i, r in enumerate(rows):
        rid = r[id_col] if id_col else f"row{i + 1}"
        feats = []
        for c in cols:
            if c not in skip and r.get(c) and re.match(r"\s*[A-Z][A-Z_]+\s+[<>?]?\d", r[c]):
                feats += parse_tsv_features(r[c], rid)
        desc = " ".join(r.get(c, "") for c in ("Entry Name", "Protein names") if r.get(c)).strip()
        out.append(ProteinRecord(rid, check_sequence(r["Sequence"], rid), desc, "uniprot-tsv", feats))
    return out
