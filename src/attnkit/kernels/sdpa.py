"""The ``sdpa`` backend: PyTorch's fused ``scaled_dot_product_attention``.

It runs plain scaled-dot attention with a dense boolean mask or a causal flag.
PyTorch (>= 2.5) already returns zeros, with finite gradients, for query rows
whose mask is all False; the tests check that on every backend.

SDPA's math path multiplies ``q`` and ``k`` by ``sqrt(scale)`` each, which is NaN for
a negative scale and turns ``scale=0`` into NaN as well; such scales are folded into
``q`` first (negation is exact, and ``0 * q`` gives the all-zero logits of the oracle).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from attnkit.kernels.backend import Backend, Bid
from attnkit.kernels.problem import Problem

__all__ = ["sdpa_attention", "BACKEND"]


def sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
                   mask: torch.Tensor | None, is_causal: bool, scale: float,
                   dropout_p: float) -> torch.Tensor:
    """Run SDPA.

    Args:
        q: ``(B, Hq, Lq, D)``; k: ``(B, Hkv, Lk, D)``; v: ``(B, Hkv, Lk, Dv)``.
        mask: bool, broadcastable to ``(B, Hq, Lq, Lk)``, True = may attend; or None.
        is_causal: upper-left causal masking (only with ``mask=None``).
        scale: any finite logit multiplier (zero and negative included).

    Returns:
        ``(B, Hq, Lq, Dv)``.
    """
    if scale < 0:
        q, scale = -q, -scale
    if scale == 0:
        q, scale = q * 0.0, 1.0
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale,
        enable_gqa=q.shape[1] != k.shape[1],
    )


def _run(q, k, v, call):
    alignment = call.alignment
    # SDPA's own causal flag is upper-left and needs no mask tensor; the two
    # alignments coincide on a square, and a single lower-right query sees every key.
    upper_left = alignment == "upper_left" or (alignment == "lower_right"
                                               and call.q_len == call.kv_len)
    sees_all = alignment is None or (alignment == "lower_right" and call.q_len == 1)
    if not call.has_mask and (upper_left or sees_all):
        if call.scale > 0:  # the common case, called directly (see sdpa_attention)
            return F.scaled_dot_product_attention(
                q, k, v, dropout_p=call.dropout_p, is_causal=upper_left, scale=call.scale,
                enable_gqa=q.shape[1] != k.shape[1]), None
        return sdpa_attention(q, k, v, mask=None, is_causal=upper_left, scale=call.scale,
                              dropout_p=call.dropout_p), None
    return sdpa_attention(q, k, v, mask=call.dense_mask(), is_causal=False, scale=call.scale,
                          dropout_p=call.dropout_p), None


def _refusal(p: Problem) -> str | None:
    if p.normalize != "softmax":
        return f"normalize={p.normalize!r}: SDPA computes a softmax"
    if p.return_weights:
        return "return_weights=True: SDPA does not expose the attention weights"
    if p.score_mod:
        return "a score_mod rewrites the logits; SDPA only takes a boolean or additive mask"
    if p.dtype == torch.float64 and p.device_type == "cuda":
        return "float64 on CUDA runs SDPA's unfused math path; the reference is as fast and exact"
    return None


def _bid(p: Problem) -> Bid:
    return Bid(3, "fused kernels for dense, causal and boolean-mask attention")


BACKEND = Backend(
    name="sdpa",
    summary="torch.nn.functional.scaled_dot_product_attention: dense, causal, bool masks",
    refusal=_refusal, run=_run, bid=_bid,
)
