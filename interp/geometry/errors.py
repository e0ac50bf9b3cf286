"""Moved to :mod:`geometry.errors`; this alias keeps ``interp.geometry.errors`` imports working
(the same module object, so patching either name patches both)."""
import sys

import geometry.errors

sys.modules[__name__] = geometry.errors
