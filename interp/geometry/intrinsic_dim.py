"""Moved to :mod:`geometry.intrinsic_dim`; this alias keeps ``interp.geometry.intrinsic_dim`` imports working
(the same module object, so patching either name patches both)."""
import sys

import geometry.intrinsic_dim

sys.modules[__name__] = geometry.intrinsic_dim
