"""Protein pipeline: real data + token alignment, a synthetic world with planted features, a toy ESM-2.

    from steering.protein import read_proteins, make_toy_world, encode_sequences, residue_token_mask
    ds = read_proteins("/path/to/tmbed/alpha.fasta")          # datasets.Dataset (schema: .schema)
    toy = make_toy_world(5000, seed=0)                        # same schema, planted ground truth
    hm = load_toy_model()                                     # hooks.HookedModel, shipped weights

Modules: ``data`` (readers), ``uniprot`` (UniProt formats), ``fetch`` (REST API), ``schema``
(Dataset columns), ``align`` (per-residue -> token masks), ``toy_world``, ``toy_model``,
``probe`` (linear probes), ``cli``. References: Lin et al. 2023 (ESM-2); Simon & Zou 2024
(InterPLM); Garcia & Ansuini 2025 (Interpreting and Steering Protein Language Models through
Sparse Autoencoders); Kyte & Doolittle 1982; PROSITE PS00028.
"""
from __future__ import annotations

_EXPORTS = {
    "read_proteins": "data", "read_records": "data", "detect_format": "data",
    "to_dataset": "schema", "save_dataset": "schema", "load_dataset_file": "schema", "masks_of": "schema", "spans_of": "schema",
    "track_names": "schema", "TRACKS": "schema", "Feature": "schema", "ProteinRecord": "schema",
    "encode_sequences": "align", "residue_token_mask": "align", "dataset_token_masks": "align",
    "fetch_uniprot": "fetch",
    "make_toy_world": "toy_world", "toy_records": "toy_world", "find_ps00028": "toy_world", "PLANTED": "toy_world",
    "WorldConfig": "toy_world",
    "load_toy_model": "toy_model", "train_toy_model": "train_loop", "TrainConfig": "toy_model",
    "evaluate_mlm": "toy_model", "toy_model_path": "toy_model",
    "esm_tokenizer": "alphabet",
    "ProteinDataError": "errors",
}


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'steering.protein' has no attribute {name!r}")


__all__ = list(_EXPORTS)
