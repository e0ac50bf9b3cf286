"""Errors raised by :mod:`saes` on bad input.

Each says what is wrong and how to fix it. All derive from :class:`SAEError`, itself a
``ValueError``, so ``except ValueError`` keeps working; errors from the hook registry
(``hooks.UnknownSiteError`` for an unknown site, ``hooks.PositionError``) pass through
unchanged and are ``ValueError`` s too.
"""
from __future__ import annotations


class SAEError(ValueError):
    """Base class of every error :mod:`saes` raises on bad input."""


class ConfigError(SAEError):
    """Training/store settings that cannot work together (e.g. ``k`` above ``latents``)."""


class DataError(SAEError):
    """A dataset that is missing, empty, or too small for the requested buffer."""


class ActivationError(SAEError):
    """Activations that cannot be trained on (NaN/inf values, wrong width)."""


class CheckpointError(SAEError):
    """A training checkpoint that is corrupt, partial, or from a different run."""


class SAEFileError(SAEError):
    """An SAE directory that is missing files or holds unreadable ones."""


class CacheError(DataError):
    """An on-disk activation cache that is corrupt or belongs to another model/site/dataset."""
