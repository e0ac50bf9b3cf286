"""Moved to :mod:`geometry._search`; this alias keeps ``interp.geometry._search`` imports working
(the same module object, so patching either name patches both)."""
import sys

import geometry._search

sys.modules[__name__] = geometry._search
