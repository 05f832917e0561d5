"""Overhead of ``attnkit.attention(backend="auto")`` over calling SDPA directly.

The dispatcher validates the inputs, resolves the mask and picks a backend in
Python before calling :func:`torch.nn.functional.scaled_dot_product_attention`;
this suite measures what that costs on the cases where ``auto`` lands on SDPA:
dense and causal, ``B=1, H=8, D=64``, float32, forward and forward+backward.
A ratio of 1.0 means no overhead (ratio = SDPA time / attnkit time, so higher
is better and the goal is >= 0.95).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from attnkit._validate import check_int
from attnkit.bench.timing import (
    attention_flops,
    available_memory_bytes,
    check_lengths,
    measure_interleaved,
    write_report,
)
from attnkit.functional.attention import attention

__all__ = ["run", "lengths_refusal"]

COLUMNS = ("case", "L", "mode", "sdpa_ms", "attnkit_ms", "ratio_vs_sdpa", "attnkit_gflops")


def lengths_refusal(lengths: Sequence[int], heads: int = 8, head_dim: int = 64) -> str | None:
    """Why the inputs of the longest case would not fit in the memory available, or None.
    A forward+backward case holds ``q, k, v``, their gradients and ``grad_out``: seven
    ``(1, H, L, D)`` float32 tensors."""
    need = 7 * heads * max(lengths) * head_dim * 4
    have = available_memory_bytes()
    if need > 0.8 * have:
        return (f"L={max(lengths)} needs ~{need / 2**30:.1f} GiB for its inputs, "
                f"{have / 2**30:.1f} GiB available")
    return None


def _callables(L: int, causal: bool, backward: bool, heads: int = 8, head_dim: int = 64):
    q, k, v = (torch.randn(1, heads, L, head_dim, requires_grad=backward) for _ in range(3))
    grad = torch.randn(1, heads, L, head_dim)

    def direct():
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        if backward:
            out.backward(grad)

    def ours():
        out, _ = attention(q, k, v, causal=True if causal else None)
        if backward:
            out.backward(grad)

    return {"sdpa": direct, "attnkit": ours}


def run(lengths: Sequence[int] = (1024, 4096), repeats: int = 7,
        out_dir: str = "benchmarks/results", write: bool = True, *,
        command: str | None = None) -> list[dict]:
    """Time both callables per (length, dense/causal, fwd/fwd+bwd) and print each row.

    Args:
        lengths: sequence lengths (positive).
        repeats: timed runs per row (at least 1).
        out_dir: where ``overhead.json`` and ``overhead.md`` go (when ``write``).
        command: the command line recorded in the report (default: this call).
    """
    lengths = check_lengths(lengths)
    check_int(repeats, "repeats", minimum=1)
    reason = lengths_refusal(lengths)
    if reason is not None:
        raise ValueError(f"lengths: {reason}")
    rows = []
    for L in lengths:
        for causal in (False, True):
            for backward in (False, True):
                stats = measure_interleaved(_callables(L, causal, backward), repeats=repeats)
                sdpa, ours = stats["sdpa"]["median_s"], stats["attnkit"]["median_s"]
                flops = attention_flops(1, 8, L, L, 64, causal=causal, backward=backward)
                row = {"case": "causal" if causal else "dense", "L": L,
                       "mode": "fwd+bwd" if backward else "fwd",
                       "sdpa_ms": sdpa * 1e3, "attnkit_ms": ours * 1e3,
                       "ratio_vs_sdpa": sdpa / ours, "attnkit_gflops": flops / ours / 1e9}
                rows.append(row)
                print(f"{row['case']:>6} L={L:<5} {row['mode']:<7} sdpa {row['sdpa_ms']:9.2f} ms"
                      f"  attnkit {row['attnkit_ms']:9.2f} ms  ratio {row['ratio_vs_sdpa']:.3f}",
                      flush=True)
    if write:
        if command is None:
            command = f"attnkit.bench.overhead.run(lengths={lengths}, repeats={repeats})"
        json_path, md_path = write_report(
            rows, COLUMNS, out_dir, "overhead",
            title="attnkit.attention(backend='auto') vs torch SDPA called directly "
                  "(B=1, H=8, D=64, float32)", command=command)
        print(f"wrote {json_path} and {md_path}")
    return rows
