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

    The public face of :func:`attnkit.kernels.reference.reference_forward`, whose docstring
    gives the shapes ``q (B, Hq, Lq, D)``, ``k (B, Hkv, Lk, D)``, ``v (B, Hkv, Lk, Dv)``, the
    bool ``mask`` (True = may attend) and the outputs ``(B, Hq, Lq, Dv)`` / weights
    ``(B, Hq, Lq, Lk)``. The difference: ``score_mod(score, b, h, q_idx, kv_idx)`` is taken
    as a raw callable and bound to the index grids here, and ``normalize`` defaults to
    :func:`~attnkit.functional.normalizers.masked_softmax`.
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
