"""Score modifiers: ``score_mod(score, b, h, q_idx, kv_idx) -> score``.

A ``score_mod`` rewrites the scaled logits ``score = q . k * scale`` before the
softmax (masking is applied after it). It is called with ``score`` of shape
``(B, H, Lq, Lk)`` in float32 (float64 for float64 inputs) and broadcastable
index tensors ``b (B,1,1,1)``, ``h (1,H,1,1)``, ``q_idx (1,1,Lq,1)``,
``kv_idx (1,1,1,Lk)``, and must return a tensor of the same shape. Gradients
flow through it, so learned biases (:func:`relative_bias`) train. ``h`` is the
**query** head index, also under grouped-query attention.

Built-ins:

* :func:`alibi` - linear distance penalty, Press, Smith & Lewis 2021
  (arXiv:2108.12409); :func:`alibi_slopes` gives the paper's per-head slopes.
* :func:`softcap` - ``cap * tanh(score / cap)`` logit soft-capping (Gemma 2).
* :func:`relative_bias` - a learned bias per head and clipped relative
  distance (Shaw et al. 2018, arXiv:1803.02155, in its scalar-bias form as used
  by T5 without T5's log buckets).
"""

from __future__ import annotations

import dataclasses
import math

import torch

from attnkit._validate import check_bool, check_float, check_int
from attnkit.kernels.spec import ScoreSpec

__all__ = ["ScoreMod", "alibi", "alibi_slopes", "softcap", "relative_bias"]


class ScoreMod:
    """Base class of the built-in score modifiers (plain callables)."""

    def __call__(self, score: torch.Tensor, b: torch.Tensor, h: torch.Tensor,
                 q_idx: torch.Tensor, kv_idx: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def kernel_spec(self) -> ScoreSpec | str:
        """This modifier as plain numbers for fused kernels, or why it has none."""
        return (f"the score_mod {type(self).__name__} has no kernel description "
                f"(kernels take alibi and softcap)")


def alibi_slopes(num_heads: int) -> torch.Tensor:
    """ALiBi head slopes ``(num_heads,)``, float32.

    For a power of two ``n`` the slopes are the geometric sequence
    ``2^(-8/n), 2^(-16/n), ..., 2^-8``. Otherwise the paper takes the slopes of the
    nearest lower power of two and fills the rest with every other slope of the
    next power of two.
    """
    check_int(num_heads, "num_heads", minimum=1)

    def geometric(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    lower = 2 ** int(math.floor(math.log2(num_heads)))
    slopes = geometric(lower)
    if lower != num_heads:
        slopes += geometric(2 * lower)[0::2][: num_heads - lower]
    return torch.tensor(slopes, dtype=torch.float32)


@dataclasses.dataclass(frozen=True, eq=False)
class Alibi(ScoreMod):
    slopes: torch.Tensor  # (H,)
    symmetric: bool = False
    q_offset: int = 0

    def __call__(self, score, b, h, q_idx, kv_idx):
        if h.numel() > self.slopes.shape[0]:
            raise ValueError(f"alibi holds {self.slopes.shape[0]} slopes but attention has "
                             f"{h.numel()} query heads")
        slope = self.slopes.to(device=score.device, dtype=score.dtype)[h]
        distance = (kv_idx - (q_idx + self.q_offset)).to(score.dtype)  # <= 0 for past keys
        if self.symmetric:
            distance = -distance.abs()
        return score + slope * distance

    def kernel_spec(self):
        return ScoreSpec(alibi_slopes=self.slopes.float(), alibi_symmetric=self.symmetric,
                         alibi_q_offset=self.q_offset)


def alibi(slopes: torch.Tensor, *, symmetric: bool = False, q_offset: int = 0) -> Alibi:
    """ALiBi: add ``slope[h] * (kv_idx - q_idx)`` to every score.

    Past keys get a penalty growing linearly with distance. Future keys would get a
    bonus, so pair the causal form with a causal mask; ``symmetric=True`` uses
    ``-slope * |kv_idx - q_idx|`` for bidirectional attention.

    Args:
        slopes: ``(H,)`` slope per query head, e.g. :func:`alibi_slopes`.
        q_offset: absolute position of query row 0 (the cache length when decoding
            with a KV cache, so distances stay absolute).
    """
    if not isinstance(slopes, torch.Tensor) or slopes.dim() != 1:
        got = tuple(slopes.shape) if isinstance(slopes, torch.Tensor) else type(slopes).__name__
        raise ValueError(f"slopes must be a 1-D tensor (H,), got {got}")
    return Alibi(slopes, check_bool(symmetric, "symmetric"), check_int(q_offset, "q_offset"))


@dataclasses.dataclass(frozen=True, eq=False)
class Softcap(ScoreMod):
    cap: float

    def __call__(self, score, b, h, q_idx, kv_idx):
        return self.cap * torch.tanh(score / self.cap)

    def kernel_spec(self):
        return ScoreSpec(softcap=self.cap)


def softcap(cap: float) -> Softcap:
    """Soft-cap logits to ``(-cap, cap)``: ``cap * tanh(score / cap)``."""
    return Softcap(check_float(cap, "cap", low=0.0, low_open=True))


@dataclasses.dataclass(frozen=True, eq=False)
class RelativeBias(ScoreMod):
    table: torch.Tensor  # (H, 2 * max_distance + 1)
    max_distance: int

    def __call__(self, score, b, h, q_idx, kv_idx):
        if h.numel() > self.table.shape[0]:
            raise ValueError(f"relative_bias table has {self.table.shape[0]} heads but "
                             f"attention has {h.numel()} query heads")
        distance = (kv_idx - q_idx).clamp(-self.max_distance, self.max_distance)
        bias = self.table[h, distance + self.max_distance]  # (1, H, Lq, Lk)
        return score + bias.to(score.dtype)


def relative_bias(table: torch.Tensor) -> RelativeBias:
    """Learned relative-position bias: add ``table[h, clip(kv_idx - q_idx) + M]``.

    Args:
        table: ``(H, 2 * M + 1)`` bias per query head and relative distance
            ``-M .. M``; distances beyond ``M`` share the end entries. Pass an
            ``nn.Parameter`` to learn it: gradients reach the table.
    """
    if not isinstance(table, torch.Tensor) or table.dim() != 2 or table.shape[1] % 2 != 1:
        shape = tuple(table.shape) if isinstance(table, torch.Tensor) else type(table).__name__
        raise ValueError(f"table must be a 2-D tensor (H, 2 * max_distance + 1) with an odd "
                         f"second dimension, got {shape}")
    if not table.is_floating_point():
        raise TypeError(f"table must be a floating-point tensor, got {table.dtype}")
    return RelativeBias(table, (table.shape[1] - 1) // 2)
