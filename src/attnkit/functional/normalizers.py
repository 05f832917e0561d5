"""Normalizers: turn masked scores into attention weights along the last axis.

All follow the same conventions as :func:`attnkit.attention`: ``mask`` is a bool
tensor broadcastable to ``scores`` with True = may attend, the result is computed
in float32 (float64 for float64 scores) and cast back, and a row with nothing to
attend to gets all-zero weights with finite gradients.
"""

from __future__ import annotations

import torch

from attnkit.kernels.precision import compute_dtype

__all__ = ["masked_softmax", "compute_dtype"]


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor | None = None,
                   dim: int = -1) -> torch.Tensor:
    """Softmax over ``dim`` restricted to the positions ``mask`` allows.

    Args:
        scores: ``(..., Lk)`` logits (any float dtype).
        mask: bool, broadcastable to ``scores``, True = may attend; or None.
            Positions whose score is ``-inf`` count as masked too.

    Returns:
        Weights with the shape and dtype of ``scores``; fully masked rows are zeros.
    """
    if not isinstance(scores, torch.Tensor) or not scores.is_floating_point():
        got = scores.dtype if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise TypeError(f"scores must be a floating-point tensor, got {got}")
    if mask is not None:
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            got = mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise TypeError(f"mask must be a bool tensor (True = may attend), got {got}")
        if mask.dim() > scores.dim() or any(
                size not in (1, want) for size, want in
                zip(mask.shape[::-1], scores.shape[::-1], strict=False)):
            raise ValueError(f"mask shape {tuple(mask.shape)} does not broadcast to the "
                             f"scores' shape {tuple(scores.shape)}")
    if scores.numel() == 0:
        return scores.clone()  # no weights to compute; clone keeps it in the autograd graph
    acc = compute_dtype(scores.dtype)
    logits = scores.to(acc)
    if mask is not None:
        logits = logits.masked_fill(~mask, float("-inf"))
    # A row whose logits are all -inf would make softmax 0/0: give it finite
    # logits, then zero its weights. masked_fill passes no gradient to the
    # overwritten entries, so gradients stay finite as well.
    empty = logits.amax(dim=dim, keepdim=True) == float("-inf")
    weights = torch.softmax(logits.masked_fill(empty, 0.0), dim=dim).masked_fill(empty, 0.0)
    return weights.to(scores.dtype)
