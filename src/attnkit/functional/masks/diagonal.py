"""Masks along the (aligned) diagonal: :func:`causal` and :func:`sliding_window`.

Causal alignment when ``Lq != Lk`` (1 = may attend), ``Lq = 2``, ``Lk = 5``::

    upper_left         lower_right
    1 0 0 0 0          1 1 1 1 0
    1 1 0 0 0          1 1 1 1 1

``upper_left`` aligns query 0 with key 0 (``kv_idx <= q_idx``); ``lower_right``
aligns the last query with the last key (``kv_idx <= q_idx + Lk - Lq``), which
is what decoding with a KV cache needs. With ``Lq > Lk`` lower-right leaves the
first ``Lq - Lk`` query rows with nothing to attend to; those rows produce zeros.
"""

from __future__ import annotations

import dataclasses

from attnkit._validate import check_int
from attnkit.functional.masks.base import MaskMod, classify

__all__ = ["ALIGNMENTS", "Causal", "SlidingWindow", "causal", "sliding_window"]

ALIGNMENTS = ("upper_left", "lower_right")


def _alignment_offset(alignment: str, q_len: int | None, kv_len: int | None, who: str) -> int:
    """Diagonal offset: query ``i`` is aligned with key ``i + offset``."""
    if alignment not in ALIGNMENTS:
        raise ValueError(f"{who}: alignment must be one of {ALIGNMENTS}, got {alignment!r}")
    if alignment == "upper_left":
        return 0
    if q_len is None or kv_len is None:
        raise ValueError(
            f"{who}: alignment='lower_right' needs q_len and kv_len (the diagonal "
            f"ends at the last key), got q_len={q_len}, kv_len={kv_len}"
        )
    return check_int(kv_len, "kv_len", minimum=0, owner=who) - \
        check_int(q_len, "q_len", minimum=0, owner=who)


@dataclasses.dataclass(frozen=True, eq=False)
class Causal(MaskMod):
    """``kv_idx <= q_idx + offset`` (offset 0 = upper-left, Lk - Lq = lower-right)."""

    offset: int = 0

    def __call__(self, b, h, q_idx, kv_idx):
        return kv_idx <= q_idx + self.offset

    def tile_kinds(self, tiles):
        full = tiles.kv_last <= tiles.q_first + self.offset
        empty = tiles.kv_first > tiles.q_last + self.offset
        return classify(full, empty)[None, None], True  # (1, 1, nq, nk)

    def kernel_terms(self, batch, q_len, kv_len, fields):
        previous = fields.get("causal_offset")
        fields["causal_offset"] = self.offset if previous is None else min(previous,
                                                                           self.offset)
        return None


def causal(alignment: str = "upper_left", *, q_len: int | None = None,
           kv_len: int | None = None) -> Causal:
    """Causal mask: query ``i`` may attend to keys up to its aligned position.

    Args:
        alignment: ``"upper_left"`` (query 0 sees key 0) or ``"lower_right"``
            (last query sees last key; needs ``q_len`` and ``kv_len``). See the
            module docstring for the 0/1 picture.
        q_len, kv_len: ``Lq`` and ``Lk``, required for ``"lower_right"``.
    """
    return Causal(_alignment_offset(alignment, q_len, kv_len, "causal"))


@dataclasses.dataclass(frozen=True, eq=False)
class SlidingWindow(MaskMod):
    """Local attention within ``size`` positions of the (aligned) diagonal."""

    size: int
    causal: bool = True
    offset: int = 0

    def __call__(self, b, h, q_idx, kv_idx):
        distance = q_idx + self.offset - kv_idx  # > 0: key lies in the past
        if self.causal:
            return (distance >= 0) & (distance < self.size)
        return distance.abs() < self.size

    def tile_kinds(self, tiles):
        # Over a tile the distance q + offset - kv spans [low, high].
        low = tiles.q_first + self.offset - tiles.kv_last
        high = tiles.q_last + self.offset - tiles.kv_first
        lowest_allowed = 0 if self.causal else -self.size + 1
        full = (low >= lowest_allowed) & (high < self.size)
        empty = (high < lowest_allowed) | (low >= self.size)
        return classify(full, empty)[None, None], True  # (1, 1, nq, nk)

    def kernel_terms(self, batch, q_len, kv_len, fields):
        if "window" in fields:
            return "two sliding windows in one mask"
        fields["window"] = (self.size, self.causal, self.offset)
        return None


def sliding_window(size: int, causal: bool = True, *, alignment: str = "upper_left",
                   q_len: int | None = None, kv_len: int | None = None) -> SlidingWindow:
    """Sliding-window (local) attention.

    ``causal=True``: query ``i`` sees the ``size`` most recent keys including its
    own position, ``i - size < j <= i``. ``causal=False``: keys within distance
    ``size - 1`` on either side, ``|i - j| < size``. ``alignment``/``q_len``/
    ``kv_len`` place the diagonal as in :func:`causal`.

    Example, ``size=2``, causal, ``Lq = Lk = 4``::

        1 0 0 0
        1 1 0 0
        0 1 1 0
        0 0 1 1
    """
    check_int(size, "size", minimum=1)
    offset = _alignment_offset(alignment, q_len, kv_len, "sliding_window")
    return SlidingWindow(size=size, causal=bool(causal), offset=offset)
