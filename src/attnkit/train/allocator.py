"""Keep freed memory in the process on Linux (glibc), so a training loop stops paying page
faults for its large tensors.

glibc's ``malloc`` serves every allocation above its mmap threshold (at most 32 MiB on
64-bit systems) with a fresh ``mmap`` and returns it to the system on ``free``. A training
step allocates tensors of that size every time (the translate job's logits are ``(B T, V)``
= 3,000 x 4,000 floats, 48 MB, and so are their log-softmax and gradients), so every step
faults each page of them in again and the kernel zeroes it first. :func:`keep_freed_memory`
turns that off for the rest of the process (``mallopt``: no ``mmap`` for allocations, and
freed heap memory is kept up to 2 GiB above the top instead of being trimmed), so the
second step onwards reuses the first step's pages. The cost is that the process keeps its
peak heap.

Measured on the translate job's recurrent models (2-core Xeon, float32, 2 threads;
``benchmarks/results/rnn_throughput/``): the vocabulary projection's forward product
took 58-74 ms with a new output each time and 41 ms with reused memory. PyTorch's CPU
tuning guide makes the same point with jemalloc or tcmalloc, which need ``LD_PRELOAD``;
this needs nothing. Elsewhere (macOS, musl, Windows) it does nothing and says so.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
_M_MMAP_MAX = -4
_KEEP_BYTES = 2**31 - 1  # mallopt takes an int
_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Make glibc's allocator reuse freed memory for the rest of the process (module
    docstring). Returns True where it applied (glibc on Linux), False elsewhere. Calling it
    again does nothing more."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 - glibc only (musl has no such symbol)
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success; the order matters: no new mmaps before the trim limit
    _applied = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES))
    return _applied
