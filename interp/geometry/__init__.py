"""Moved: representation geometry is the top-level package :mod:`geometry` (below
``saes``, ``steering`` and ``interp``, so each can use it). This package keeps old imports
working: ``from interp.geometry import knn`` and ``import interp.geometry.neighbors`` give the
same objects as ``geometry``. It also holds the ``interp geometry`` command
(:mod:`interp.geometry.cli`).
"""
import geometry as _geometry

__all__ = list(_geometry.__all__)


def __getattr__(name):
    # lazy, like geometry itself: importing this package does not import torch
    if name in __all__:
        return getattr(_geometry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
