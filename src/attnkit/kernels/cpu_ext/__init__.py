"""C++ kernels for CPUs, compiled on first use with torch's extension builder.

What is here: one decoder step of additive attention, forward and backward, in one pass
over the keys (``additive.cpp``: ``additive_forward``, ``additive_backward``), and one GRU
cell step around its matrix products (``gru.cpp``: ``gru_forward``, ``gru_backward``), used
by :func:`attnkit.nn.seq2seq.additive_gru.additive_gru_decode`,
:func:`attnkit.nn.seq2seq.gru_scan.gru_scan` and the Luong decoder; and the elementwise part
of a chunk of :func:`attnkit.train.losses.linear_cross_entropy` (``loss.cpp``:
``cross_entropy_chunk``). Each file's header gives the equations.

The source is compiled once per machine kind (the CPU capability torch reports: AVX512,
AVX2 or neither, which picks ATen's vector width) into torch's extension cache
(``TORCH_EXTENSIONS_DIR``, by default ``~/.cache/torch_extensions``); that takes about a
minute and needs a C++ compiler and ninja. :func:`load` returns None where the build is
impossible or fails (a warning says why, once per process), or when the environment sets
``ATTNKIT_CPU_EXT=0``; callers then run their pure-PyTorch path, which computes the same
values. :func:`status` tells which it is.
"""

from __future__ import annotations

import os
import platform
import sys
import threading
import warnings
from pathlib import Path
from types import ModuleType

__all__ = ["for_tensor", "load", "status"]

_SOURCES = [Path(__file__).with_name(name)
            for name in ("additive.cpp", "gru.cpp", "loss.cpp", "bindings.cpp")]  # and common.h
_lock = threading.Lock()
_state: dict = {}  # "module" (ModuleType or None), "reason" (str)

# ATen's vector classes take their width from CPU_CAPABILITY_* and need the matching
# instruction-set flags; torch's own kernels are built the same way for each capability.
_FLAGS = {
    "AVX512": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma",
               "-DCPU_CAPABILITY_AVX512", "-DCPU_CAPABILITY=AVX512"],
    "AVX2": ["-mavx2", "-mfma", "-DCPU_CAPABILITY_AVX2", "-DCPU_CAPABILITY=AVX2"],
}


def _disabled_reason() -> str | None:
    value = os.environ.get("ATTNKIT_CPU_EXT", "1").strip().lower()
    if value in ("0", "false", "no", "off"):
        return "ATTNKIT_CPU_EXT=0 in the environment"
    if sys.platform != "linux":
        return f"built only on Linux (this is {sys.platform})"
    return None


def _build() -> ModuleType:
    import torch
    from torch.utils import cpp_extension

    capability = torch.backends.cpu.get_cpu_capability()
    flags = _FLAGS.get(capability, []) if platform.machine() in ("x86_64", "AMD64") else []
    name = f"attnkit_cpu_kernels_{capability.lower()}_v2"
    # -fopenmp: at::parallel_for runs on torch's OpenMP threads (the wheel's libgomp.so.1,
    # which the extension's link to libgomp.so.1 resolves to), so torch.set_num_threads holds
    return cpp_extension.load(name=name, sources=[str(path) for path in _SOURCES],
                              extra_cflags=["-O3", "-fopenmp", *flags],
                              extra_ldflags=["-fopenmp"], verbose=False)


def load() -> ModuleType | None:
    """The compiled extension, building it on the first call; None where it cannot be had."""
    if "module" in _state:
        return _state["module"]
    with _lock:
        if "module" in _state:
            return _state["module"]
        reason = _disabled_reason()
        module = None
        if reason is None:
            try:
                module = _build()
                reason = "compiled"
            except Exception as error:  # noqa: BLE001 - any build failure means: fall back
                lines = str(error).strip().splitlines()
                # a compiler's first "error:" line says more than ninja's command line
                told = [line for line in lines if "error:" in line] or lines or [""]
                reason = f"the C++ build failed ({type(error).__name__}: {told[0].strip()})"
                warnings.warn(f"attnkit: {reason}; the fused CPU kernels fall back to "
                              "PyTorch operations (same values, slower)", RuntimeWarning,
                              stacklevel=2)
        _state.update(module=module, reason=reason)
        return module


def status() -> str:
    """Why :func:`load` gave what it gave ("compiled", or the reason it is None); builds
    the extension first if no call has tried yet."""
    load()
    return _state["reason"]


def for_tensor(tensor) -> ModuleType | None:
    """:func:`load` for a CPU float32 or float64 ``tensor``, else None (what the kernels take)."""
    import torch

    if tensor.device.type != "cpu" or tensor.dtype not in (torch.float32, torch.float64):
        return None
    return load()
