"""Moved to :mod:`geometry.data`; this alias keeps ``interp.geometry.data`` imports working
(the same module object, so patching either name patches both)."""
import sys

import geometry.data

sys.modules[__name__] = geometry.data
