"""The ``mask_mod`` type: :class:`MaskMod`, its algebra (``&``, ``|``, ``~``) and the
questions a kernel asks of it.

Every built-in mask answers three questions as methods, so no caller needs to know
the mask classes:

* :meth:`MaskMod.tile_kinds`: which tiles of the attention matrix are empty, partial
  or full (in closed form where possible);
* :meth:`MaskMod.check_shapes`: whether the tensors the mask carries fit a call;
* :meth:`MaskMod.kernel_terms`: its plain-number description for fused kernels
  (:class:`~attnkit.kernels.spec.MaskSpec` fields), or why it has none.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from attnkit.kernels.spec import EMPTY, FULL, PARTIAL

__all__ = ["MaskMod", "Tiles", "classify", "and_masks", "or_masks", "not_mask", "And", "Or",
           "Not"]


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


def classify(full: torch.Tensor, empty: torch.Tensor) -> torch.Tensor:
    """Tile kinds (int8, same shape) from "every position allowed" / "none allowed"."""
    return torch.where(full, FULL, torch.where(empty, EMPTY, PARTIAL)).to(torch.int8)


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
        (:func:`~attnkit.masks.block_map` then checks those positions one tile at a
        time), or None when the predicate has no closed form (every tile is evaluated).
        """
        return None

    def check_shapes(self, batch: int, q_len: int, kv_len: int) -> None:
        """Raise ``ValueError`` if the tensors this mask carries do not fit a call with
        ``batch`` rows, ``Lq = q_len`` and ``Lk = kv_len`` (masks without tensors: never)."""

    def kernel_terms(self, batch: int, q_len: int, kv_len: int, fields: dict) -> str | None:
        """Add this mask's :class:`~attnkit.kernels.spec.MaskSpec` fields to ``fields``
        (terms are and-ed); return why it cannot be described that way, or None."""
        return (f"the mask_mod {type(self).__name__} has no kernel description (kernels take "
                f"causal, sliding_window, key_padding, document and their & combinations)")


def _check_mods(mods: tuple, who: str) -> tuple:
    if not mods:
        raise ValueError(f"{who} needs at least one mask_mod")
    for i, mod in enumerate(mods):
        if not callable(mod):
            raise TypeError(f"{who}: argument {i} must be a mask_mod callable, "
                            f"got {type(mod).__name__}")
    return mods


def _part_kinds(mods, tiles) -> list[tuple[torch.Tensor, bool]] | None:
    parts = []
    for mod in mods:
        result = mod.tile_kinds(tiles) if isinstance(mod, MaskMod) else None
        if result is None:
            return None
        parts.append(result)
    return parts


def _check_parts(mods, batch: int, q_len: int, kv_len: int) -> None:
    for mod in mods:
        if isinstance(mod, MaskMod):
            mod.check_shapes(batch, q_len, kv_len)


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
        return classify(full, empty), len(parts) == 1 and parts[0][1]

    def check_shapes(self, batch, q_len, kv_len):
        _check_parts(self.mods, batch, q_len, kv_len)

    def kernel_terms(self, batch, q_len, kv_len, fields):
        for mod in self.mods:
            if not isinstance(mod, MaskMod):
                return super().kernel_terms(batch, q_len, kv_len, fields)
            reason = mod.kernel_terms(batch, q_len, kv_len, fields)
            if reason:
                return reason
        return None


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
        return classify((kinds == FULL).any(0), (kinds == EMPTY).all(0)), False

    def check_shapes(self, batch, q_len, kv_len):
        _check_parts(self.mods, batch, q_len, kv_len)


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
        return classify(kinds == EMPTY, kinds == FULL), exact

    def check_shapes(self, batch, q_len, kv_len):
        _check_parts((self.mod,), batch, q_len, kv_len)


def and_masks(*mods: Callable) -> And:
    """A position may be attended only if **every** ``mask_mod`` allows it."""
    return And(_check_mods(mods, "and_masks"))


def or_masks(*mods: Callable) -> Or:
    """A position may be attended if **any** ``mask_mod`` allows it."""
    return Or(_check_mods(mods, "or_masks"))


def not_mask(mod: Callable) -> Not:
    """The complement of a ``mask_mod``."""
    return Not(_check_mods((mod,), "not_mask")[0])
