"""Dense and causal tile problems on ATen's fused CPU flash-attention kernel.

The tiled backend's forward must return ``(out, lse)`` with an exact per-row
log-sum-exp (its backward recomputes the probabilities from it, and ring attention
merges blocks with it). When a call has nothing for the tile machinery to do, no
mask (or only the upper-left causal mask), no score modifier, every tile FULL,
ATen's CPU FlashAttention-2 kernel (Dao 2023, arXiv:2307.08691), the one behind
``scaled_dot_product_attention`` on CPU, computes exactly that pair in one call:
``torch.ops.aten._scaled_dot_product_flash_attention_for_cpu`` returns the output
``(B, H, Lq, D)`` and the natural-log ``logsumexp`` ``(B, H, Lq)`` in float32 for
float32 (float64 for float64) inputs.

Deviations from the plain tiled forward: the kernel needs one head size for
queries, keys and values (``Dv == D``) and equal head counts. Grouped-query
attention without a mask stacks the ``G`` query heads of a key/value head along
the rows (the rows are independent), so keys and values are still never repeated;
with the causal mask the row index matters and the kernel is called once per query
head of a group (``G`` calls, each on all key/value heads). Half-precision inputs
are upcast to float32 first, so the output handed to the backward is the unrounded
one, as in the tiled kernels.
"""

from __future__ import annotations

import math

import torch

from attnkit.kernels.precision import compute_dtype
from attnkit.kernels.spec import FULL, KernelSpec, ScoreSpec

__all__ = ["flash_causal", "flash_forward"]


def _score_free(score: ScoreSpec) -> bool:
    return score.alibi_slopes is None and score.softcap is None


def flash_causal(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, fns,
                 terms: KernelSpec | None, scale: float) -> bool | None:
    """Whether the call fits the fused kernel: False (dense), True (upper-left causal), or
    None (it does not fit: a mask or score modifier the kernel cannot apply, ``Dv != D``,
    a device other than the CPU, or a scale that is not positive and finite: the kernel
    gives non-finite outputs for scale <= 0)."""
    if q.device.type != "cpu" or v.shape[3] != q.shape[3] or fns.score is not None:
        return None
    if not 0.0 < scale < math.inf:
        return None
    if q.dtype not in (torch.float32, torch.float64, torch.bfloat16, torch.float16):
        return None
    if terms is not None and not _score_free(terms.score):
        return None
    if fns.plan is not None and bool((fns.plan == FULL).all()):
        return False  # a mask that allows every position (a block inside a larger mask)
    if terms is None:
        return False if fns.mask is None else None
    mask = terms.mask
    if (mask.window is not None or mask.kv_lengths is not None or mask.q_doc_ids is not None
            or mask.kv_doc_ids is not None):
        return None
    if mask.causal_offset is None:
        return False
    return True if mask.causal_offset == 0 else None


def flash_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
                  causal: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(out (B, Hq, Lq, D), lse (B, Hq, Lq))`` in the accumulation dtype, for
    ``q (B, Hq, Lq, D)``, ``k``/``v`` ``(B, Hkv, Lk, D)`` with ``Lq, Lk >= 1`` and a call
    :func:`flash_causal` accepted (``causal``: its result)."""
    B, Hq, Lq, D = q.shape
    Hkv = k.shape[1]
    acc = compute_dtype(q.dtype)
    q, k, v = q.to(acc), k.to(acc), v.to(acc)
    G = Hq // Hkv
    if G > 1 and causal:  # one call per query head of each group: rows keep their index
        parts = [_flash(q.unflatten(1, (Hkv, G))[:, :, g], k, v, scale, True)
                 for g in range(G)]  # (B, Hkv, Lq, D), (B, Hkv, Lq) each
        out = torch.stack([o for o, _ in parts], dim=2).view(B, Hq, Lq, D)
        return out, torch.stack([lse for _, lse in parts], dim=2).view(B, Hq, Lq)
    if G > 1:  # the G query heads of a kv head as extra rows (rows are independent)
        q = q.reshape(B, Hkv, G * Lq, D)
    out, lse = _flash(q, k, v, scale, causal)
    if G > 1:
        out, lse = out.reshape(B, Hq, Lq, D), lse.reshape(B, Hq, Lq)
    return out, lse


def _flash(q, k, v, scale, causal):
    return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        q, k, v, 0.0, causal, scale=scale)
