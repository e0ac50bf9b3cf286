"""Moved to :mod:`geometry._utils`; this alias keeps ``interp.geometry._utils`` imports working
(the same module object, so patching either name patches both)."""
import sys

import geometry._utils

sys.modules[__name__] = geometry._utils
