"""Moved to :mod:`geometry.profile`; this alias keeps ``interp.geometry.profile`` imports working
(the same module object, so patching either name patches both)."""
import sys

import geometry.profile

sys.modules[__name__] = geometry.profile
