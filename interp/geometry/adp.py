"""Moved to :mod:`geometry.adp`; this alias keeps ``interp.geometry.adp`` imports working
(the same module object, so patching either name patches both)."""
import sys

import geometry.adp

sys.modules[__name__] = geometry.adp
