"""Chunked vs textbook additive (Bahdanau) attention: time and peak memory.

Both candidates are :class:`attnkit.nn.AdditiveAttention` with the same weights
and inputs, run forward + backward (``context.sum().backward()``); only the score
kernel differs: ``chunk_threshold=0`` (always the chunked kernel of
:mod:`attnkit.functional.additive`) vs ``chunk_threshold=None`` (the textbook
broadcast, which keeps ``(B, Lq, Lk, d)`` activations for backward).

Time: median of :func:`attnkit.bench.timing.measure`, in this process. Peak
memory: :func:`attnkit.bench.timing.peak_memory`, in a fresh process per case.
The textbook case at ``B=8, L=1024, d=256`` needs about 3 x 8 GiB in float32;
a case whose estimate exceeds the memory available is not run (its row says so)
rather than left to the out-of-memory killer, and the memory child runs under an
address-space limit so a wrong estimate fails cleanly.

Run: ``attnkit bench classic`` (with the linear-attention suite), or :func:`run`.
"""

from __future__ import annotations

import resource
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from attnkit._validate import check_bool, check_choice, check_int
from attnkit.bench.timing import (
    available_memory_bytes,
    check_lengths,
    measure,
    peak_memory,
    write_report,
)

__all__ = ["run", "setup"]

IMPLS = {"chunked": 0, "broadcast": None}  # name -> AdditiveAttention(chunk_threshold=...)
_COLUMNS = ["impl", "batch", "length", "dim", "median_s", "peak_extra_mib", "status",
            "time_ratio", "memory_ratio"]


def _estimate_bytes(impl: str, batch: int, length: int, dim: int) -> int:
    """Rough peak of one forward+backward: the broadcast backward holds the saved
    tanh, the incoming gradient and the result, three ``(B, L, L, d)`` tensors."""
    per_copy = batch * length * length * dim * 4
    scores = batch * length * length * 4
    return (3 * per_copy if impl == "broadcast" else 8 * scores) + scores


def setup(impl: str, batch: int, length: int, dim: int, device: str = "cpu", seed: int = 0,
          memory_limit_bytes: int | None = None) -> Callable[[], None]:
    """Build the module and inputs; return the zero-argument forward+backward.

    Args:
        impl: ``"chunked"`` or ``"broadcast"``.
        batch, length, dim: ``B``, ``Lq = Lk = L`` and ``Dq = Dk = d``.
        memory_limit_bytes: cap the address space of this process this much above its
            current size (used in the memory child so an overrun raises instead of
            swapping or waking the OOM killer); None for no cap.
    """
    from attnkit.nn import AdditiveAttention

    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {sorted(IMPLS)}, got {impl!r}")
    torch.manual_seed(seed)
    attn = AdditiveAttention(dim, dim, dim, chunk_threshold=IMPLS[impl], device=device)
    query = torch.randn(batch, length, dim, device=device, requires_grad=True)
    keys = torch.randn(batch, length, dim, device=device, requires_grad=True)
    if memory_limit_bytes is not None:
        with open("/proc/self/statm") as f:
            current = int(f.read().split()[0]) * resource.getpagesize()
        resource.setrlimit(resource.RLIMIT_AS, (current + memory_limit_bytes,) * 2)

    def step() -> None:
        context, _, _ = attn(query, keys)
        context.sum().backward()
        query.grad = keys.grad = None
        attn.zero_grad(set_to_none=True)

    return step


def run(quick: bool = False, out_dir: str | Path = "benchmarks/results", *,
        batch: int | None = None, lengths: Sequence[int] | None = None, dim: int | None = None,
        threads: int | None = None, device: str = "cpu",
        command: str | None = None) -> list[dict[str, Any]]:
    """Measure both implementations; write ``classic_additive.{json,md}`` to ``out_dir``.

    Args:
        quick: small sizes (B=2, L=16, d=8, 1 timed run) for smoke tests.
        out_dir: report directory.
        batch, lengths, dim: override the sizes (full: B=8, L in {256, 1024}, d=256).
        threads: ``torch.set_num_threads`` for the run (None keeps the current value).
        device: ``"cpu"`` or ``"cuda"``.
        command: the command line recorded in the report (default: this call).

    Returns:
        One row per (length, impl): ``median_s``, ``peak_extra_mib`` (None when the
        case was not run or failed, see ``status``); chunked rows add
        ``time_ratio`` and ``memory_ratio`` (broadcast / chunked, > 1 = chunked better).
    """
    check_bool(quick, "quick")
    batch = (2 if quick else 8) if batch is None else check_int(batch, "batch", minimum=1)
    lengths = check_lengths(((16,) if quick else (256, 1024)) if lengths is None else lengths)
    dim = (8 if quick else 256) if dim is None else check_int(dim, "dim", minimum=1)
    check_choice(device, "device", ("cpu", "cuda"))
    if threads is not None:
        torch.set_num_threads(check_int(threads, "threads", minimum=1))
    warmup, repeats = (1, 1) if quick else (1, 5)
    rows: list[dict[str, Any]] = []
    for length in lengths:
        by_impl = {}
        for impl in ("broadcast", "chunked"):
            row: dict[str, Any] = {"impl": impl, "batch": batch, "length": length, "dim": dim,
                                   "median_s": None, "peak_extra_mib": None, "status": "ok"}
            need, have = _estimate_bytes(impl, batch, length, dim), available_memory_bytes()
            if device == "cpu" and need > 0.8 * have:
                row["status"] = (f"not run: needs ~{need / 2**30:.1f} GiB, "
                                 f"{have / 2**30:.1f} GiB available")
            else:
                kwargs = {"impl": impl, "batch": batch, "length": length, "dim": dim,
                          "device": device}
                if device == "cpu":
                    kwargs["memory_limit_bytes"] = int(0.8 * have)
                peak = peak_memory("attnkit.bench.classic_additive:setup", kwargs)
                if peak is None:
                    row["status"] = "memory child failed (out of memory?)"
                else:
                    row["peak_extra_mib"] = peak / 2**20
                    step = setup(impl, batch, length, dim, device=device)
                    row["median_s"] = measure(step, warmup=warmup, repeats=repeats,
                                              device=device)["median_s"]
                    del step
            by_impl[impl] = row
        chunked, broadcast = by_impl["chunked"], by_impl["broadcast"]
        for key, ratio in (("median_s", "time_ratio"), ("peak_extra_mib", "memory_ratio")):
            if chunked[key] and broadcast[key]:
                chunked[ratio] = broadcast[key] / chunked[key]
        rows += [broadcast, chunked]
    if command is None:
        command = (f"attnkit.bench.classic_additive.run(quick={quick}, batch={batch}, "
                   f"lengths={lengths}, dim={dim}, threads={torch.get_num_threads()}, "
                   f"device={device!r})")
    write_report(rows, _COLUMNS, out_dir, "classic_additive",
                 title="Additive attention: chunked kernel vs textbook broadcast "
                       "(forward + backward)", command=command)
    return rows
