"""Evaluating a ``mask_mod``: index grids, the checked call, and dense materialization."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from attnkit.functional.masks.base import MaskMod

__all__ = ["index_grids", "evaluate", "check_mask_mod", "materialize", "TensorMask"]


def index_grids(batch: int, heads: int, q_len: int, kv_len: int,
                device: torch.device | str | None = None,
                q_start: int = 0, kv_start: int = 0):
    """Broadcastable index tensors ``b (B,1,1,1), h (1,H,1,1), q (1,1,Lq,1), kv (1,1,1,Lk)``.

    ``q_start``/``kv_start`` shift the query/key ranges (used to evaluate one tile).
    """
    b = torch.arange(batch, device=device).view(batch, 1, 1, 1)
    h = torch.arange(heads, device=device).view(1, heads, 1, 1)
    q = torch.arange(q_start, q_start + q_len, device=device).view(1, 1, q_len, 1)
    kv = torch.arange(kv_start, kv_start + kv_len, device=device).view(1, 1, 1, kv_len)
    return b, h, q, kv


def evaluate(mask_mod: Callable, b, h, q, kv) -> torch.Tensor:
    """Call a mask_mod on index grids; the result must be bool and broadcast to the
    grid's ``(B, H, rows, cols)``. Returns it as rank 4 (size-1 dims kept).

    Raises:
        TypeError/ValueError: naming ``mask_mod`` when it fails, returns something that
            is not a bool tensor, or a shape that does not broadcast.
    """
    try:
        out = mask_mod(b, h, q, kv)
    except Exception as exc:
        kind = TypeError if isinstance(exc, TypeError) else ValueError
        raise kind(f"mask_mod(b, h, q_idx, kv_idx) raised {type(exc).__name__}: {exc}") \
            from exc
    if not isinstance(out, torch.Tensor) or out.dtype != torch.bool:
        got = out.dtype if isinstance(out, torch.Tensor) else type(out).__name__
        raise TypeError(f"mask_mod must return a bool tensor, got {got}")
    target = (b.shape[0], h.shape[1], q.shape[2], kv.shape[3])
    if out.dim() > 4 or any(size not in (1, want) for size, want in
                            zip((1,) * (4 - out.dim()) + tuple(out.shape), target,
                                strict=True)):
        raise ValueError(f"mask_mod returned shape {tuple(out.shape)}, which does not "
                         f"broadcast to (B, H, Lq, Lk) = {target} for these indices")
    return out.reshape((1,) * (4 - out.dim()) + tuple(out.shape))


def check_mask_mod(mask_mod: Callable, batch: int, heads: int, q_len: int,
                   kv_len: int) -> None:
    """Check a built-in mask's own tensors against the call's shapes (ValueError if
    they disagree), so that ids or lengths of the wrong size never index silently.

    Per-batch tensors must hold 1 or ``batch`` rows; document ids must cover exactly
    ``Lq`` query and ``Lk`` key positions. Other callables are checked when evaluated.
    """
    if isinstance(mask_mod, MaskMod):
        mask_mod.check_shapes(batch, q_len, kv_len)


def materialize(mask_mod: Callable, batch: int, heads: int, q_len: int, kv_len: int,
                device: torch.device | str | None = None) -> torch.Tensor:
    """Evaluate a ``mask_mod`` densely.

    Returns:
        A bool tensor of shape ``(B|1, H|1, Lq, Lk)``, True = may attend. Dimensions
        the predicate does not depend on stay size 1 (broadcastable to
        ``(B, H, Lq, Lk)``), so a causal mask costs ``Lq * Lk`` bytes, not
        ``B * H * Lq * Lk``.
    """
    check_mask_mod(mask_mod, batch, heads, q_len, kv_len)
    out = evaluate(mask_mod, *index_grids(batch, heads, q_len, kv_len, device))
    return out.expand(out.shape[0], out.shape[1], q_len, kv_len)


@dataclasses.dataclass(frozen=True, eq=False)
class TensorMask(MaskMod):
    """A dense bool mask ``(B|1, H|1, Lq|1, Lk|1)`` seen as a mask_mod (by indexing)."""

    mask: torch.Tensor

    def __call__(self, b, h, q_idx, kv_idx):
        # Size-1 dims are indexed with a (1, 1, 1, 1) zero so they stay size 1.
        zero = torch.zeros((1, 1, 1, 1), dtype=torch.long, device=self.mask.device)
        index = [i if size > 1 else zero
                 for i, size in zip((b, h, q_idx, kv_idx), self.mask.shape, strict=True)]
        return self.mask[index[0], index[1], index[2], index[3]]

    def kernel_terms(self, batch, q_len, kv_len, fields):
        return "a dense tensor mask has no structure a kernel can use; pass a mask_mod"
