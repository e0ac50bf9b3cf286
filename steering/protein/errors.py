"""Errors of the protein pipeline: one clear message each, all ``ValueError`` subclasses.

    try:
        ds = read_proteins("x.fasta")
    except ProteinDataError as e:   # or plain ``except ValueError``
        print(e)
"""
from __future__ import annotations


class ProteinDataError(ValueError):
    """Base class of every error raised on bad protein input."""


class UnknownResidueError(ProteinDataError):
    """A sequence holds a character outside the ESM-2 amino-acid alphabet."""

    def __init__(self, record_id: str, char: str, position: int, alphabet: str):
        self.record_id, self.char, self.position = record_id, char, position
        super().__init__(
            f"Record {record_id!r}: unknown amino acid {char!r} at residue {position} (1-based). "
            f"Allowed one-letter codes: {alphabet} (use X for an unknown residue)."
        )


class LabelLengthError(ProteinDataError):
    """Per-residue labels whose length differs from the sequence's."""

    def __init__(self, record_id: str, n_labels: int, n_residues: int):
        super().__init__(
            f"Record {record_id!r}: {n_labels} per-residue labels for a sequence of {n_residues} residues; "
            "they must have the same length."
        )


class SequenceTooLongError(ProteinDataError):
    """A sequence longer than the model's context, in strict mode."""

    def __init__(self, record_id: str, n_residues: int, max_residues: int):
        super().__init__(
            f"Record {record_id!r} has {n_residues} residues but the model takes at most {max_residues} "
            f"(its context minus <cls> and <eos>). Split or crop it, or pass strict=False to truncate "
            "(truncation is recorded)."
        )


class ProteinFormatError(ProteinDataError):
    """A file that does not parse as the format it was read as."""


class AlignmentError(ProteinDataError):
    """Per-residue masks that cannot be placed on a batch's residue tokens."""


class FetchError(ProteinDataError):
    """The UniProt REST API answered with an error or an unreadable page."""
