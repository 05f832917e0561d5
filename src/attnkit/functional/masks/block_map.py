"""Block maps: which ``(block_q, block_k)`` tiles of the attention matrix a mask leaves
empty, partial or full, so tiled kernels can skip empty tiles and run full ones unmasked."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from attnkit._validate import check_int
from attnkit.functional.masks.base import MaskMod, Tiles, classify
from attnkit.functional.masks.evaluate import TensorMask, check_mask_mod, evaluate, index_grids
from attnkit.kernels.spec import EMPTY, FULL, PARTIAL

__all__ = ["BlockMap", "block_map"]


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
    check_int(block_q, "block_q", minimum=1)
    check_int(block_k, "block_k", minimum=1)
    if isinstance(mask_mod, torch.Tensor):
        if mask_mod.dtype != torch.bool or mask_mod.dim() not in (2, 4):
            raise ValueError(f"a tensor mask must be bool, 2-D or 4-D; got {mask_mod.dtype} "
                             f"of shape {tuple(mask_mod.shape)}")
        mask_mod = TensorMask(mask_mod if mask_mod.dim() == 4 else mask_mod[None, None])
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
        tile = evaluate(mask_mod, b, h, q, kv)
        tile = tile.expand(tile.shape[0], tile.shape[1], count, kv_len)
        has_any, has_all = _tile_any_all(tile, count, block_k, kv_len)
        rows.append(classify(has_all, ~has_any))  # (B|1, H|1, nk)
    shape = torch.broadcast_shapes(*(r.shape for r in rows))
    return torch.stack([r.expand(shape) for r in rows], dim=2)  # (B|1, H|1, nq, nk)


def _refine_partial(mask_mod, kinds, batch, heads, q_len, kv_len, block_q, block_k, device):
    """Check, position by position, the tiles a closed form could only call partial."""
    for i, j in (kinds == PARTIAL).flatten(0, 1).any(0).nonzero().tolist():
        q0, k0 = i * block_q, j * block_k
        rows, cols = min(block_q, q_len - q0), min(block_k, kv_len - k0)
        grids = index_grids(batch, heads, rows, cols, device, q_start=q0, kv_start=k0)
        tile = evaluate(mask_mod, *grids).expand(-1, -1, rows, cols)
        flat = tile.flatten(2)
        exact = classify(flat.all(-1), ~flat.any(-1))  # (B|1, H|1)
        shape = torch.broadcast_shapes(kinds.shape[:2], exact.shape)
        if tuple(kinds.shape[:2]) != tuple(shape):
            kinds = kinds.expand(*shape, -1, -1).clone()
        kinds[:, :, i, j] = exact
    return kinds
