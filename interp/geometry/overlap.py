"""Moved to :mod:`geometry.overlap`; this alias keeps ``interp.geometry.overlap`` imports working
(the same module object, so patching either name patches both)."""
import sys

import geometry.overlap

sys.modules[__name__] = geometry.overlap
