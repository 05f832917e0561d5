"""Which positions of a sequence each rank holds: the ``contiguous`` and ``zigzag`` layouts,
and :func:`shard` / :func:`unshard` between full and sharded tensors.

A sequence of ``L`` positions is split over ``W`` ranks, ``L / W`` positions each.

* ``"contiguous"``: rank ``r`` holds positions ``r L/W .. (r+1) L/W - 1``. Simple, but
  under a causal mask rank ``W-1`` attends to ``W`` blocks and rank 0 to one.
* ``"zigzag"``: the sequence is cut into ``2W`` chunks of ``c = L / (2W)``; rank ``r``
  holds chunks ``r`` and ``2W-1-r``, in that order. Every rank then holds one early and
  one late chunk, so causal work is the same on every rank (Brandon et al. 2023,
  "Striped Attention", arXiv:2311.09431, discuss this imbalance; the zigzag split is
  the one Llama 3 used for context parallelism, arXiv:2407.21783, section 3.3).

``L = 8, W = 2`` (the digit is the rank holding each position)::

    contiguous   0 0 0 0 1 1 1 1
    zigzag       0 0 1 1 1 1 0 0

Each rank's positions form one (contiguous) or two (zigzag) runs of consecutive
positions: :func:`segments` returns them, and everything that needs global positions
(masks, position embeddings) works run by run.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from attnkit._validate import check_choice, check_int
from attnkit.distributed.agree import checked_agree

__all__ = ["LAYOUTS", "segments", "shard_positions", "shard", "unshard", "world_and_rank"]

LAYOUTS = ("contiguous", "zigzag")


def world_and_rank(group: dist.ProcessGroup | None) -> tuple[int, int]:
    """``(W, r)`` of ``group`` (None: the default group); RuntimeError if torch.distributed
    is not initialized."""
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError("torch.distributed is not initialized: call "
                           "torch.distributed.init_process_group(...) first (or launch with "
                           "torchrun)")
    return dist.get_world_size(group), dist.get_rank(group)


def _pieces(layout: str, world_size: int) -> int:
    return world_size if layout == "contiguous" else 2 * world_size


def segments(seq_len: int, world_size: int, rank: int, layout: str = "zigzag",
             ) -> tuple[tuple[int, int], ...]:
    """The runs of global positions rank ``rank`` holds, in its local order.

    Args:
        seq_len: ``L``, the full sequence length (a multiple of ``W`` for contiguous,
            ``2W`` for zigzag).
        world_size: ``W``.
        rank: ``r`` in ``[0, W)``.
        layout: ``"contiguous"`` or ``"zigzag"``.

    Returns:
        ``((start, length), ...)``: one run for contiguous, two for zigzag. Local position
        ``i`` of the first run is global position ``start + i``, and so on.
    """
    check_choice(layout, "layout", LAYOUTS)
    check_int(world_size, "world_size", minimum=1)
    check_int(rank, "rank", minimum=0, maximum=world_size - 1)
    check_int(seq_len, "seq_len", minimum=1)
    pieces = _pieces(layout, world_size)
    if seq_len % pieces:
        raise ValueError(f"seq_len: layout={layout!r} splits a sequence into {pieces} equal "
                         f"pieces over {world_size} ranks, but seq_len = {seq_len} is not a "
                         f"multiple of {pieces}")
    chunk = seq_len // pieces
    if layout == "contiguous":
        return ((rank * chunk, chunk),)
    return ((rank * chunk, chunk), ((2 * world_size - 1 - rank) * chunk, chunk))


def shard_positions(seq_len: int, world_size: int, rank: int, layout: str = "zigzag",
                    device: torch.device | str | None = None) -> torch.Tensor:
    """Global positions of rank ``rank``'s shard: long ``(L / W,)``, in local order."""
    return torch.cat([torch.arange(start, start + length, device=device)
                      for start, length in segments(seq_len, world_size, rank, layout)])


def shard(x: torch.Tensor, dim: int, layout: str = "zigzag",
          group: dist.ProcessGroup | None = None) -> torch.Tensor:
    """This rank's shard of a full sequence.

    Args:
        x: the full tensor, identical on every rank; its dim ``dim`` is the sequence, of
            length ``L`` (e.g. ``(B, H, L, D)`` with ``dim=2``, or token ids ``(B, L)`` with
            ``dim=1``).
        dim: the sequence dimension.
        layout: ``"zigzag"`` (default) or ``"contiguous"``.
        group: the process group to split over (None: the default group).

    Returns:
        ``x`` with dim ``dim`` cut to ``L / W``: the positions :func:`shard_positions`
        names. A view for ``"contiguous"``, a new tensor for ``"zigzag"``; autograd flows
        through both.

    Raises:
        ValueError naming ``x`` when ``L`` does not split into equal pieces.
    """
    check_choice(layout, "layout", LAYOUTS)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    dim = _dim(x, dim)
    world, rank = world_and_rank(group)
    pieces = _pieces(layout, world)
    if x.shape[dim] == 0 or x.shape[dim] % pieces:
        raise ValueError(f"x: dim {dim} has length {x.shape[dim]}, which layout={layout!r} "
                         f"cannot split evenly over {world} ranks (it needs a positive "
                         f"multiple of {pieces})")
    runs = segments(x.shape[dim], world, rank, layout)
    parts = [x.narrow(dim, start, length) for start, length in runs]
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim)


def unshard(x: torch.Tensor, dim: int, layout: str = "zigzag",
            group: dist.ProcessGroup | None = None) -> torch.Tensor:
    """The full sequence from every rank's shard (a collective: every rank calls it).

    Args:
        x: this rank's shard; dim ``dim`` has length ``L / W`` and every other dim is
            the same on every rank.
        dim: the sequence dimension.
        layout: the layout the shards were made with.
        group: the process group (None: the default group).

    Returns:
        The full tensor, dim ``dim`` of length ``L``, on every rank. It carries no
        gradient (gather for evaluation and logging; train on the shards).

    Raises:
        ValueError naming ``x`` when the ranks' shards differ in shape or dtype, or the
        zigzag shard length is odd; ValueError naming ``layout`` when the ranks passed
        different layouts. Every rank raises the same error.
    """
    world, _ = world_and_rank(group)

    def describe() -> list[int]:
        check_choice(layout, "layout", LAYOUTS)
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() > _MAX_DIMS:
            raise ValueError(f"x: unshard takes at most {_MAX_DIMS} dims, got shape "
                             f"{tuple(x.shape)}")
        code = _DTYPES.index(x.dtype) if x.dtype in _DTYPES else len(_DTYPES)
        sizes = list(x.shape) + [-1] * (_MAX_DIMS - x.dim())
        return [LAYOUTS.index(layout), code, _dim(x, dim), *sizes]

    table = checked_agree(group, "x", describe)
    dim = table[0][2]
    if len({row[0] for row in table}) > 1:
        names = ", ".join(f"rank {r}: {LAYOUTS[row[0]]!r}" for r, row in enumerate(table))
        raise ValueError(f"layout: the ranks passed different layouts ({names}); pass the "
                         f"same on every rank")
    if any(row != table[0] for row in table):
        shapes = [(row[2], tuple(s for s in row[3:] if s >= 0), _dtype_name(row[1]))
                  for row in table]
        raise ValueError(f"x: the ranks' shards differ (dim, shape, dtype per rank: "
                         f"{shapes}); every rank must pass a shard of one shape and dtype, "
                         f"split along the same dim")
    local = x.shape[dim]
    if layout == "zigzag" and local % 2:
        raise ValueError(f"x: a zigzag shard holds two equal chunks, but dim {dim} has odd "
                         f"length {local}")
    # Gloo has no bool all_gather: send booleans as bytes.
    send = x.detach().contiguous()
    send = send.view(torch.uint8) if send.dtype == torch.bool else send
    gathered = [torch.empty_like(send) for _ in range(world)]
    dist.all_gather(gathered, send, group=group)
    gathered = [g.view(torch.bool) if x.dtype == torch.bool else g for g in gathered]
    shape = list(x.shape)
    shape[dim] = local * world
    full = x.new_empty(shape)
    for rank, piece in enumerate(gathered):
        offset = 0
        for start, length in segments(local * world, world, rank, layout):
            full.narrow(dim, start, length).copy_(piece.narrow(dim, offset, length))
            offset += length
    return full


_MAX_DIMS = 8
_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int64,
           torch.int32, torch.bool, torch.uint8, torch.int8, torch.int16)


def _dtype_name(code: int) -> str:
    return str(_DTYPES[code]).removeprefix("torch.") if code < len(_DTYPES) else "other"


def _dim(x: torch.Tensor, dim: object) -> int:
    check_int(dim, "dim", minimum=-x.dim(), maximum=x.dim() - 1)
    return dim % x.dim()
