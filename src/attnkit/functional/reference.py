"""``reference_attention``: the readable oracle with plain arguments.

The computation itself is the ``reference`` backend
(:func:`attnkit.kernels.reference.reference_forward`, whose docstring states the
semantics every fast backend must reproduce); this entry binds a ``score_mod`` to the
index grids, checks what it returns, and defaults to the masked softmax.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from attnkit.functional._checks import apply_score_mod
from attnkit.functional.masks import index_grids
from attnkit.functional.normalizers import masked_softmax
from attnkit.kernels.reference import reference_forward

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
    """Scaled-dot attention, computed plainly (no argument checks beyond the score_mod's).

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
    score = None
    if score_mod is not None:
        B, Hq, Lq, _ = q.shape
        grids = index_grids(B, Hq, Lq, k.shape[2], q.device)
        score = functools.partial(_bound, score_mod, grids)
    return reference_forward(q, k, v, mask=mask, scale=scale, score=score,
                             normalize=normalize, dropout_p=dropout_p,
                             return_weights=return_weights)


def _bound(score_mod: Callable, grids: tuple, scores: torch.Tensor) -> torch.Tensor:
    return apply_score_mod(score_mod, scores, *grids)
