"""Files we write get the permissions a plain ``open()`` / ``mkdir()`` would give them.

    from hooks.permissions import as_umask_allows
    tmp = tempfile.mkdtemp(dir=out.parent)      # 0700 (mkdtemp's own mode)
    save_file(tensors, f"{tmp}/w.safetensors")  # 0600 (safetensors writes through a private temp file)
    as_umask_allows(tmp)                        # 0755 / 0644 under the usual umask 022
    os.replace(tmp, out)

``tempfile.mkstemp``/``mkdtemp`` (our atomic writes: temp file, then rename) and safetensors'
``save_file`` create files readable by the owner only; renamed into place, results and weights
were then unreadable by the group. Call this on the temp file or directory before the rename.
"""
from __future__ import annotations

import os
from pathlib import Path


def current_umask() -> int:
    """The process umask (read from /proc where it can be, which leaves it untouched)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def as_umask_allows(path) -> Path:
    """chmod ``path`` (and, for a directory, everything under it) to 0666 (files) / 0777
    (directories) less the umask. Symlinks are left alone."""
    path = Path(path)
    mask = current_umask()
    fmode, dmode = 0o666 & ~mask, 0o777 & ~mask
    if path.is_symlink():
        return path
    if path.is_dir():
        for root, dirs, files in os.walk(path):
            os.chmod(root, dmode)
            for name in files:
                p = os.path.join(root, name)
                if not os.path.islink(p):
                    os.chmod(p, fmode)
    else:
        os.chmod(path, fmode)
    return path
