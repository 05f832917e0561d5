"""The ``reference`` backend: readable scaled-dot attention, the oracle of every test.

It materializes the ``(B, H, Lq, Lk)`` logits, so its memory grows with
``Lq * Lk``; it is meant to be obviously right, handle every feature (float64,
``score_mod``, any mask, returned weights, dropout, any normalizer) and define the
semantics the fast backends must reproduce:

* logits and softmax in float32 (float64 for float64 inputs), then the weights
  are cast back to the input dtype for the product with ``v``, as fused kernels do;
* ``score_mod`` first, then the mask (masked logits become ``-inf``);
* a query row with nothing to attend to yields zero weights and a zero output,
  and no NaN reaches the gradients.

The public entry with the user's arguments is
:func:`attnkit.functional.reference.reference_attention`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from attnkit.kernels.backend import Backend, Bid
from attnkit.kernels.precision import compute_dtype
from attnkit.kernels.problem import Problem

__all__ = ["reference_forward", "BACKEND"]


def reference_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
                      mask: torch.Tensor | None, scale: float,
                      score: Callable[[torch.Tensor], torch.Tensor] | None,
                      normalize: Callable, dropout_p: float = 0.0,
                      return_weights: bool = False
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Scaled-dot attention, computed plainly.

    Args:
        q: ``(B, Hq, Lq, D)``; k: ``(B, Hkv, Lk, D)``; v: ``(B, Hkv, Lk, Dv)``,
            with ``Hq % Hkv == 0`` (query head ``h`` uses key/value head ``h // (Hq // Hkv)``).
        mask: bool, broadcastable to ``(B, Hq, Lq, Lk)``, True = may attend; or None.
        scale: multiplier of ``q . k``.
        score: ``scores (B, Hq, Lq, Lk) -> scores`` (the score_mod, already bound to
            the index grids and checked), or None.
        normalize: ``normalize(scores, mask) -> weights`` over the last axis.
        dropout_p: dropout on the weights (the returned weights are pre-dropout).

    Returns:
        ``out (B, Hq, Lq, Dv)`` in the input dtype, and the weights
        ``(B, Hq, Lq, Lk)`` in the input dtype when ``return_weights`` else None.
    """
    group = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(group, dim=1)  # (B, Hq, Lk, D)
    v = v.repeat_interleave(group, dim=1)  # (B, Hq, Lk, Dv)

    acc = compute_dtype(q.dtype)
    scores = torch.matmul(q.to(acc), k.to(acc).transpose(-2, -1)) * scale  # (B, Hq, Lq, Lk)
    if score is not None:
        scores = score(scores)
    weights = normalize(scores, mask)  # (B, Hq, Lq, Lk), float32/64; empty rows 0

    kept = F.dropout(weights, p=dropout_p) if dropout_p > 0.0 else weights
    out = torch.matmul(kept.to(v.dtype), v)  # (B, Hq, Lq, Dv)
    return out, (weights.to(q.dtype) if return_weights else None)


def _run(q, k, v, call):
    return reference_forward(q, k, v, mask=call.dense_mask(), scale=call.scale,
                             score=call.score, normalize=call.normalize,
                             dropout_p=call.dropout_p, return_weights=call.return_weights)


def _refusal(problem: Problem) -> str | None:
    return None  # the oracle handles every documented case


def _bid(problem: Problem) -> Bid:
    return Bid(1, f"the fallback, exact but it materializes all {problem.elements:,} logits")


BACKEND = Backend(
    name="reference",
    summary="readable attention that materializes the logits; every feature; the oracle",
    refusal=_refusal, run=_run, bid=_bid,
)
