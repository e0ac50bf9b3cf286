"""Errors of :mod:`interp.landscape`.

Every bad input raises one :class:`LandscapeInputError` (a :class:`ValueError`)
whose message says what is wrong *and* how to fix it. The subclasses let callers
tell data, prompt/tokenizer and SFT-configuration problems apart.
"""
from __future__ import annotations

__all__ = ["LandscapeInputError", "DataError", "PromptError", "SFTConfigError"]


class LandscapeInputError(ValueError):
    """Input that the landscape pipeline cannot use as is."""


class DataError(LandscapeInputError):
    """Multiple-choice records that are missing, malformed or inconsistent."""


class PromptError(LandscapeInputError):
    """A prompt cannot be built (too few dev examples) or scored (no letter tokens)."""


class SFTConfigError(LandscapeInputError):
    """A LoRA/SFT configuration that is invalid for this model or data."""


class LandscapeWarning(UserWarning):
    """A setting was adjusted to the data (e.g. maxk capped at N - 1); the run goes on."""
