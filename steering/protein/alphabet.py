"""The ESM-2 vocabulary, amino-acid background frequencies and hydropathy scale.

    tok = esm_tokenizer()                    # transformers.EsmTokenizer over the ESM-2 vocabulary
    ids = encode_residues("MKTAY")           # [20, 15, 11, 5, 19]
    check_sequence("MKTJ", "P1")             # UnknownResidueError: 'J' at residue 4

The vocabulary (ids 0..32) is ESM-2's (Lin et al. 2023, Science 379:1123): special tokens,
the 20 standard amino acids in ESM order, the ambiguity codes X B U Z O, and gap tokens.
Background frequencies are UniProtKB/Swiss-Prot's amino-acid composition (release
statistics, %), the hydropathy scale is Kyte & Doolittle (1982, J. Mol. Biol. 157:105).
"""
from __future__ import annotations

import math
from pathlib import Path

from .errors import UnknownResidueError

ESM_VOCAB = ("<cls>", "<pad>", "<eos>", "<unk>", "L", "A", "G", "V", "S", "E", "R", "T", "I", "D", "P", "K",
             "Q", "N", "F", "Y", "M", "H", "W", "C", "X", "B", "U", "Z", "O", ".", "-", "<null_1>", "<mask>")
TOKEN_ID = {t: i for i, t in enumerate(ESM_VOCAB)}
CLS_ID, PAD_ID, EOS_ID, UNK_ID, MASK_ID = 0, 1, 2, 3, 32
STANDARD_AA = "LAGVSERTIDPKQNFYMHWC"          # ESM order, ids 4..23
RESIDUE_ALPHABET = STANDARD_AA + "XBUZO"     # every residue letter the model has a token for
_ALLOWED = frozenset(RESIDUE_ALPHABET)
AA_IDS = tuple(TOKEN_ID[a] for a in STANDARD_AA)

# UniProtKB/Swiss-Prot amino-acid composition (%), https://web.expasy.org/docs/relnotes/relstat.html
SWISSPROT_FREQ = {
    "A": 8.25, "R": 5.53, "N": 4.06, "D": 5.45, "C": 1.37, "Q": 3.93, "E": 6.75, "G": 7.07, "H": 2.27, "I": 5.96,
    "L": 9.66, "K": 5.84, "M": 2.42, "F": 3.86, "P": 4.70, "S": 6.56, "T": 5.34, "W": 1.08, "Y": 2.92, "V": 6.87,
}
KYTE_DOOLITTLE = {
    "I": 4.5, "V": 4.2, "L": 3.8, "F": 2.8, "C": 2.5, "M": 1.9, "A": 1.8, "G": -0.4, "T": -0.7, "S": -0.8,
    "W": -0.9, "Y": -1.3, "P": -1.6, "H": -3.2, "E": -3.5, "Q": -3.5, "D": -3.5, "N": -3.5, "K": -3.9, "R": -4.5,
}


def background_probs() -> dict:
    """Swiss-Prot composition normalised to sum to 1."""
    tot = sum(SWISSPROT_FREQ.values())
    return {a: SWISSPROT_FREQ[a] / tot for a in STANDARD_AA}


def background_entropy() -> float:
    """Entropy (nats) of the background composition: the masked-LM loss of a context-free model."""
    return -sum(p * math.log(p) for p in background_probs().values())


def check_sequence(seq: str, record_id: str = "?") -> str:
    """Upper-case ``seq``, drop one trailing stop ``*``, and reject letters ESM-2 has no token for."""
    s = seq.strip().upper()
    if s.endswith("*"):
        s = s[:-1]
    if set(s) <= _ALLOWED:
        return s
    for i, c in enumerate(s):
        if c not in _ALLOWED:
            raise UnknownResidueError(record_id, c, i + 1, RESIDUE_ALPHABET)
    return s


def encode_residues(seq: str) -> list:
    """Token ids of the residues of a checked sequence (no <cls>/<eos>)."""
    return [TOKEN_ID[c] for c in seq]


def write_vocab(path) -> Path:
    path = Path(path)
    path.write_text("\n".join(ESM_VOCAB) + "\n")
    return path


def esm_tokenizer(vocab_file=None, model_max_length: int | None = None):
    """A ``transformers.EsmTokenizer`` over the ESM-2 vocabulary (writes a vocab file when none is given);
    ``model_max_length``: the model's context in tokens (CLS and EOS included)."""
    import tempfile

    from transformers import EsmTokenizer

    if vocab_file is None:
        vocab_file = write_vocab(Path(tempfile.mkdtemp(prefix="esm_vocab_")) / "vocab.txt")
    kw = {} if model_max_length is None else {"model_max_length": int(model_max_length)}
    tok = EsmTokenizer(str(vocab_file), **kw)
    assert tok.convert_tokens_to_ids(list(ESM_VOCAB)) == list(range(len(ESM_VOCAB)))
    return tok
