"""The reference backend: readable scaled-dot attention, the oracle of every test.

It materializes the ``(B, H, Lq, Lk)`` logits, so its memory grows with
``Lq * Lk``; it is meant to be obviously right, handle every feature (float64,
``score_mod``, any mask, returned weights) and define the semantics the fast
backends must reproduce:

* logits and softmax in float32 (float64 for float64 inputs), then the weights
  are cast back to the input dtype for the product with ``v``, as fused kernels do;
* ``score_mod`` first, then the mask (masked logits become ``-inf``);
* a query row with nothing to attend to yields zero weights and a zero output,
  and no NaN reaches the gradients.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from attnkit.functional.masks import index_grids
from attnkit.functional.normalizers import compute_dtype, masked_softmax

__all__ = ["reference_attention"]


def reference_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    mask: torch.Tensor | None,
    scale: float,
    score_mod: Callable | None = None,
    dropout_p: float = 0.0,
    return_weights: bool = False,
    normalize: Callable = masked_softmax,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Scaled-dot attention, computed plainly.

    Args:
        q: ``(B, Hq, Lq, D)``; k: ``(B, Hkv, Lk, D)``; v: ``(B, Hkv, Lk, Dv)``,
            with ``Hq % Hkv == 0`` (query head ``h`` uses key/value head ``h // (Hq // Hkv)``).
        mask: bool, broadcastable to ``(B, Hq, Lq, Lk)``, True = may attend; or None.
        scale: multiplier of ``q . k``.
        score_mod: optional ``score_mod(score, b, h, q_idx, kv_idx)``.
        dropout_p: dropout on the weights (the returned weights are pre-dropout).
        normalize: ``normalize(scores, mask) -> weights`` over the last axis, with the
            conventions of :func:`~attnkit.functional.normalizers.masked_softmax`
            (e.g. :func:`~attnkit.functional.sparsemax.sparsemax`).

    Returns:
        ``out (B, Hq, Lq, Dv)`` in the input dtype, and the weights
        ``(B, Hq, Lq, Lk)`` in the input dtype when ``return_weights`` else None.
    """
    B, Hq, Lq, _ = q.shape
    Hkv, Lk = k.shape[1], k.shape[2]
    group = Hq // Hkv
    k = k.repeat_interleave(group, dim=1)  # (B, Hq, Lk, D)
    v = v.repeat_interleave(group, dim=1)  # (B, Hq, Lk, Dv)

    acc = compute_dtype(q.dtype)
    scores = torch.matmul(q.to(acc), k.to(acc).transpose(-2, -1)) * scale  # (B, Hq, Lq, Lk)
    if score_mod is not None:
        modified = score_mod(scores, *index_grids(B, Hq, Lq, Lk, q.device))
        if not isinstance(modified, torch.Tensor):
            raise TypeError(f"score_mod must return a tensor, got {type(modified).__name__}")
        if modified.shape != scores.shape:
            raise ValueError(f"score_mod must return a tensor of shape {tuple(scores.shape)}, "
                             f"got {tuple(modified.shape)}")
        scores = modified.to(acc)
    weights = normalize(scores, mask)  # (B, Hq, Lq, Lk), float32/64; empty rows 0

    kept = F.dropout(weights, p=dropout_p) if dropout_p > 0.0 else weights
    out = torch.matmul(kept.to(v.dtype), v)  # (B, Hq, Lq, Dv)
    return out, (weights.to(q.dtype) if return_weights else None)
