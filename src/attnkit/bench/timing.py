"""Timing, peak-memory and report helpers shared by every benchmark suite.

* :func:`measure` - median wall time of a callable after warm-up.
* :func:`available_memory_bytes` - what a suite may allocate before it starts (the one
  of :mod:`attnkit._validate`, which the command lines use too).
* :func:`peak_memory` - extra peak memory of one call, measured in a fresh
  subprocess (CPU on Linux: the resident-set high-water mark, reset after the
  inputs exist, minus the resident set at that point; CUDA:
  ``torch.cuda.max_memory_allocated`` over the allocation before the call).
* :func:`attention_flops` - the FLOP count convention of DESIGN.md section 5.
* :func:`write_report` - JSON plus a markdown table, written atomically.
* :func:`check_lengths`, :func:`check_report_name` - argument checks every suite shares.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from attnkit._io import atomic_write_json, atomic_write_text
from attnkit._validate import available_memory_bytes, check_int

__all__ = ["measure", "measure_interleaved", "peak_memory", "attention_flops", "machine",
           "write_report", "markdown_table", "check_lengths", "check_report_name",
           "available_memory_bytes"]


def check_lengths(lengths: Sequence[int], name: str = "lengths") -> tuple[int, ...]:
    """``lengths`` as a non-empty tuple of positive ints; ``ValueError``/``TypeError``
    naming ``name`` otherwise (a zero length used to kill the process with SIGFPE)."""
    if isinstance(lengths, (str, bytes)) or not isinstance(lengths, Sequence) or not lengths:
        raise TypeError(f"{name} must be a non-empty sequence of ints, got {lengths!r}")
    return tuple(check_int(length, name, minimum=1) for length in lengths)


def check_report_name(name: str) -> str:
    """``name`` if it is a plain file name, so that a report cannot land outside its folder;
    ``ValueError`` naming ``name`` otherwise."""
    if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
        raise ValueError(f"name must be a plain file name (no folders), got {name!r}")
    return name


def _sync(device: str | None) -> None:
    if device == "cuda" and torch.cuda.is_available():
        torch.cuda.synchronize()


def measure(fn: Callable[[], Any], *, warmup: int = 2, repeats: int = 7,
            device: str | None = None) -> dict[str, float]:
    """Run ``fn`` ``warmup`` times, then ``repeats`` (at least 1) timed times.

    Returns:
        ``{"median_s", "min_s", "max_s", "repeats"}``.
    """
    check_int(warmup, "warmup", minimum=0)
    check_int(repeats, "repeats", minimum=1)
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "repeats": repeats}


def measure_interleaved(fns: dict[str, Callable[[], Any]], *, warmup: int = 2,
                        repeats: int = 7, device: str | None = None) -> dict[str, dict]:
    """Time several candidates round-robin (A, B, A, B, ...) so that drift in the
    machine's speed affects them alike. Returns :func:`measure`'s dict per name."""
    check_int(warmup, "warmup", minimum=0)
    check_int(repeats, "repeats", minimum=1)
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    _sync(device)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: {"median_s": statistics.median(t), "min_s": min(t), "max_s": max(t),
                   "repeats": repeats} for name, t in times.items()}


def attention_flops(batch: int, heads: int, q_len: int, kv_len: int, head_dim: int, *,
                    causal: bool = False, backward: bool = False) -> float:
    """``4 * B * H * Lq * Lk * D`` forward, halved for causal; backward adds 2.5x forward."""
    flops = 4.0 * batch * heads * q_len * kv_len * head_dim
    if causal:
        flops /= 2
    return flops * (3.5 if backward else 1.0)


def _maxrss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def _proc_status_bytes(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


def _reset_peak_rss() -> bool:
    """Linux: writing 5 to clear_refs resets the resident-set high-water mark."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _proc_status_bytes("VmHWM") is not None
    except OSError:
        return False


def _memory_child(target: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Runs inside the subprocess: ``target`` is ``"module:function"``; the function
    takes ``kwargs``, builds its inputs and returns the zero-argument callable to run."""
    module, name = target.split(":")
    setup = getattr(importlib.import_module(module), name)
    run = setup(**kwargs)
    device = kwargs.get("device", "cpu")
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        run()
        torch.cuda.synchronize()
        return {"peak_extra_bytes": torch.cuda.max_memory_allocated() - base}
    if _reset_peak_rss():
        # Peak resident set during the run minus what was resident before it.
        base = _proc_status_bytes("VmRSS")
        run()
        return {"peak_extra_bytes": max(0, _proc_status_bytes("VmHWM") - base)}
    base = _maxrss_bytes()  # elsewhere: growth of the lifetime high-water mark
    run()
    return {"peak_extra_bytes": max(0, _maxrss_bytes() - base)}


def peak_memory(target: str, kwargs: dict[str, Any], *, timeout: float = 600.0) -> int | None:
    """Extra peak memory in bytes of one run of ``target(**kwargs)()`` in a fresh process.

    Returns None (and never raises) when the child fails, e.g. out of memory, so
    one failing case does not end a benchmark.
    """
    code = ("import json, sys; from attnkit.bench.timing import _memory_child; "
            "print(json.dumps(_memory_child(sys.argv[1], json.loads(sys.argv[2]))))")
    try:
        proc = subprocess.run([sys.executable, "-c", code, target, json.dumps(kwargs)],
                              capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())})
    except subprocess.TimeoutExpired:
        return None
    if proc.returncode != 0:
        return None
    return int(json.loads(proc.stdout.strip().splitlines()[-1])["peak_extra_bytes"])


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def write_report(rows: Sequence[dict[str, Any]], columns: Sequence[str], out_dir: str | Path,
                 name: str, *, title: str, command: str) -> tuple[Path, Path]:
    """Write ``<name>.json`` (rows + machine + command) and ``<name>.md`` atomically.

    ``name`` is a plain file name: nothing it says can place the files outside ``out_dir``.
    """
    check_report_name(name)
    out_dir = Path(out_dir)
    info = machine()
    json_path = atomic_write_json(out_dir / f"{name}.json",
                                  {"title": title, "command": command, "machine": info,
                                   "rows": list(rows)})
    header = (f"# {title}\n\nCommand: `{command}`\n\nMachine: {info['cpu']}, "
              f"{info['cores']} cores ({info['torch_threads']} torch threads), torch "
              f"{info['torch']}" + (f", GPU {info['gpu']}" if "gpu" in info else "") + "\n\n")
    md_path = atomic_write_text(out_dir / f"{name}.md", header + markdown_table(rows, columns)
                                + "\n")
    return json_path, md_path
