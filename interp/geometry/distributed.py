"""Moved to :mod:`geometry.distributed`; this alias keeps ``interp.geometry.distributed`` imports working
(the same module object, so patching either name patches both)."""
import sys

import geometry.distributed

sys.modules[__name__] = geometry.distributed
