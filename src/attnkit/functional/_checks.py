"""Input validation shared by the functional entry points.

Every check raises ``ValueError`` (wrong value or shape) or ``TypeError`` (wrong
type or dtype) with a message that names the argument, what was received and
what was expected.
"""

from __future__ import annotations

import math
from typing import Any

import torch

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
    if k.shape[1] == 0 or Hq % k.shape[1] != 0:
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


def check_dropout(dropout_p: Any) -> float:
    if isinstance(dropout_p, bool) or not isinstance(dropout_p, (int, float)):
        raise TypeError(f"dropout_p must be a float in [0, 1), got {type(dropout_p).__name__}")
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p must be in [0, 1), got {dropout_p}")
    return float(dropout_p)


def resolve_scale(scale: Any, head_dim: int) -> float:
    if scale is None:
        return 1.0 / math.sqrt(head_dim)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise TypeError(f"scale must be a float or None, got {type(scale).__name__}")
    if not math.isfinite(scale):
        raise ValueError(f"scale must be finite, got {scale}")
    return float(scale)


def check_flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


NORMALIZERS = ("softmax", "sparsemax")


def check_normalize(normalize: Any) -> str:
    if not isinstance(normalize, str) or normalize not in NORMALIZERS:
        raise ValueError(f"normalize must be one of {NORMALIZERS}, got {normalize!r}")
    return normalize
