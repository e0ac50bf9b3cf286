"""Moved to :mod:`geometry.density`; this alias keeps ``interp.geometry.density`` imports working
(the same module object, so patching either name patches both)."""
import sys

import geometry.density

sys.modules[__name__] = geometry.density
