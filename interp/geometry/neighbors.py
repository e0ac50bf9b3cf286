"""Moved to :mod:`geometry.neighbors`; this alias keeps ``interp.geometry.neighbors`` imports working
(the same module object, so patching either name patches both)."""
import sys

import geometry.neighbors

sys.modules[__name__] = geometry.neighbors
