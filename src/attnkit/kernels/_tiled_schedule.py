"""Work lists for block-sparse execution: the key tiles each query block visits,
grouped into batches of equal shape.

The block-sparse layout follows FlexAttention's block mask (PyTorch 2.5,
``torch.nn.attention.flex_attention``): per query block, the list of key tiles that
are not EMPTY. Each list is cut into segments of at most ``max_keys`` keys ("passes");
the segments of one pass that have the same length form batches, so a batch is a
rectangle ``(g query blocks, n key tiles each)`` that runs as one batched matmul, and
no batch holds padding. A batch holds at most ``max_elements`` logits (all batch rows
and heads counted), which bounds the kernel's working memory whatever ``L`` is.
"""

from __future__ import annotations

import dataclasses

import torch

from attnkit.kernels.spec import EMPTY, FULL, PARTIAL

__all__ = ["TileBatch", "Schedule", "build_schedule", "tile_kinds"]


@dataclasses.dataclass(frozen=True)
class TileBatch:
    """``g`` query blocks against ``n`` key tiles each.

    Attributes:
        rows: ``(g,)`` int64 query-block indices, ascending.
        row_span: ``(i0, i1)`` when ``rows`` is ``i0..i1-1`` (slices instead of gathers).
        tiles: ``(g, n)`` int64 key-tile indices, ascending along each row.
        key_run: ``(j0, step)`` when row ``t`` visits the consecutive tiles
            ``j0 + t * step .. j0 + t * step + n - 1`` (``step = 0``: every row reads
            the same slab): the slabs are then strided views of the keys, never copied.
        kinds: ``(g, n)`` int8 tile kinds (PARTIAL or FULL).
        masked: whether any tile needs the mask (PARTIAL, or holding padded keys).
        edge: whether the batch reads the short last key tile (its padded keys).
    """

    rows: torch.Tensor
    row_span: tuple[int, int] | None
    tiles: torch.Tensor
    key_run: tuple[int, int] | None
    kinds: torch.Tensor
    masked: bool
    edge: bool = False


@dataclasses.dataclass(frozen=True)
class Schedule:
    batches: list[TileBatch]
    n_q: int  # query blocks
    n_k: int  # key tiles


def tile_kinds(plan: torch.Tensor | None, has_mask: bool, n_q: int, n_k: int) -> torch.Tensor:
    """The ``(n_q, n_k)`` int8 plan, or every tile PARTIAL (a mask without a plan) or
    FULL (no mask)."""
    if plan is not None:
        return plan.to(torch.int8)
    return torch.full((n_q, n_k), PARTIAL if has_mask else FULL, dtype=torch.int8)


def build_schedule(kinds: torch.Tensor, block_q: int, block_k: int, kv_len: int,
                   logits_per_pair: int, max_keys: int, max_elements: int) -> Schedule:
    """Batches covering every non-EMPTY tile of ``kinds`` exactly once.

    Args:
        kinds: int8 ``(n_q, n_k)`` tile plan.
        block_q: query-block size (rows per block).
        block_k, kv_len: key-tile size and ``Lk`` (a short last tile needs the mask).
        logits_per_pair: logits per (query row, key) pair, ``B * Hq`` (cost of a batch).
        max_keys: keys one query block visits per pass (at least one tile).
        max_elements: logits one batch may hold (at least one tile-row per batch).
    """
    n_q, n_k = kinds.shape
    kinds = kinds.cpu()
    visit = kinds != EMPTY
    counts = visit.sum(1)  # (n_q,)
    keys = torch.arange(n_k)
    # Visited tiles first, in ascending order; then the rest (never read).
    order = torch.where(visit, keys, keys + n_k).sort(dim=1).values  # (n_q, n_k)
    per_pass = max(1, max_keys // block_k)
    short_edge = kv_len % block_k != 0
    batches: list[TileBatch] = []
    most = int(counts.max()) if n_q else 0
    for p in range(-(-most // per_pass)):
        segment = (counts - p * per_pass).clamp(0, per_pass)  # tiles each row visits now
        for n in sorted(set(segment.tolist()) - {0}):
            rows_all = (segment == n).nonzero().flatten()
            g_max = max(1, max_elements // (logits_per_pair * block_q * n * block_k))
            for c0 in range(0, rows_all.numel(), g_max):
                rows = rows_all[c0:c0 + g_max]
                tiles = order[rows, p * per_pass:p * per_pass + n]  # (g, n)
                batch_kinds = kinds[rows[:, None], tiles]  # (g, n)
                batches.append(_batch(rows, tiles, batch_kinds,
                                      short_edge and bool((tiles == n_k - 1).any())))
    return Schedule(batches, n_q, n_k)


def _batch(rows, tiles, kinds, edge: bool) -> TileBatch:
    g, n = tiles.shape
    i0 = int(rows[0])
    row_span = (i0, i0 + g) if int(rows[-1]) - i0 + 1 == g else None
    starts = tiles[:, 0]
    key_run = None
    if bool((tiles == starts[:, None] + torch.arange(n)).all()):
        step = int(starts[1] - starts[0]) if g > 1 else 0
        if step >= 0 and bool((starts == starts[0] + step * torch.arange(g)).all()):
            key_run = (int(starts[0]), step)
    masked = edge or bool((kinds == PARTIAL).any())
    return TileBatch(rows, row_span, tiles, key_run, kinds, masked, edge)
