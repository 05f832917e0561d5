"""The ``sdpa`` backend: PyTorch's fused ``scaled_dot_product_attention``.

It runs plain scaled-dot attention with a dense boolean mask or a causal flag.
PyTorch (>= 2.5) already returns zeros, with finite gradients, for query rows
whose mask is all False; the tests check that on every backend.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["sdpa_attention"]


def sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
                   mask: torch.Tensor | None, is_causal: bool, scale: float,
                   dropout_p: float) -> torch.Tensor:
    """Run SDPA.

    Args:
        q: ``(B, Hq, Lq, D)``; k: ``(B, Hkv, Lk, D)``; v: ``(B, Hkv, Lk, Dv)``.
        mask: bool, broadcastable to ``(B, Hq, Lq, Lk)``, True = may attend; or None.
        is_causal: upper-left causal masking (only with ``mask=None``).

    Returns:
        ``(B, Hq, Lq, Dv)``.
    """
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale,
        enable_gqa=q.shape[1] != k.shape[1],
    )
