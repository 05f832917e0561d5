"""Sparsemax: the Euclidean projection of a score vector onto the probability simplex.

Martins & Astudillo, "From Softmax to Sparsemax: A Sparse Model of Attention and
Multi-Label Classification", 2016, arXiv:1602.02068.

``sparsemax(z) = argmin_{p in simplex} ||p - z||^2 = max(z - tau(z), 0)``, where the
threshold ``tau`` makes the result sum to 1. Unlike softmax it gives exactly zero
weight to low scores, yet it is still piecewise linear and differentiable almost
everywhere. ``tau`` is found as in the paper (Algorithm 1): sort the scores in
decreasing order ``z_(1) >= z_(2) >= ...``, the support size is the largest ``k``
with ``1 + k z_(k) > z_(1) + ... + z_(k)``, and
``tau = (z_(1) + ... + z_(k) - 1) / k``.

The backward pass is the closed form of the paper (Section 2.5): with ``s`` the
support indicator and ``g`` the incoming gradient,
``grad_z = s * (g - sum(s * g) / sum(s))``.

Conventions are those of :func:`attnkit.functional.normalizers.masked_softmax`:
a bool ``mask`` with True = may attend, ``-inf`` scores count as masked, masked
positions get exactly 0, a fully masked row is all zeros with finite (zero)
gradients, and half-precision inputs are computed in float32 and cast back.

Deviation from the paper: none in the mathematics; the masking conventions above
are this library's addition.
"""

from __future__ import annotations

import torch

from attnkit.functional.normalizers import compute_dtype

__all__ = ["sparsemax"]


class _SparsemaxLastDim(torch.autograd.Function):
    """Sparsemax over the last axis of a float32/float64 tensor whose masked entries
    are ``-inf`` (an all ``-inf`` row maps to zeros)."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor) -> torch.Tensor:
        sorted_desc, _ = torch.sort(logits, dim=-1, descending=True)  # (..., n)
        finite = torch.isfinite(sorted_desc)
        # -inf entries sort last; zeroing them keeps the running sums finite, and
        # they never enter the support because 1 + k * (-inf) > anything is False.
        cumsum = torch.where(finite, sorted_desc, 0.0).cumsum(dim=-1)  # (..., n)
        ks = torch.arange(1, logits.shape[-1] + 1, device=logits.device, dtype=logits.dtype)
        in_support = (1.0 + ks * sorted_desc > cumsum) & finite  # a prefix of each row
        support_size = in_support.sum(dim=-1, keepdim=True)  # (..., 1); 0 for an empty row
        # An empty row has support 0; index 0 then gives tau = -1 and every -inf
        # entry still clamps to 0, so no special case is needed here.
        last = (support_size - 1).clamp(min=0)
        tau = (cumsum.gather(-1, last) - 1.0) / support_size.clamp(min=1).to(logits.dtype)
        probs = (logits - tau).clamp(min=0.0)  # (..., n)
        ctx.save_for_backward(probs)
        return probs

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> torch.Tensor:
        (probs,) = ctx.saved_tensors
        support = (probs > 0).to(grad_out.dtype)  # (..., n)
        size = support.sum(dim=-1, keepdim=True).clamp(min=1.0)  # empty rows: 0 / 1 = 0
        mean_on_support = (grad_out * support).sum(dim=-1, keepdim=True) / size
        return support * (grad_out - mean_on_support)


def sparsemax(scores: torch.Tensor, mask: torch.Tensor | None = None,
              dim: int = -1) -> torch.Tensor:
    """Sparsemax over ``dim`` restricted to the positions ``mask`` allows.

    Args:
        scores: ``(..., Lk, ...)`` scores of any float dtype; ``dim`` indexes ``Lk``.
            ``-inf`` scores count as masked.
        mask: bool, broadcastable to ``scores.shape``, True = may attend; or None.
        dim: the axis to normalize over.

    Returns:
        Weights with the shape and dtype of ``scores``: non-negative, summing to 1
        over ``dim`` (usually with many exact zeros); exactly 0 where masked; all 0
        in a row with nothing to attend to.

    Example:
        >>> import torch
        >>> sparsemax(torch.tensor([1.0, 0.5, -1.0]))
        tensor([0.7500, 0.2500, 0.0000])
    """
    if not isinstance(scores, torch.Tensor) or not scores.is_floating_point():
        got = scores.dtype if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise TypeError(f"scores must be a floating-point tensor, got {got}")
    if scores.dim() == 0:
        raise ValueError("scores must have at least one dim to normalize over, got a scalar")
    if not -scores.dim() <= dim < scores.dim():
        raise ValueError(f"dim {dim} is out of range for scores of shape {tuple(scores.shape)}")
    acc = compute_dtype(scores.dtype)
    logits = scores.to(acc)
    if mask is not None:
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            got = mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise TypeError(f"mask must be a bool tensor (True = may attend), got {got}")
        try:
            broadcast = torch.broadcast_shapes(mask.shape, scores.shape)
        except RuntimeError:
            broadcast = None
        if broadcast != scores.shape:
            raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to scores "
                             f"of shape {tuple(scores.shape)}")
        # masked_fill passes no gradient to the overwritten entries.
        logits = logits.masked_fill(~mask, float("-inf"))
    probs = _SparsemaxLastDim.apply(logits.movedim(dim, -1)).movedim(-1, dim)
    return probs.to(scores.dtype)
