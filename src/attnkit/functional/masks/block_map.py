"""Block maps: which ``(block_q, block_k)`` tiles of the attention matrix a mask leaves
empty, partial or full, so tiled kernels can skip empty tiles and run full ones unmasked."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from attnkit._validate import check_int
from attnkit.functional.masks.base import And, MaskMod, Not, Or, Tiles, classify
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
    closed = _closed_kinds(mask_mod, tiles)
    if closed is None:
        kinds = _evaluate_tiles(mask_mod, batch, heads, q_len, kv_len, block_q, block_k, device)
    else:
        kinds, uncertain = closed
        kinds = kinds.to(torch.int8)
        if uncertain is not None and bool(uncertain.any()):
            kinds = _refine_partial(mask_mod, kinds, uncertain, batch, heads, q_len, kv_len,
                                    block_q, block_k, device)
    return BlockMap(kinds, block_q, block_k, q_len, kv_len)


def _closed_kinds(mod, tiles: Tiles):
    """``(kinds, uncertain)`` from the closed forms, or None if a part has none.

    ``uncertain`` (bool, broadcastable to ``kinds``, or None for none) marks the
    PARTIAL tiles that may really be EMPTY or FULL. EMPTY and FULL answers of a closed
    form are always right; a combination's PARTIAL is certain where exactly one part is
    (certainly) PARTIAL and the others do not decide the tile, so only tiles where two
    parts are PARTIAL, or one part is unsure, are checked position by position.
    """
    if isinstance(mod, (And, Or)):
        parts = [_closed_kinds(m, tiles) for m in mod.mods]
        if any(p is None for p in parts):
            return None
        kinds = torch.stack(torch.broadcast_tensors(*(k for k, _ in parts)))
        if isinstance(mod, And):
            result = classify((kinds == FULL).all(0), (kinds == EMPTY).any(0))
        else:
            result = classify((kinds == FULL).any(0), (kinds == EMPTY).all(0))
        partial = kinds == PARTIAL
        unsure = [partial[i] & u for i, (_, u) in enumerate(parts) if u is not None]
        doubt = partial.sum(0) >= 2
        for u in unsure:
            doubt = doubt | u
        return result, doubt & (result == PARTIAL)
    if isinstance(mod, Not):
        inner = _closed_kinds(mod.mod, tiles)
        if inner is None:
            return None
        kinds, uncertain = inner
        return classify(kinds == EMPTY, kinds == FULL), uncertain
    closed = mod.tile_kinds(tiles) if isinstance(mod, MaskMod) else None
    if closed is None:
        return None
    kinds, exact = closed
    return kinds, None if exact else kinds == PARTIAL


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


# Positions evaluated at once when refining partial tiles (bounds the index tensors).
_REFINE_CHUNK = 1 << 21


def _elementwise(mod) -> bool:
    """Whether ``mod`` is built from attnkit's own mask classes only, which evaluate
    any broadcastable index tensors position by position (so many tiles can be
    evaluated in one call); user callables are evaluated one tile at a time."""
    if isinstance(mod, (And, Or)):
        return all(_elementwise(m) for m in mod.mods)
    if isinstance(mod, Not):
        return _elementwise(mod.mod)
    return isinstance(mod, MaskMod) and type(mod).__module__.startswith(
        "attnkit.functional.masks.")


def _refine_partial(mask_mod, kinds, uncertain, batch, heads, q_len, kv_len, block_q,
                    block_k, device):
    """Check, position by position, the tiles a closed form could only call partial
    (``uncertain``, broadcastable to ``kinds``)."""
    uncertain = uncertain & (kinds == PARTIAL)
    candidates = uncertain.flatten(0, 1).any(0).nonzero()  # (P, 2)
    if not _elementwise(mask_mod):
        for i, j in candidates.tolist():
            kinds = _set_kinds(kinds, i, j, _tile_exact(mask_mod, batch, heads, q_len, kv_len,
                                                        block_q, block_k, device, i, j))
        return kinds
    per_tile = block_q * block_k
    step = max(1, _REFINE_CHUNK // per_tile)
    for c0 in range(0, candidates.shape[0], step):
        chunk = candidates[c0:c0 + step].to(device)
        n = chunk.shape[0]
        # Edge tiles are short: clamping repeats their last real position, which leaves
        # "any allowed" and "all allowed" unchanged.
        q_idx = (chunk[:, 0, None] * block_q + torch.arange(block_q, device=device)).clamp(
            max=q_len - 1)  # (P, bq)
        kv_idx = (chunk[:, 1, None] * block_k + torch.arange(block_k, device=device)).clamp(
            max=kv_len - 1)  # (P, bk)
        b = torch.arange(batch, device=device).view(batch, 1, 1, 1)
        h = torch.arange(heads, device=device).view(1, heads, 1, 1)
        # One row per (tile, query): the rows of tile p pair its queries with its keys.
        q_grid = q_idx.reshape(1, 1, n * block_q, 1)
        kv_grid = kv_idx[:, None, :].expand(n, block_q, block_k).reshape(1, 1, n * block_q,
                                                                          block_k)
        tile = evaluate(mask_mod, b, h, q_grid, kv_grid)
        tile = tile.expand(tile.shape[0], tile.shape[1], n * block_q, block_k)
        flat = tile.reshape(tile.shape[0], tile.shape[1], n, per_tile)
        exact = classify(flat.all(-1), ~flat.any(-1))  # (B|1, H|1, P)
        shape = torch.broadcast_shapes(kinds.shape[:2], exact.shape[:2])
        if tuple(kinds.shape[:2]) != tuple(shape):
            kinds = kinds.expand(*shape, -1, -1).clone()
        rows, cols = chunk[:, 0].to(kinds.device), chunk[:, 1].to(kinds.device)
        kinds[:, :, rows, cols] = exact.expand(*shape, n).to(kinds.device)
    return kinds


def _tile_exact(mask_mod, batch, heads, q_len, kv_len, block_q, block_k, device, i, j):
    q0, k0 = i * block_q, j * block_k
    rows, cols = min(block_q, q_len - q0), min(block_k, kv_len - k0)
    grids = index_grids(batch, heads, rows, cols, device, q_start=q0, kv_start=k0)
    tile = evaluate(mask_mod, *grids).expand(-1, -1, rows, cols)
    flat = tile.flatten(2)
    return classify(flat.all(-1), ~flat.any(-1))  # (B|1, H|1)


def _set_kinds(kinds, i, j, exact):
    shape = torch.broadcast_shapes(kinds.shape[:2], exact.shape)
    if tuple(kinds.shape[:2]) != tuple(shape):
        kinds = kinds.expand(*shape, -1, -1).clone()
    kinds[:, :, i, j] = exact
    return kinds
