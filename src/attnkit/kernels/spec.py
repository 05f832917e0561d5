"""Plain-data descriptions of structured masks and score modifiers for fused kernels.

A GPU kernel cannot call a Python ``mask_mod``; it needs the structure as
numbers. The functional layer translates the built-in ``mask_mod``/``score_mod``
objects (and the ``causal`` flag) into these specs
(``CallPlan.kernel_spec`` in :mod:`attnkit.functional._plan`, which asks each mask
class and score mod for its terms); a call whose mask or
score_mod has no spec simply does not go to a kernel that needs one.

All mask terms are combined with logical **and**; a position may be attended
when every present term allows it (True = may attend, as everywhere):

* ``causal_offset``: ``kv_idx <= q_idx + causal_offset``
  (0 = upper-left, ``Lk - Lq`` = lower-right);
* ``window``: ``(size, causal, offset)``, with ``d = q_idx + offset - kv_idx``:
  ``0 <= d < size`` when causal, ``|d| < size`` otherwise;
* ``kv_lengths``: ``(B,)`` int, ``kv_idx < kv_lengths[b]``;
* ``q_doc_ids`` ``(B, Lq)`` and ``kv_doc_ids`` ``(B, Lk)``: same document id.

Score terms, applied to ``s = q . k * scale`` in this order: ALiBi
``s + slope[h] * (kv_idx - (q_idx + alibi_q_offset))`` (or ``- slope[h] * |...|`` when
symmetric), then soft-capping ``cap * tanh(s / cap)``.
"""

from __future__ import annotations

import dataclasses

import torch

__all__ = ["MaskSpec", "ScoreSpec", "KernelSpec", "EMPTY", "PARTIAL", "FULL"]

# Tile classes of a block map: nothing may be attended (skip the tile), some
# positions may (apply the mask), every position may (no mask needed).
EMPTY, PARTIAL, FULL = 0, 1, 2


@dataclasses.dataclass(frozen=True)
class MaskSpec:
    causal_offset: int | None = None
    window: tuple[int, bool, int] | None = None
    kv_lengths: torch.Tensor | None = None  # (B,) int
    q_doc_ids: torch.Tensor | None = None  # (B, Lq) int
    kv_doc_ids: torch.Tensor | None = None  # (B, Lk) int

    @property
    def empty(self) -> bool:
        return (self.causal_offset is None and self.window is None
                and self.kv_lengths is None and self.q_doc_ids is None)


@dataclasses.dataclass(frozen=True)
class ScoreSpec:
    alibi_slopes: torch.Tensor | None = None  # (Hq,) float32
    alibi_symmetric: bool = False
    alibi_q_offset: int = 0
    softcap: float | None = None


@dataclasses.dataclass(frozen=True)
class KernelSpec:
    mask: MaskSpec
    score: ScoreSpec
