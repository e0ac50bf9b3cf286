"""Moved to :mod:`hooks.io` (the bottom layer, so ``saes`` and ``steering`` can use it);
re-exported here for older imports."""
from hooks.io import write_csv_atomic, write_json_atomic, write_text_atomic

__all__ = ["write_csv_atomic", "write_json_atomic", "write_text_atomic"]
