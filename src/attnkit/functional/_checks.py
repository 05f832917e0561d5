"""Input validation shared by the functional entry points.

Every check raises ``ValueError`` (wrong value or shape) or ``TypeError`` (wrong
type or dtype) with a message that names the argument, what was received and
what was expected.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from attnkit._validate import check_choice, check_float
from attnkit.functional.masks import ALIGNMENTS, check_mask_mod

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_qkv(q: Any, k: Any, v: Any) -> None:
    """Shapes ``q (B, Hq, Lq, D)``, ``k (B, Hkv, Lk, D)``, ``v (B, Hkv, Lk, Dv)``."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(
                f"{name} must have 4 dims (B, H, L, D), got shape {tuple(t.shape)}; "
                f"modules take (B, L, E) - use attnkit.nn.MultiHeadAttention for that"
            )
        if t.dtype not in _FLOAT_DTYPES:
            raise TypeError(f"{name} must be float16, bfloat16, float32 or float64, got {t.dtype}")
    for name, t in (("k", k), ("v", v)):
        if t.dtype != q.dtype:
            raise TypeError(f"{name}.dtype {t.dtype} differs from q.dtype {q.dtype}; "
                            f"cast all three to one dtype")
        if t.device != q.device:
            raise ValueError(f"{name} is on {t.device} but q is on {q.device}")
    B, Hq, Lq, D = q.shape
    if k.shape[0] != B or v.shape[0] != B:
        raise ValueError(f"batch sizes differ: q {B}, k {k.shape[0]}, v {v.shape[0]}")
    if k.shape[1] != v.shape[1]:
        raise ValueError(f"k has {k.shape[1]} heads but v has {v.shape[1]}; they must match")
    if Hq == 0 or k.shape[1] == 0:
        raise ValueError(f"q and k/v need at least one head each, got q {tuple(q.shape)}, "
                         f"k {tuple(k.shape)}")
    if Hq % k.shape[1] != 0:
        raise ValueError(
            f"q heads ({Hq}) must be a multiple of k/v heads ({k.shape[1]}) for grouped-query "
            f"attention; got q {tuple(q.shape)}, k {tuple(k.shape)}"
        )
    if k.shape[2] != v.shape[2]:
        raise ValueError(f"k and v must have the same length Lk, got k {tuple(k.shape)}, "
                         f"v {tuple(v.shape)}")
    if k.shape[3] != D:
        raise ValueError(f"q and k must have the same head dim D, got q {tuple(q.shape)}, "
                         f"k {tuple(k.shape)}")
    if D == 0 or Lq == 0 or k.shape[2] == 0:
        raise ValueError(f"empty dimension: q {tuple(q.shape)}, k {tuple(k.shape)}; "
                         f"Lq, Lk and D must be >= 1")


def resolve_causal(causal: Any, q_len: int, kv_len: int) -> str | None:
    """``None``/``False`` -> None; ``True`` (only when Lq == Lk) or an alignment string."""
    if causal is None or causal is False:
        return None
    if causal is True:
        if q_len != kv_len:
            raise ValueError(
                f"causal=True is ambiguous when Lq ({q_len}) != Lk ({kv_len}): pass "
                f"causal='lower_right' (last query sees last key, as in KV-cache decoding) "
                f"or causal='upper_left'"
            )
        return "upper_left"
    if isinstance(causal, str):
        if causal not in ALIGNMENTS:
            raise ValueError(f"causal must be None, True, 'upper_left' or 'lower_right', "
                             f"got {causal!r}")
        return causal
    raise TypeError(f"causal must be None, a bool or an alignment string, got "
                    f"{type(causal).__name__}")


def check_mask(mask: Any, q: torch.Tensor, kv_len: int) -> str:
    """Returns ``"none"``, ``"tensor"`` or ``"mask_mod"``."""
    if mask is None:
        return "none"
    if isinstance(mask, torch.Tensor):
        B, Hq, Lq, _ = q.shape
        target = (B, Hq, Lq, kv_len)
        if mask.dtype != torch.bool:
            raise TypeError(
                f"mask must be a bool tensor (True = may attend), got dtype {mask.dtype}; "
                f"for an additive bias use a score_mod, for 0/1 integers use mask.bool()"
            )
        if mask.dim() not in (2, 4):
            raise ValueError(
                f"mask must be 2-D (Lq, Lk) or 4-D broadcastable to (B, H, Lq, Lk) = "
                f"{target}, got shape {tuple(mask.shape)}; a key-padding mask (B, Lk) is "
                f"written mask[:, None, None, :]"
            )
        full = (1, 1) + tuple(mask.shape) if mask.dim() == 2 else tuple(mask.shape)
        names = ("B", "H", "Lq", "Lk")
        for size, want, name in zip(full, target, names, strict=True):
            if size not in (1, want):
                raise ValueError(f"mask shape {tuple(mask.shape)} does not broadcast to "
                                 f"(B, H, Lq, Lk) = {target}: its {name} dim is {size}")
        if mask.device != q.device:
            raise ValueError(f"mask is on {mask.device} but q is on {q.device}")
        return "tensor"
    if callable(mask):
        check_mask_mod(mask, q.shape[0], q.shape[1], q.shape[2], kv_len)
        return "mask_mod"
    raise TypeError(f"mask must be None, a bool tensor or a mask_mod callable, got "
                    f"{type(mask).__name__}")


def check_score_mod(score_mod: Any) -> None:
    if score_mod is not None and not callable(score_mod):
        raise TypeError(f"score_mod must be a callable score_mod(score, b, h, q_idx, kv_idx) "
                        f"or None, got {type(score_mod).__name__}")


def apply_score_mod(score_mod: Callable, scores: torch.Tensor, b: torch.Tensor,
                    h: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor) -> torch.Tensor:
    """``score_mod(scores, b, h, q_idx, kv_idx)``, checked: a floating tensor of the shape
    of ``scores`` (cast to its dtype) with no NaN or ``+inf`` (``-inf`` masks a position).

    Raises:
        TypeError/ValueError naming ``score_mod`` when it fails or returns anything else,
        instead of an error from deep inside a kernel or a silently NaN result.
    """
    try:
        out = score_mod(scores, b, h, q_idx, kv_idx)
    except Exception as exc:
        kind = TypeError if isinstance(exc, TypeError) else ValueError
        raise kind(f"score_mod(score, b, h, q_idx, kv_idx) raised {type(exc).__name__}: "
                   f"{exc}") from exc
    if not isinstance(out, torch.Tensor) or not out.is_floating_point():
        got = f"dtype {out.dtype}" if isinstance(out, torch.Tensor) else type(out).__name__
        raise TypeError(f"score_mod must return a floating tensor of shape "
                        f"{tuple(scores.shape)}, got {got}")
    if out.shape != scores.shape:
        raise ValueError(f"score_mod must return a tensor of shape {tuple(scores.shape)}, "
                         f"got {tuple(out.shape)}")
    if bool((out.isnan() | out.isposinf()).any()):
        raise ValueError("score_mod returned NaN or +inf scores; the softmax of such a row "
                         "is undefined (return -inf to mask a position)")
    return out.to(scores.dtype)


def check_dropout(dropout_p: Any) -> float:
    return check_float(dropout_p, "dropout_p", low=0.0, high=1.0, high_open=True)


def resolve_scale(scale: Any, head_dim: int) -> float:
    if scale is None:
        return 1.0 / math.sqrt(head_dim)
    return check_float(scale, "scale")


NORMALIZERS = ("softmax", "sparsemax")


def check_normalize(normalize: Any) -> str:
    return check_choice(normalize, "normalize", NORMALIZERS)
