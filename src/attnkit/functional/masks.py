"""Structured attention masks as ``mask_mod`` predicates.

A ``mask_mod`` is a callable ``mask_mod(b, h, q_idx, kv_idx) -> bool tensor`` that
says whether query ``q_idx`` of batch ``b`` and head ``h`` **may attend** to key
``kv_idx`` (True = may attend, the polarity used everywhere in attnkit). It is
called with broadcastable integer index tensors, e.g. ``b: (B, 1, 1, 1)``,
``h: (1, H, 1, 1)``, ``q_idx: (1, 1, Lq, 1)``, ``kv_idx: (1, 1, 1, Lk)``, and must
return a boolean tensor broadcastable to ``(B, H, Lq, Lk)``; a predicate that
ignores ``b`` and ``h`` yields a ``(1, 1, Lq, Lk)`` result, which keeps
materialized masks small. The idea and signature follow PyTorch's FlexAttention
(``torch.nn.attention.flex_attention``).

Constructors return small :class:`MaskMod` objects: they are plain callables,
compose with ``&``, ``|`` and ``~`` (or :func:`and_masks`, :func:`or_masks`,
:func:`not_mask`), and carry their parameters so fast kernels can recognize
them. Any other callable with the same signature is accepted too.

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
import math
from collections.abc import Callable
from typing import Any

import torch

__all__ = [
    "MaskMod",
    "BlockMap",
    "EMPTY",
    "PARTIAL",
    "FULL",
    "causal",
    "sliding_window",
    "key_padding",
    "document",
    "prefix_lm",
    "and_masks",
    "or_masks",
    "not_mask",
    "materialize",
    "block_map",
    "index_grids",
]

ALIGNMENTS = ("upper_left", "lower_right")

# Tile classes reported by block_map().
EMPTY, PARTIAL, FULL = 0, 1, 2


class MaskMod:
    """Base class of the built-in mask predicates (callable, composable)."""

    def __call__(self, b: torch.Tensor, h: torch.Tensor, q_idx: torch.Tensor,
                 kv_idx: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __and__(self, other: Callable) -> MaskMod:
        return and_masks(self, other)

    def __rand__(self, other: Callable) -> MaskMod:
        return and_masks(other, self)

    def __or__(self, other: Callable) -> MaskMod:
        return or_masks(self, other)

    def __ror__(self, other: Callable) -> MaskMod:
        return or_masks(other, self)

    def __invert__(self) -> MaskMod:
        return not_mask(self)


def _alignment_offset(alignment: str, q_len: int | None, kv_len: int | None, who: str) -> int:
    """Diagonal offset: query ``i`` is aligned with key ``i + offset``."""
    if alignment not in ALIGNMENTS:
        raise ValueError(
            f"{who}: alignment must be one of {ALIGNMENTS}, got {alignment!r}"
        )
    if alignment == "upper_left":
        return 0
    if q_len is None or kv_len is None:
        raise ValueError(
            f"{who}: alignment='lower_right' needs q_len and kv_len (the diagonal "
            f"ends at the last key), got q_len={q_len}, kv_len={kv_len}"
        )
    return int(kv_len) - int(q_len)


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


@dataclasses.dataclass(frozen=True, eq=False)
class Causal(MaskMod):
    """``kv_idx <= q_idx + offset`` (offset 0 = upper-left, Lk - Lq = lower-right)."""

    offset: int = 0

    def __call__(self, b, h, q_idx, kv_idx):
        return kv_idx <= q_idx + self.offset


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
    _check_int(size, "size", 1)
    offset = _alignment_offset(alignment, q_len, kv_len, "sliding_window")
    return SlidingWindow(size=size, causal=bool(causal), offset=offset)


def _check_batch(b: torch.Tensor, size: int, who: str) -> None:
    batch = b.numel()
    if batch > size:
        raise ValueError(f"{who} holds {size} batch rows but attention has batch size {batch}")


def _as_index_tensor(value: Any, name: str, ndim: tuple[int, ...]) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        try:
            value = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(
                f"{name} must be an integer tensor, got {type(value).__name__}") from exc
    if value.dtype == torch.bool or value.is_floating_point() or value.is_complex():
        raise TypeError(f"{name} must be an integer tensor, got dtype {value.dtype}")
    if value.dim() not in ndim:
        raise ValueError(f"{name} must have {' or '.join(map(str, ndim))} dims, got shape "
                         f"{tuple(value.shape)}")
    return value


@dataclasses.dataclass(frozen=True, eq=False)
class KeyPadding(MaskMod):
    """``kv_idx < lengths[b]``: only the first ``lengths[b]`` keys are real."""

    lengths: torch.Tensor

    def __call__(self, b, h, q_idx, kv_idx):
        _check_batch(b, self.lengths.shape[0], "key_padding(lengths)")
        lengths = self.lengths.to(kv_idx.device)
        return kv_idx < lengths[b]


def key_padding(lengths: torch.Tensor) -> KeyPadding:
    """Right-padded keys: batch row ``b`` has ``lengths[b]`` valid keys.

    Args:
        lengths: ``(B,)`` integer tensor of valid key counts.
    """
    lengths = _as_index_tensor(lengths, "lengths", (1,))
    if (lengths < 0).any():
        raise ValueError(f"lengths must be >= 0, got {lengths.tolist()}")
    return KeyPadding(lengths)


@dataclasses.dataclass(frozen=True, eq=False)
class Document(MaskMod):
    """``q_doc[b, q_idx] == kv_doc[b, kv_idx]``: attend within one packed document."""

    q_doc_ids: torch.Tensor  # (B, Lq)
    kv_doc_ids: torch.Tensor  # (B, Lk)

    def __call__(self, b, h, q_idx, kv_idx):
        if self.q_doc_ids.shape[0] > 1:
            _check_batch(b, self.q_doc_ids.shape[0], "document(doc_ids)")
        q_doc = self.q_doc_ids.to(q_idx.device)
        kv_doc = self.kv_doc_ids.to(kv_idx.device)
        # b broadcasts over the batch rows; a (1, L) id tensor serves every batch.
        b = b if q_doc.shape[0] > 1 else torch.zeros_like(b)
        return q_doc[b, q_idx] == kv_doc[b, kv_idx]


def document(doc_ids: torch.Tensor, kv_doc_ids: torch.Tensor | None = None) -> Document:
    """Packed sequences: a query attends only to keys of the same document.

    Args:
        doc_ids: ``(L,)`` or ``(B, L)`` integer document id of every query position
            (and of every key position when ``kv_doc_ids`` is None).
        kv_doc_ids: ``(Lk,)`` or ``(B, Lk)`` document ids of the keys, when they
            differ from the queries' (e.g. cross-attention between packed batches).

    Combine with :func:`causal` for packed causal language modelling:
    ``document(ids) & causal()``.
    """
    doc_ids = _as_index_tensor(doc_ids, "doc_ids", (1, 2))
    kv = doc_ids if kv_doc_ids is None else _as_index_tensor(kv_doc_ids, "kv_doc_ids", (1, 2))
    doc_ids = doc_ids if doc_ids.dim() == 2 else doc_ids[None]
    kv = kv if kv.dim() == 2 else kv[None]
    if doc_ids.shape[0] != kv.shape[0] and 1 not in (doc_ids.shape[0], kv.shape[0]):
        raise ValueError(f"doc_ids batch size {doc_ids.shape[0]} and kv_doc_ids batch size "
                         f"{kv.shape[0]} differ")
    batch = max(doc_ids.shape[0], kv.shape[0])
    return Document(doc_ids.expand(batch, -1), kv.expand(batch, -1))


@dataclasses.dataclass(frozen=True, eq=False)
class PrefixLM(MaskMod):
    """Bidirectional over the first ``prefix_len`` keys, causal afterwards."""

    prefix_len: int | torch.Tensor

    def __call__(self, b, h, q_idx, kv_idx):
        prefix = self.prefix_len
        if isinstance(prefix, torch.Tensor):
            _check_batch(b, prefix.shape[0], "prefix_lm(prefix_len)")
            prefix = prefix.to(kv_idx.device)[b]
        return (kv_idx < prefix) | (kv_idx <= q_idx)


def prefix_lm(prefix_len: int | torch.Tensor) -> PrefixLM:
    """Prefix language model (T5/UniLM): full attention inside the prefix,
    causal after it.

    Args:
        prefix_len: an int, or a ``(B,)`` integer tensor with one prefix length
            per batch row.

    Example, ``prefix_len=2``, ``L = 4``::

        1 1 0 0
        1 1 0 0
        1 1 1 0
        1 1 1 1
    """
    if isinstance(prefix_len, torch.Tensor):
        prefix_len = _as_index_tensor(prefix_len, "prefix_len", (1,))
    else:
        _check_int(prefix_len, "prefix_len", 0)
    return PrefixLM(prefix_len)


@dataclasses.dataclass(frozen=True, eq=False)
class And(MaskMod):
    mods: tuple[Callable, ...]

    def __call__(self, b, h, q_idx, kv_idx):
        result = self.mods[0](b, h, q_idx, kv_idx)
        for mod in self.mods[1:]:
            result = result & mod(b, h, q_idx, kv_idx)
        return result


@dataclasses.dataclass(frozen=True, eq=False)
class Or(MaskMod):
    mods: tuple[Callable, ...]

    def __call__(self, b, h, q_idx, kv_idx):
        result = self.mods[0](b, h, q_idx, kv_idx)
        for mod in self.mods[1:]:
            result = result | mod(b, h, q_idx, kv_idx)
        return result


@dataclasses.dataclass(frozen=True, eq=False)
class Not(MaskMod):
    mod: Callable

    def __call__(self, b, h, q_idx, kv_idx):
        return ~self.mod(b, h, q_idx, kv_idx)


def _check_mods(mods: tuple, who: str) -> tuple:
    if not mods:
        raise ValueError(f"{who} needs at least one mask_mod")
    for i, mod in enumerate(mods):
        if not callable(mod):
            raise TypeError(f"{who}: argument {i} must be a mask_mod callable, "
                            f"got {type(mod).__name__}")
    return mods


def and_masks(*mods: Callable) -> And:
    """A position may be attended only if **every** ``mask_mod`` allows it."""
    return And(_check_mods(mods, "and_masks"))


def or_masks(*mods: Callable) -> Or:
    """A position may be attended if **any** ``mask_mod`` allows it."""
    return Or(_check_mods(mods, "or_masks"))


def not_mask(mod: Callable) -> Not:
    """The complement of a ``mask_mod``."""
    return Not(_check_mods((mod,), "not_mask")[0])


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


def _evaluate(mask_mod: Callable, b, h, q, kv) -> torch.Tensor:
    out = mask_mod(b, h, q, kv)
    if not isinstance(out, torch.Tensor) or out.dtype != torch.bool:
        got = out.dtype if isinstance(out, torch.Tensor) else type(out).__name__
        raise TypeError(f"mask_mod must return a bool tensor, got {got}")
    if out.dim() != 4:
        # A scalar or low-rank result is fine if it broadcasts; normalise to rank 4.
        out = out.reshape((1,) * (4 - out.dim()) + tuple(out.shape))
    return out


def materialize(mask_mod: Callable, batch: int, heads: int, q_len: int, kv_len: int,
                device: torch.device | str | None = None) -> torch.Tensor:
    """Evaluate a ``mask_mod`` densely.

    Returns:
        A bool tensor of shape ``(B|1, H|1, Lq, Lk)``, True = may attend. Dimensions
        the predicate does not depend on stay size 1 (broadcastable to
        ``(B, H, Lq, Lk)``), so a causal mask costs ``Lq * Lk`` bytes, not
        ``B * H * Lq * Lk``.
    """
    b, h, q, kv = index_grids(batch, heads, q_len, kv_len, device)
    out = _evaluate(mask_mod, b, h, q, kv)
    target = (batch, heads, q_len, kv_len)
    try:
        torch.broadcast_shapes(out.shape, target)
    except RuntimeError as exc:
        raise ValueError(f"mask_mod returned shape {tuple(out.shape)}, which does not "
                         f"broadcast to (B, H, Lq, Lk) = {target}") from exc
    shape = tuple(t if s != 1 else 1 for s, t in zip(out.shape, target, strict=True))
    shape = shape[:2] + (q_len, kv_len)
    return out.expand(shape)


@dataclasses.dataclass(frozen=True)
class BlockMap:
    """Which ``(block_q, block_k)`` tiles of the attention matrix need work.

    Attributes:
        kinds: int8 tensor ``(B|1, H|1, ceil(Lq/block_q), ceil(Lk/block_k))`` holding
            :data:`EMPTY` (nothing may be attended: skip the tile), :data:`PARTIAL`
            (apply the mask) or :data:`FULL` (every position allowed: no mask needed).
        block_q, block_k: tile sizes; the last tile in each direction may be short.
        q_len, kv_len: ``Lq`` and ``Lk``.
    """

    kinds: torch.Tensor
    block_q: int
    block_k: int
    q_len: int
    kv_len: int

    @property
    def sparsity(self) -> float:
        """Fraction of tiles that are EMPTY (work a block-skipping kernel avoids)."""
        return float((self.kinds == EMPTY).float().mean())

    def counts(self) -> dict[str, int]:
        return {name: int((self.kinds == value).sum())
                for name, value in (("empty", EMPTY), ("partial", PARTIAL), ("full", FULL))}


def block_map(mask_mod: Callable, batch: int, heads: int, q_len: int, kv_len: int, *,
              block_q: int = 128, block_k: int = 128,
              device: torch.device | str | None = None) -> BlockMap:
    """Classify every ``(block_q, block_k)`` tile as empty, partial or full.

    The mask is evaluated one row of tiles at a time, so memory stays at
    ``O(block_q * Lk)`` booleans even for long sequences.
    """
    _check_int(block_q, "block_q", 1)
    _check_int(block_k, "block_k", 1)
    n_q, n_k = math.ceil(q_len / block_q), math.ceil(kv_len / block_k)
    pad_k = n_k * block_k - kv_len
    rows = []
    for i in range(n_q):
        start = i * block_q
        rows_here = min(block_q, q_len - start)
        b, h, q, kv = index_grids(batch, heads, rows_here, kv_len, device, q_start=start)
        tile = _evaluate(mask_mod, b, h, q, kv)
        tile = tile.expand(tile.shape[0], tile.shape[1], rows_here, kv_len)
        # Pad the key axis to whole tiles; padding counts as "allowed" for the
        # `all` test and "not allowed" for the `any` test, so a short last tile is
        # classified by its real keys only.
        any_part = torch.nn.functional.pad(tile, (0, pad_k), value=False)
        all_part = torch.nn.functional.pad(tile, (0, pad_k), value=True)
        shape = tile.shape[:2] + (rows_here, n_k, block_k)
        has_any = any_part.reshape(shape).any(dim=-1).any(dim=2)
        has_all = all_part.reshape(shape).all(dim=-1).all(dim=2)
        kinds = torch.where(has_all, FULL, torch.where(has_any, PARTIAL, EMPTY))
        rows.append(kinds.to(torch.int8))
    shape = torch.broadcast_shapes(*(r.shape for r in rows)) if rows else (1, 1, 0)
    kinds = torch.stack([r.expand(shape) for r in rows], dim=2) if rows else \
        torch.zeros(1, 1, 0, n_k, dtype=torch.int8)
    return BlockMap(kinds, block_q, block_k, q_len, kv_len)
