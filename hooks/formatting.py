"""Numbers in tables and reports: one way to print a p or q value.

    from hooks.formatting import format_q
    format_q(0.0) == "< 1e-300"         # underflowed: below the smallest normal float we trust
    format_q(5e-324) == "< 1e-300"      # subnormal: underflowed too
    format_q(3.21e-5) == "3.2e-05"; format_q(0.42, digits=2) == "4.20e-01"; format_q(None) == "nan"

A Fisher or hypergeometric tail probability (and its Benjamini–Hochberg q) below ~1e-308 is
stored as 0.0 or a subnormal: printing it as ``0.0e+00`` claims an exact zero it is not, so every
such value prints as ``< 1e-300``.
"""
from __future__ import annotations

import math

SMALLEST = 1e-300


def format_q(q, digits: int = 1) -> str:
    """A p or q value for text: ``< 1e-300`` when it underflowed (0 or below 1e-300), ``nan``
    for missing, otherwise scientific notation with ``digits`` decimals (``3.2e-05``)."""
    if q is None or (isinstance(q, float) and math.isnan(q)):
        return "nan"
    q = float(q)
    if math.isnan(q):
        return "nan"
    if q < SMALLEST:
        return "< 1e-300"
    return f"{q:.{digits}e}"
