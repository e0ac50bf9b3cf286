"""Small helpers shared by the geometry modules (tensor conversion, devices)."""

from __future__ import annotations

import functools
import re
import threading
from typing import Any

import torch

from .errors import GeometryInputError, check_points


def resolve_device(device: Any = None, like: Any = None) -> torch.device:
    """Pick the device to compute on.

    ``None`` or ``"auto"``: the device of ``like`` when it is a CUDA tensor,
    otherwise CUDA when available, otherwise the CPU.
    """
    if device is None or device == "auto":
        if isinstance(like, torch.Tensor) and like.device.type != "cpu":
            return like.device
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def as_points(X: Any, device: torch.device, name: str = "X") -> torch.Tensor:
    """Return ``X`` as a validated float64 (N, D) tensor on ``device``.

    Accepts numpy arrays, torch tensors and nested lists. float16/bfloat16/
    float32 inputs are upcast exactly, as DADApy does (``astype(float64)``).
    """
    if isinstance(X, torch.Tensor):
        t = X.detach()
    else:
        import numpy as np

        arr = np.asarray(X)
        if arr.dtype == object:
            raise GeometryInputError(f"{name} could not be read as a numeric array; pass a 2-D float array.")
        if arr.dtype.kind in "iub":
            arr = arr.astype(np.float64)
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if not torch.is_floating_point(t):
        if t.dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8, torch.bool):
            t = t.to(torch.float64)
    check_points(t, name)
    return t.to(device=device, dtype=torch.float64).contiguous()


@functools.lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """True when the CPU has native bf16 matrix instructions (AVX512-BF16 or AMX)."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = fh.read()
    except OSError:  # pragma: no cover - non-Linux
        return False
    return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", flags))


def natural_key(s: str) -> list:
    """Sort key putting ``layer2`` before ``layer10``."""
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", str(s))]


# Small element-wise/gather ops are run with this many intra-op threads on the CPU.
# With more, each tiny op opens an OpenMP parallel region, which costs ~10x on a
# loaded machine (threads descheduled at the barrier); big GEMMs keep all threads.
SMALL_OP_THREADS = 1


_OUTER = threading.local()


def user_threads() -> int:
    """The intra-op thread count set by the caller (outside any ``intraop_threads``)."""
    import torch

    return getattr(_OUTER, "n", None) or torch.get_num_threads()


class intraop_threads:
    """Context manager: torch CPU intra-op threads set to ``n`` (restored on exit)."""

    def __init__(self, n: int | None):
        self.n = n

    def __enter__(self):
        import torch

        self.old = torch.get_num_threads()
        self.outermost = getattr(_OUTER, "n", None) is None
        if self.outermost:
            _OUTER.n = self.old
        if self.n is not None and self.n != self.old:
            torch.set_num_threads(max(1, int(self.n)))
        return user_threads()

    def __exit__(self, *exc):
        import torch

        if torch.get_num_threads() != self.old:
            torch.set_num_threads(self.old)
        if self.outermost:
            _OUTER.n = None
        return False


def small_ops(fn):
    """Decorator: run ``fn`` with :data:`SMALL_OP_THREADS` intra-op threads."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with intraop_threads(SMALL_OP_THREADS):
            return fn(*args, **kwargs)

    return wrapper
