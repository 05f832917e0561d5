"""Per-token decoding latency: recurrent linear attention vs softmax attention with a KV cache.

The claim under test (Katharopoulos et al. 2020, arXiv:2006.16236, Sec. 3.4):
a causal linear-attention decoder is an RNN whose state ``(S, z)`` has a fixed
size, so producing token ``t`` costs the same at ``t = 10`` as at ``t = 4000``,
while softmax attention must read a key/value cache that grows with ``t``.

Both candidates are the attention core only (no projections), one head group of
``B x H`` heads, float32:

* ``softmax_kv_cache``: a minimal decoder over a preallocated cache whose used
  part grows by one slot per token; each step writes the new key/value and calls
  :func:`attnkit.attention` with a single query over the ``t + 1`` cached keys.
  (Preallocating avoids the extra O(t) copy a ``torch.cat``-grown cache pays.)
* ``linear_elu`` / ``linear_favor``: :func:`~attnkit.functional.linear.linear_attention_step`
  from the state after ``t`` tokens, with the ``elu + 1`` and FAVOR+ feature maps.

Each timed sample runs ``inner`` identical decode steps at the same position
(steps are idempotent: they write the same cache slot, or return a new state
without touching the old one) and the reported latency is the median per step.

Run: ``attnkit bench classic`` (with the additive-attention suite), or :func:`run`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from attnkit._validate import check_bool, check_choice
from attnkit.bench.timing import measure, write_report
from attnkit.functional.attention import attention
from attnkit.functional.linear import (
    FavorFeatures,
    FeatureMap,
    elu_plus_one,
    linear_attention,
    linear_attention_step,
)

__all__ = ["run", "softmax_decode_step"]

COLUMNS = ["mechanism", "step", "median_us", "min_us", "vs_first_step", "state_bytes"]


def softmax_decode_step(cache_k: torch.Tensor, cache_v: torch.Tensor, length: int,
                        q_t: torch.Tensor, k_t: torch.Tensor, v_t: torch.Tensor,
                        ) -> torch.Tensor:
    """One KV-cache decoding step of softmax attention.

    Args:
        cache_k: ``(B, H, capacity, D)`` preallocated keys; slots ``< length`` are filled.
        cache_v: ``(B, H, capacity, Dv)`` preallocated values.
        length: tokens already cached; the new token goes to slot ``length``.
        q_t, k_t: ``(B, H, D)`` the new token's query and key; v_t: ``(B, H, Dv)``.

    Returns:
        ``(B, H, Dv)``: the new token's output, attending to all ``length + 1`` tokens
        (a single query at the end needs no causal mask).
    """
    cache_k[:, :, length] = k_t
    cache_v[:, :, length] = v_t
    out, _ = attention(q_t[:, :, None], cache_k[:, :, : length + 1],
                       cache_v[:, :, : length + 1])  # (B, H, 1, Dv)
    return out[:, :, 0]


def _softmax_case(batch: int, heads: int, head_dim: int, step: int, capacity: int,
                  device: str) -> tuple[Callable[[], Any], int]:
    cache_k = torch.randn(batch, heads, capacity, head_dim, device=device)
    cache_v = torch.randn(batch, heads, capacity, head_dim, device=device)
    q_t, k_t, v_t = (torch.randn(batch, heads, head_dim, device=device) for _ in range(3))
    used_bytes = 2 * batch * heads * (step + 1) * head_dim * cache_k.element_size()
    return (lambda: softmax_decode_step(cache_k, cache_v, step, q_t, k_t, v_t)), used_bytes


def _linear_case(batch: int, heads: int, head_dim: int, step: int, feature_map: FeatureMap,
                 device: str) -> tuple[Callable[[], Any], int]:
    k, v = (torch.randn(batch, heads, step, head_dim, device=device) for _ in range(2))
    _, state = linear_attention(k, k, v, feature_map=feature_map)  # the state after `step`
    q_t, k_t, v_t = (torch.randn(batch, heads, head_dim, device=device) for _ in range(3))
    state_bytes = sum(t.numel() * t.element_size() for t in state)
    return (lambda: linear_attention_step(q_t, k_t, v_t, state, feature_map=feature_map),
            state_bytes)


def run(quick: bool = False, out_dir: str | Path = "benchmarks/results", *,
        device: str = "cpu", command: str | None = None,
        log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Measure per-token decoding latency at an early and a late step.

    Args:
        quick: a smoke-test size (steps 10 and 200, few repeats) instead of the full
            run (steps 10 and 4000).
        out_dir: where ``classic_linear.json`` and ``classic_linear.md`` are written.
        device: ``"cpu"`` or ``"cuda"``.
        command: the command line recorded in the report (default: this call).
        log: prints one line per row.

    Returns:
        One row per (mechanism, step): ``median_us``/``min_us`` per decode step,
        ``vs_first_step`` (median relative to the same mechanism at the first step)
        and ``state_bytes`` (the cache or recurrent state the step reads).
    """
    check_bool(quick, "quick")
    check_choice(device, "device", ("cpu", "cuda"))
    batch, heads, head_dim = 1, 8, 64
    steps = (10, 200) if quick else (10, 4000)
    inner, repeats = (2, 3) if quick else (50, 15)
    favor = FavorFeatures(head_dim, 4 * head_dim, seed=0).to(device)
    cases: dict[str, Callable[[int], tuple[Callable[[], Any], int]]] = {
        "softmax_kv_cache": lambda t: _softmax_case(batch, heads, head_dim, t, steps[-1] + 1,
                                                    device),
        "linear_elu": lambda t: _linear_case(batch, heads, head_dim, t, elu_plus_one, device),
        "linear_favor": lambda t: _linear_case(batch, heads, head_dim, t, favor, device),
    }
    rows: list[dict[str, Any]] = []
    with torch.inference_mode():
        for name, build in cases.items():
            first = None
            for step in steps:
                fn, state_bytes = build(step)

                def many(fn: Callable[[], Any] = fn) -> None:
                    for _ in range(inner):
                        fn()

                timing = measure(many, warmup=2, repeats=repeats, device=device)
                median_us = timing["median_s"] / inner * 1e6
                first = median_us if first is None else first
                rows.append({"mechanism": name, "step": step, "median_us": median_us,
                             "min_us": timing["min_s"] / inner * 1e6,
                             "vs_first_step": median_us / first, "state_bytes": state_bytes,
                             "batch": batch, "heads": heads, "head_dim": head_dim,
                             "favor_features": favor.num_features if name == "linear_favor"
                             else None, "device": device})
    for row in rows:
        log(f"{row['mechanism']:>17} step {row['step']:>5}: {row['median_us']:8.1f} us/token "
            f"({row['vs_first_step']:.2f}x step {rows[0]['step']}), state "
            f"{row['state_bytes']:,} B")
    if command is None:
        command = f"attnkit.bench.classic_linear.run(quick={quick}, device={device!r})"
    write_report(rows, COLUMNS, out_dir, "classic_linear",
                 title="Per-token decoding latency: recurrent linear attention vs softmax "
                       "with a KV cache", command=command)
    return rows
