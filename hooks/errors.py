"""Errors raised by the hook registry.

Every error says what was wrong and how to fix it; all derive from :class:`HookError`
(itself a ``ValueError``) so ``except ValueError`` keeps working in user scripts.
"""
from __future__ import annotations

import difflib


class HookError(ValueError):
    """Base class of every error the hook registry raises on bad input."""


class UnknownSiteError(HookError, KeyError):
    """A site name that is neither canonical for this model nor a module path."""

    def __init__(self, name: str, valid: list[str]):
        close = difflib.get_close_matches(name, valid, n=5, cutoff=0.5)
        hint = f" Closest valid names: {', '.join(close)}." if close else ""
        super().__init__(
            f"Unknown site {name!r}.{hint} List every site with `model.sites` or `interp sites MODEL`; "
            "raw module paths (see `model.module_names()`) are accepted too."
        )

    def __str__(self) -> str:  # KeyError would add quotes
        return self.args[0]


class PositionError(HookError, IndexError):
    """A position selector that does not fit a batch row."""


class ShapeMismatchError(HookError):
    """A patch/steer value whose shape or dtype does not fit the activation it replaces."""


class UnsupportedModelError(HookError):
    """No adapter matches the model."""


class AttentionNotSupportedError(HookError):
    """Attention capture/knockout requested on a model whose attention we cannot reach."""


class SpecError(HookError):
    """An intervention spec (Python, JSON or YAML) that is malformed."""
