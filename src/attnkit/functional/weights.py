"""Attention weights on demand: exact softmax weights for chosen heads and query rows.

Fused backends never build the ``(Lq, Lk)`` weight matrix of the whole problem.
:func:`attention_weights` rebuilds it for just the heads and rows asked for, in
memory proportional to ``B * len(heads) * len(rows) * Lk``. Given the per-row
log-sum-exp a fused forward saved (``lse``), each weight is one exponential,
``exp(score - lse)``, with no second reduction over the keys.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from attnkit.functional import _checks
from attnkit.functional._plan import CallPlan
from attnkit.functional.masks.evaluate import evaluate
from attnkit.functional.normalizers import compute_dtype, masked_softmax

__all__ = ["attention_weights"]


def _indices(value, name: str, size: int, device) -> torch.Tensor:
    """None (all), an int, a sequence of ints or an integer tensor -> index tensor."""
    if value is None:
        return torch.arange(size, device=device)
    if isinstance(value, torch.Tensor):
        if value.dtype == torch.bool or value.is_floating_point() or value.is_complex():
            raise TypeError(f"{name} must hold integers, got a tensor of dtype {value.dtype}")
        items = value.flatten().tolist()
    elif isinstance(value, int) and not isinstance(value, bool):
        items = [value]
    elif isinstance(value, (list, tuple, range)):
        items = list(value)
    else:
        raise TypeError(f"{name} must be None, an int, a sequence of ints or an integer "
                        f"tensor, got {type(value).__name__}")
    if any(isinstance(i, bool) or not isinstance(i, int) for i in items):
        raise TypeError(f"{name} must hold ints, got {items!r}")
    if not items or any(not 0 <= i < size for i in items):
        raise ValueError(f"{name} must hold indices in [0, {size}), got {items}")
    return torch.tensor(items, device=device)


def attention_weights(
    q: torch.Tensor,
    k: torch.Tensor,
    *,
    mask: torch.Tensor | Callable | None = None,
    causal: bool | str | None = None,
    scale: float | None = None,
    score_mod: Callable | None = None,
    heads: int | Sequence[int] | None = None,
    rows: int | Sequence[int] | None = None,
    lse: torch.Tensor | None = None,
) -> torch.Tensor:
    """Exact softmax weights of :func:`attnkit.attention` for selected heads and rows.

    Args:
        q: ``(B, Hq, Lq, D)``; k: ``(B, Hkv, Lk, D)``.
        mask, causal, scale, score_mod: exactly as given to :func:`attnkit.attention`.
        heads: query head indices (default: all ``Hq``).
        rows: query positions (default: all ``Lq``).
        lse: ``(B, Hq, Lq)`` log-sum-exp saved by a fused forward (``-inf`` for rows
            with nothing to attend to); when given, weights are ``exp(score - lse)``,
            each row divided by its sum (which removes the rounding of ``lse``).

    Returns:
        ``(B, len(heads), len(rows), Lk)`` in ``q``'s dtype; rows with nothing to
        attend to are zeros.
    """
    _checks.check_qkv(q, k, k)
    B, Hq, Lq, D = q.shape
    Hkv, Lk = k.shape[1], k.shape[2]
    alignment = _checks.resolve_causal(causal, Lq, Lk)
    _checks.check_mask(mask, q, Lk)
    _checks.check_score_mod(score_mod)
    scale = _checks.resolve_scale(scale, D)
    head_idx = _indices(heads, "heads", Hq, q.device)
    row_idx = _indices(rows, "rows", Lq, q.device)
    if lse is not None and (not isinstance(lse, torch.Tensor) or lse.shape != (B, Hq, Lq)):
        got = tuple(lse.shape) if isinstance(lse, torch.Tensor) else type(lse).__name__
        raise ValueError(f"lse must have shape (B, Hq, Lq) = {(B, Hq, Lq)}, got {got}")
    if lse is not None and not lse.is_floating_point():
        raise TypeError(f"lse must be a floating tensor, got dtype {lse.dtype}")
    if lse is not None and bool((lse.isnan() | lse.isposinf()).any()):
        raise ValueError("lse must hold finite log-sum-exps (or -inf for rows with nothing "
                         "to attend to), got NaN or +inf entries")

    acc = compute_dtype(q.dtype)
    q_sel = q[:, head_idx][:, :, row_idx].to(acc)  # (B, h, r, D)
    k_sel = k[:, head_idx // (Hq // Hkv)].to(acc)  # (B, h, Lk, D)
    scores = torch.matmul(q_sel, k_sel.transpose(-2, -1)) * scale  # (B, h, r, Lk)

    b = torch.arange(B, device=q.device).view(B, 1, 1, 1)
    h = head_idx.view(1, -1, 1, 1)
    qi = row_idx.view(1, 1, -1, 1)
    kv = torch.arange(Lk, device=q.device).view(1, 1, 1, Lk)
    if score_mod is not None:
        scores = _checks.apply_score_mod(score_mod, scores, b, h, qi, kv)

    plan = CallPlan.build(q, Lk, mask, alignment, None)
    allowed = None
    if plan.tensor_mask is not None:
        t = plan.tensor_mask
        t = t if t.shape[1] == 1 else t[:, head_idx]
        allowed = t if t.shape[2] == 1 else t[:, :, row_idx]
    if plan.mask_mod is not None:
        evaluated = evaluate(plan.mask_mod, b, h, qi, kv)
        allowed = evaluated if allowed is None else allowed & evaluated

    if lse is None:
        weights = masked_softmax(scores, allowed)
    else:
        lse_sel = lse[:, head_idx][:, :, row_idx].to(acc)[..., None]  # (B, h, r, 1)
        if allowed is not None:
            scores = scores.masked_fill(~allowed, float("-inf"))
        # An empty row has lse = -inf; +inf turns its weights into exp(-inf) = 0.
        weights = torch.exp(scores - lse_sel.masked_fill(lse_sel == float("-inf"),
                                                         float("inf")))
        # The saved lse and these recomputed scores round differently (another matmul
        # order, the backend's own accumulation), which scales a whole row by exp(delta);
        # dividing by the row's sum removes that factor (a row of one key gets exactly 1).
        # Empty rows sum to 0 and stay 0.
        total = weights.sum(dim=-1, keepdim=True)
        weights = weights / total.masked_fill(total == 0, 1.0)
    return weights.to(q.dtype)
