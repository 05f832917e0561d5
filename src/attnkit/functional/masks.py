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
from collections.abc import Callable
from typing import Any

import torch

from attnkit.kernels.spec import EMPTY, FULL, PARTIAL

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
    "check_mask_mod",
]

ALIGNMENTS = ("upper_left", "lower_right")


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

    def tile_kinds(self, tiles: Tiles) -> tuple[torch.Tensor, bool] | None:
        """Classify tiles without evaluating every position.

        Returns ``(kinds, exact)`` with ``kinds`` int8 ``(B|1, H|1, nq, nk)``, where
        ``exact=False`` means PARTIAL may be a conservative answer for some tiles
        (:func:`block_map` then checks those positions one tile at a time), or None
        when the predicate has no closed form (every tile is evaluated).
        """
        return None


@dataclasses.dataclass(frozen=True)
class Tiles:
    """Tile geometry: first/last row of each query tile ``(nq, 1)`` and first/last
    key of each key tile ``(1, nk)`` (inclusive bounds)."""

    q_first: torch.Tensor
    q_last: torch.Tensor
    kv_first: torch.Tensor
    kv_last: torch.Tensor
    block_q: int
    block_k: int

    @classmethod
    def make(cls, q_len: int, kv_len: int, block_q: int, block_k: int, device=None) -> Tiles:
        q_first = torch.arange(0, q_len, block_q, device=device)[:, None]
        kv_first = torch.arange(0, kv_len, block_k, device=device)[None, :]
        return cls(q_first, (q_first + block_q - 1).clamp(max=q_len - 1),
                   kv_first, (kv_first + block_k - 1).clamp(max=kv_len - 1), block_q, block_k)


def _classify(full: torch.Tensor, empty: torch.Tensor) -> torch.Tensor:
    """Tile kinds (int8, same shape) from "every position allowed" / "none allowed"."""
    return torch.where(full, FULL, torch.where(empty, EMPTY, PARTIAL)).to(torch.int8)


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

    def tile_kinds(self, tiles):
        full = tiles.kv_last <= tiles.q_first + self.offset
        empty = tiles.kv_first > tiles.q_last + self.offset
        return _classify(full, empty)[None, None], True  # (1, 1, nq, nk)


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
        return _classify(full, empty)[None, None], True  # (1, 1, nq, nk)


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

    def tile_kinds(self, tiles):
        lengths = self.lengths.to(tiles.kv_first.device)[:, None, None]  # (B, 1, 1)
        kinds = _classify(tiles.kv_last < lengths, tiles.kv_first >= lengths)  # (B, 1, nk)
        return kinds[:, None].expand(-1, 1, tiles.q_first.shape[0], -1), True  # (B,1,nq,nk)


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
        # b broadcasts over the batch rows; a (1, L) id tensor serves every batch
        # and keeps the result's batch dim at size 1.
        if q_doc.shape[0] == 1:
            b = torch.zeros((1,) * b.dim(), dtype=b.dtype, device=b.device)
        return q_doc[b, q_idx] == kv_doc[b, kv_idx]

    def tile_kinds(self, tiles):
        def ranges(ids: torch.Tensor, block: int) -> tuple[torch.Tensor, torch.Tensor]:
            """Smallest and largest id in each block of positions: two ``(B, n)``."""
            pad = (-ids.shape[1]) % block
            lo = torch.nn.functional.pad(ids, (0, pad), value=int(ids.max()))
            hi = torch.nn.functional.pad(ids, (0, pad), value=int(ids.min()))
            return (lo.view(ids.shape[0], -1, block).amin(-1),
                    hi.view(ids.shape[0], -1, block).amax(-1))

        device = tiles.q_first.device
        q_lo, q_hi = ranges(self.q_doc_ids.to(device), tiles.block_q)
        kv_lo, kv_hi = ranges(self.kv_doc_ids.to(device), tiles.block_k)
        q_lo, q_hi = q_lo[:, :, None], q_hi[:, :, None]  # (B, nq, 1)
        kv_lo, kv_hi = kv_lo[:, None, :], kv_hi[:, None, :]  # (B, 1, nk)
        # Disjoint id ranges cannot share a document; a single shared id is full.
        # Anything else is only "maybe partial" (ids need not be sorted).
        empty = (q_hi < kv_lo) | (kv_hi < q_lo)
        full = (q_lo == q_hi) & (kv_lo == kv_hi) & (q_lo == kv_lo)
        return _classify(full, empty)[:, None], False  # (B, 1, nq, nk)


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

    def tile_kinds(self, tiles):
        prefix = self.prefix_len
        if isinstance(prefix, torch.Tensor):
            prefix = prefix.to(tiles.q_first.device)[:, None, None]  # (B, 1, 1)
        # Every key of the tile is either inside the prefix or not after the first row.
        full = (tiles.kv_last < prefix) | (tiles.kv_last <= tiles.q_first)
        empty = (tiles.kv_first >= prefix) & (tiles.kv_first > tiles.q_last)
        kinds = _classify(full, empty)
        return (kinds[:, None] if kinds.dim() == 3 else kinds[None, None]), True


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
        if (prefix_len < 0).any():
            raise ValueError(f"prefix_len must be >= 0, got {prefix_len.tolist()}")
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

    def tile_kinds(self, tiles):
        parts = _part_kinds(self.mods, tiles)
        if parts is None:
            return None
        kinds = torch.stack(torch.broadcast_tensors(*(k for k, _ in parts)))
        empty = (kinds == EMPTY).any(0)
        full = (kinds == FULL).all(0)
        # "partial & partial" may still be empty (e.g. disjoint regions): not exact.
        return _classify(full, empty), len(parts) == 1 and parts[0][1]


@dataclasses.dataclass(frozen=True, eq=False)
class Or(MaskMod):
    mods: tuple[Callable, ...]

    def __call__(self, b, h, q_idx, kv_idx):
        result = self.mods[0](b, h, q_idx, kv_idx)
        for mod in self.mods[1:]:
            result = result | mod(b, h, q_idx, kv_idx)
        return result

    def tile_kinds(self, tiles):
        parts = _part_kinds(self.mods, tiles)
        if parts is None:
            return None
        kinds = torch.stack(torch.broadcast_tensors(*(k for k, _ in parts)))
        # "partial | partial" may still be full: not exact.
        return _classify((kinds == FULL).any(0), (kinds == EMPTY).all(0)), False


@dataclasses.dataclass(frozen=True, eq=False)
class Not(MaskMod):
    mod: Callable

    def __call__(self, b, h, q_idx, kv_idx):
        return ~self.mod(b, h, q_idx, kv_idx)

    def tile_kinds(self, tiles):
        inner = self.mod.tile_kinds(tiles) if isinstance(self.mod, MaskMod) else None
        if inner is None:
            return None
        kinds, exact = inner
        return _classify(kinds == EMPTY, kinds == FULL), exact


def _part_kinds(mods, tiles) -> list[tuple[torch.Tensor, bool]] | None:
    parts = []
    for mod in mods:
        result = mod.tile_kinds(tiles) if isinstance(mod, MaskMod) else None
        if result is None:
            return None
        parts.append(result)
    return parts


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
    """Call a mask_mod on index grids; the result must be bool and broadcast to the
    grid's ``(B, H, rows, cols)``. Returns it as rank 4 (size-1 dims kept)."""
    out = mask_mod(b, h, q, kv)
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
    ``Lq`` query and ``Lk`` key positions.
    """
    def rows(tensor: torch.Tensor, who: str) -> None:
        if tensor.shape[0] not in (1, batch):
            raise ValueError(f"{who} holds {tensor.shape[0]} batch rows but attention has "
                             f"batch size {batch}")

    if isinstance(mask_mod, (And, Or)):
        for mod in mask_mod.mods:
            check_mask_mod(mod, batch, heads, q_len, kv_len)
    elif isinstance(mask_mod, Not):
        check_mask_mod(mask_mod.mod, batch, heads, q_len, kv_len)
    elif isinstance(mask_mod, KeyPadding):
        rows(mask_mod.lengths, "key_padding(lengths)")
    elif isinstance(mask_mod, PrefixLM) and isinstance(mask_mod.prefix_len, torch.Tensor):
        rows(mask_mod.prefix_len, "prefix_lm(prefix_len)")
    elif isinstance(mask_mod, Document):
        q_ids, kv_ids = mask_mod.q_doc_ids, mask_mod.kv_doc_ids
        if q_ids.shape[1] != q_len or kv_ids.shape[1] != kv_len:
            raise ValueError(f"document(doc_ids) covers {q_ids.shape[1]} query and "
                             f"{kv_ids.shape[1]} key positions, but Lq = {q_len} and "
                             f"Lk = {kv_len}; pass one id per position")
        rows(q_ids, "document(doc_ids)")


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
    b, h, q, kv = index_grids(batch, heads, q_len, kv_len, device)
    out = _evaluate(mask_mod, b, h, q, kv)
    return out.expand(out.shape[0], out.shape[1], q_len, kv_len)


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


@dataclasses.dataclass(frozen=True, eq=False)
class _TensorMask(MaskMod):
    """A dense bool mask ``(B|1, H|1, Lq|1, Lk|1)`` seen as a mask_mod (by indexing)."""

    mask: torch.Tensor

    def __call__(self, b, h, q_idx, kv_idx):
        # Size-1 dims are indexed with a (1, 1, 1, 1) zero so they stay size 1.
        zero = torch.zeros((1, 1, 1, 1), dtype=torch.long, device=self.mask.device)
        index = [i if size > 1 else zero
                 for i, size in zip((b, h, q_idx, kv_idx), self.mask.shape, strict=True)]
        return self.mask[index[0], index[1], index[2], index[3]]


def block_map(mask_mod: Callable | torch.Tensor, batch: int, heads: int, q_len: int,
              kv_len: int, *,
              block_q: int = 128, block_k: int = 128,
              device: torch.device | str | None = None) -> BlockMap:
    """Classify every ``(block_q, block_k)`` tile as empty, partial or full.

    ``mask_mod`` may also be a dense bool tensor ``(Lq, Lk)`` or 4-D broadcastable
    to ``(B, H, Lq, Lk)``. The built-in masks classify tiles in closed form (cost
    ``O(tiles)``); where that
    answer may be conservative (combinations, document ids) the tiles it calls
    partial are checked position by position. Other callables are evaluated one
    row of tiles at a time, so memory stays at ``O(block_q * Lk)`` booleans.

    Returns:
        A :class:`BlockMap` whose ``kinds`` is ``(B|1, H|1, ceil(Lq/block_q),
        ceil(Lk/block_k))``, exact for every tile.
    """
    _check_int(block_q, "block_q", 1)
    _check_int(block_k, "block_k", 1)
    if isinstance(mask_mod, torch.Tensor):
        if mask_mod.dtype != torch.bool or mask_mod.dim() not in (2, 4):
            raise ValueError(f"a tensor mask must be bool, 2-D or 4-D; got {mask_mod.dtype} "
                             f"of shape {tuple(mask_mod.shape)}")
        mask_mod = _TensorMask(mask_mod if mask_mod.dim() == 4 else mask_mod[None, None])
    check_mask_mod(mask_mod, batch, heads, q_len, kv_len)
    tiles = Tiles.make(q_len, kv_len, block_q, block_k, device)
    closed = mask_mod.tile_kinds(tiles) if isinstance(mask_mod, MaskMod) else None
    if closed is None:
        kinds = _evaluate_tiles(mask_mod, batch, heads, q_len, kv_len, block_q, block_k, device)
    else:
        kinds, exact = closed
        kinds = kinds.to(torch.int8)
        if not exact:
            kinds = _refine_partial(mask_mod, kinds, batch, heads, q_len, kv_len, block_q,
                                    block_k, device)
    return BlockMap(kinds, block_q, block_k, q_len, kv_len)


def _tile_any_all(tile: torch.Tensor, rows: int, block_k: int, kv_len: int):
    """``(any, all)`` per key tile of a ``(B|1, H|1, rows, kv_len)`` boolean slab."""
    pad = (-kv_len) % block_k
    # Padding counts as "not allowed" for `any` and "allowed" for `all`, so a short
    # last tile is classified by its real keys only.
    any_part = torch.nn.functional.pad(tile, (0, pad), value=False)
    all_part = torch.nn.functional.pad(tile, (0, pad), value=True)
    shape = tile.shape[:2] + (rows, -1, block_k)
    return (any_part.reshape(shape).any(dim=-1).any(dim=2),
            all_part.reshape(shape).all(dim=-1).all(dim=2))


def _evaluate_tiles(mask_mod, batch, heads, q_len, kv_len, block_q, block_k, device):
    rows = []
    for start in range(0, q_len, block_q):
        count = min(block_q, q_len - start)
        b, h, q, kv = index_grids(batch, heads, count, kv_len, device, q_start=start)
        tile = _evaluate(mask_mod, b, h, q, kv)
        tile = tile.expand(tile.shape[0], tile.shape[1], count, kv_len)
        has_any, has_all = _tile_any_all(tile, count, block_k, kv_len)
        rows.append(_classify(has_all, ~has_any))  # (B|1, H|1, nk)
    shape = torch.broadcast_shapes(*(r.shape for r in rows))
    return torch.stack([r.expand(shape) for r in rows], dim=2)  # (B|1, H|1, nq, nk)


def _refine_partial(mask_mod, kinds, batch, heads, q_len, kv_len, block_q, block_k, device):
    """Check, position by position, the tiles a closed form could only call partial."""
    for i, j in (kinds == PARTIAL).flatten(0, 1).any(0).nonzero().tolist():
        q0, k0 = i * block_q, j * block_k
        rows, cols = min(block_q, q_len - q0), min(block_k, kv_len - k0)
        grids = index_grids(batch, heads, rows, cols, device, q_start=q0, kv_start=k0)
        tile = _evaluate(mask_mod, *grids).expand(-1, -1, rows, cols)
        flat = tile.flatten(2)
        exact = _classify(flat.all(-1), ~flat.any(-1))  # (B|1, H|1)
        shape = torch.broadcast_shapes(kinds.shape[:2], exact.shape)
        if tuple(kinds.shape[:2]) != tuple(shape):
            kinds = kinds.expand(*shape, -1, -1).clone()
        kinds[:, :, i, j] = exact
    return kinds
