"""Errors of :mod:`steering.narrow_gate`. Each says what is wrong and how to fix it.

All derive from :class:`NarrowGateError`, a ``ValueError``, so ``except ValueError`` works::

    try:
        attention_flow(hm, examples)
    except NarrowGateError as e:
        print(e)          # e.g. "no image tokens in example 3: ..."
"""
from __future__ import annotations


class NarrowGateError(ValueError):
    """Base class of every bad-input error raised by the narrow-gate analyses."""


class ImageSpanError(NarrowGateError):
    """The model's image span cannot be found (no VLM adapter, no image in a prompt, two images)."""


class DatasetError(NarrowGateError):
    """A dataset that cannot be used: missing, empty, without images, or without the fields a task needs."""


class LayerWindowError(NarrowGateError):
    """A layer or layer window outside the model's depth."""


class TaskError(NarrowGateError):
    """An unknown task, metric or option value (e.g. a flow normalisation), or examples without what the
    task needs (answers, labels)."""


class MissingDependencyError(NarrowGateError):
    """An optional package (e.g. pycocoevalcap for CIDEr) is not installed."""
