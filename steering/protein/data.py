"""Reading protein files into the shared Dataset schema (see :mod:`steering.protein.schema`).

    ds = read_proteins("cv_00_a.fasta")            # TMbed three-line records, auto-detected
    ds = read_proteins("Q13639.txt")               # UniProt flat file (Biopython "swiss")
    ds = read_proteins("multi_ex.xml")             # UniProt XML (Biopython "uniprot-xml")
    ds = read_proteins("export.json")              # UniProt REST JSON ({"results": [...]})
    ds = read_proteins("export.tsv")               # UniProt REST TSV (Sequence + feature columns)
    save_dataset(ds, "proteins.parquet")           # atomic
    batch = encode_sequences(ds["sequence"][:8], max_length=1026)       # -> steering.protein.align
    tm = residue_token_mask(masks_of(ds, "TRANSMEM")[:8], batch)       # (B, P), = hooks' "residues"

Formats: ``fasta`` (plain sequences), ``tmbed`` (header / sequence / one label per residue, TMbed,
Bernhofer & Rost 2022: ``H``/``h`` TM helix, ``B``/``b`` TM strand, ``S`` signal peptide, ``1``
inside, ``2`` outside, ``U`` unknown), ``uniprot-swiss``, ``uniprot-xml``, ``uniprot-json``,
``uniprot-tsv`` (parsers in :mod:`steering.protein.uniprot`), and ``parquet`` (a saved dataset).
Every sequence is checked against the ESM-2 alphabet (upper-cased, one trailing ``*`` dropped):
an unknown letter raises :class:`UnknownResidueError` naming the record, letter and residue, TMbed
labels of the wrong length :class:`LabelLengthError`.
"""
from __future__ import annotations

from pathlib import Path

from .alphabet import check_sequence
from .errors import LabelLengthError, ProteinFormatError
from .schema import (TRACKS, Feature, ProteinRecord, load_dataset_file, masks_of, save_dataset,  # noqa: F401
                     tmbed_features, to_dataset, track_names)

__all__ = ["FORMATS", "TRACKS", "Feature", "ProteinRecord", "detect_format", "load_dataset_file", "masks_of",
           "read_fasta_records", "read_proteins", "read_records", "read_tmbed_records", "save_dataset", "to_dataset",
           "track_names"]
FORMATS = ("fasta", "tmbed", "uniprot-swiss", "uniprot-xml", "uniprot-json", "uniprot-tsv", "parquet")
TMBED_LABELS = set("HhBbS12U")
_SUFFIX = {".fasta": "fasta", ".fa": "fasta", ".faa": "fasta", ".fas": "fasta", ".xml": "uniprot-xml",
           ".json": "uniprot-json", ".tsv": "uniprot-tsv", ".tab": "uniprot-tsv", ".parquet": "parquet",
           ".dat": "uniprot-swiss", ".swiss": "uniprot-swiss", ".sp": "uniprot-swiss"}


def _fasta_blocks(path):
    """Yield ``(header, [body lines])`` of a FASTA-like file."""
    header, body = None, []
    with open(path) as fh:
        for ln, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            if line.startswith(">"):
                if header is not None:
                    yield header, body
                header, body = line[1:].strip(), []
            elif header is None:
                raise ProteinFormatError(f"{Path(path).name}, line {ln}: expected a '>' header before sequence data.")
            else:
                body.append(line)
    if header is not None:
        yield header, body


def _rid(header: str) -> tuple:
    rid = header.split()[0] if header.split() else header
    return rid, header


def read_fasta_records(path) -> list:
    """Plain FASTA (sequences may wrap over several lines)."""
    out = []
    for header, body in _fasta_blocks(path):
        rid, desc = _rid(header)
        out.append(ProteinRecord(rid, check_sequence("".join(body), rid), desc, "fasta"))
    if not out:
        raise ProteinFormatError(f"{Path(path).name} holds no FASTA records.")
    return out


def read_tmbed_records(path) -> list:
    """TMbed three-line records: ``>header``, the sequence, one class label per residue."""
    out = []
    for header, body in _fasta_blocks(path):
        rid, desc = _rid(header)
        if len(body) != 2:
            raise ProteinFormatError(
                f"{Path(path).name}: TMbed record {rid!r} has {len(body)} line(s) after its header; expected 2 "
                "(the sequence, then one label per residue).")
        seq, labels = check_sequence(body[0], rid), body[1]
        bad = sorted(set(labels) - TMBED_LABELS)
        if bad:
            raise ProteinFormatError(f"TMbed record {rid!r}: unknown label(s) {''.join(bad)!r}; "
                                     f"allowed: {''.join(sorted(TMBED_LABELS))}.")
        if len(labels) != len(seq):
            raise LabelLengthError(rid, len(labels), len(seq))
        out.append(ProteinRecord(rid, seq, desc, "tmbed", tmbed_features(labels), labels))
    if not out:
        raise ProteinFormatError(f"{Path(path).name} holds no TMbed records.")
    return out


def detect_format(path) -> str:
    """Guess the format from the suffix and the first lines."""
    p = Path(path)
    if not p.exists():
        raise ProteinFormatError(f"File {str(p)!r} does not exist.")
    fmt = _SUFFIX.get(p.suffix.lower())
    if fmt == "parquet":
        return fmt
    with open(p, errors="replace") as fh:
        head = [ln.rstrip("\n") for _, ln in zip(range(4000), fh)]
    first = next((ln for ln in head if ln.strip()), "")
    if first.startswith(">"):
        hdr = [i for i, ln in enumerate(head) if ln.startswith(">")]
        if len(hdr) >= 2 or len(head) <= 3:
            end = hdr[1] if len(hdr) >= 2 else len(head)
            body = [ln.strip() for ln in head[hdr[0] + 1:end] if ln.strip()]
            if len(body) == 2 and set(body[1]) <= TMBED_LABELS and set(body[1]) & set("12hbU"):
                return "tmbed"
        return "fasta"
    if first.startswith("ID "):
        return "uniprot-swiss"
    if first.lstrip().startswith(("<?xml", "<uniprot")):
        return "uniprot-xml"
    if first.lstrip().startswith(("{", "[")):
        return "uniprot-json"
    if "\t" in first and "Sequence" in first.split("\t"):
        return "uniprot-tsv"
    if fmt is not None:
        return fmt
    raise ProteinFormatError(f"Cannot tell the format of {p.name}; pass format= one of {FORMATS}.")


def read_records(path, format: str = "auto") -> list:
    """Parse ``path`` into :class:`ProteinRecord` objects."""
    from . import uniprot

    fmt = detect_format(path) if format == "auto" else format
    readers = {"fasta": read_fasta_records, "tmbed": read_tmbed_records,
               "uniprot-swiss": lambda p: uniprot.read_biopython(p, "swiss"),
               "uniprot-xml": lambda p: uniprot.read_biopython(p, "uniprot-xml"),
               "uniprot-json": uniprot.read_rest_json, "uniprot-tsv": uniprot.read_rest_tsv}
    if fmt not in readers:
        raise ProteinFormatError(f"Unknown format {fmt!r}; use one of {FORMATS[:-1]} or 'auto'.")
    if not Path(path).exists():
        raise ProteinFormatError(f"File {str(path)!r} does not exist.")
    return readers[fmt](path)


def read_proteins(path, format: str = "auto", tracks=TRACKS):
    """Read any supported file into the protein Dataset (``parquet``: a dataset saved earlier)."""
    fmt = detect_format(path) if format == "auto" else format
    if fmt == "parquet":
        return load_dataset_file(path)
    return to_dataset(read_records(path, fmt), tracks)
