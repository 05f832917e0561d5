"""Ring attention: exact attention over a sequence split across the ranks of a process group.

Liu, Zaharia & Abbeel 2023, "Ring Attention with Blockwise Transformers for Near-Infinite
Context" (arXiv:2310.01889). Every rank holds the queries, keys and values of its shard of
the sequence (``L / W`` positions, in the ``contiguous`` or ``zigzag`` layout of
:mod:`attnkit.distributed.layout`). The key/value shards travel once round the ring (rank
``r`` sends to ``r+1`` and receives from ``r-1``): at step ``s`` rank ``r`` attends its
queries to keys of rank ``r-s`` while the next keys are in flight, and merges the partial
result into its running output through the log-sum-exp::

    lse = logaddexp(lse_a, lse_b)
    out = exp(lse_a - lse) * out_a + exp(lse_b - lse) * out_b

Memory: a shard does not travel whole. It is cut into pieces of ``chunk`` positions
(:func:`ring_pieces`) and the ring runs piece-major: for piece ``p``, ``W`` steps pass
piece ``p`` of every shard once round the ring, then piece ``p+1`` follows. A rank holds
the piece in hand and the one arriving, so its memory beyond its own shards, output and
gradients is a few pieces, not shards, and falls with ``W`` like the rest (issue 16's
memory goal; measured in ``benchmarks/results/ring_memory.md``). Queries go to the
kernel in parts of ``2 * chunk`` rows, which bounds the kernel's per-call outputs the
same way. Keys and values travel packed, one message per piece and hop.

The backward circulates the key/value pieces a second time together with the sums of
their gradients (:mod:`attnkit.distributed._passes`): a rank adds its own piece's
``dK, dV`` straight into its gradients, and the other ranks' sum travels round the
ring and comes home after ``W - 1`` hops, while ``dQ`` stays local. The global ``lse``
and output saved by the forward let every block recompute its exact probabilities, as
the FlashAttention backward does. The backward is a rank's memory peak; for shards
shorter than ``32 * chunk`` positions it sends pieces of ``chunk / 2`` (same queries per
kernel call), which halves its buffers and the kernel's per-call logits at the cost of
twice as many kernel calls; packed, that is still no more messages than unpacked pieces
of ``chunk`` (:func:`backward_chunk`).

What runs per block: attnkit's ``tiled`` kernel (:mod:`attnkit.kernels.tiled`, its
forward and backward with the row statistics supplied), with the mask rewritten for the
block by :func:`~attnkit.distributed.local_masks.localize`. A block a mask rules out for
this rank pair (keys entirely in the future under ``causal``, outside a sliding window,
in other documents) is never computed; inside a block, empty tiles are skipped and full
tiles run unmasked, as in a one-process call.

Deviations from the paper: blocks are computed with attnkit's torch-ops flash kernel (on
any device) instead of a fused one; the zigzag layout (not in the paper) balances causal
work; shards travel in pieces (the paper sends whole blocks and holds two of them);
the backward's gradient sums start after the owner's own block and travel ``W - 1`` hops.
Dropout and ``score_mod`` are not supported.

Failure handling: before any transfer the ranks exchange a description of their call
(:func:`~attnkit.distributed.agree.checked_agree`), so wrong or mismatched arguments make
every rank raise the same ``ValueError``. Every later wait is bounded by the process
group's timeout (``init_process_group(..., timeout=...)``): a rank that dies mid-ring makes
its peers raise instead of hanging.
"""

from __future__ import annotations

import dataclasses
import zlib

import torch
import torch.distributed as dist

from attnkit._validate import check_bool, check_choice, check_float, check_int
from attnkit.distributed._passes import Pass, RingPasses
from attnkit.distributed.agree import checked_agree
from attnkit.distributed.layout import LAYOUTS, segments, world_and_rank
from attnkit.distributed.local_masks import (
    check_ring_mask,
    empty_pairs,
    localize,
    mask_signature,
)
from attnkit.functional._checks import check_qkv
from attnkit.functional._plan import CallPlan
from attnkit.functional.masks import and_masks
from attnkit.functional.masks import causal as causal_mask
from attnkit.kernels.spec import EMPTY
from attnkit.kernels.tiled import TileFns

__all__ = ["ring_attention", "ring_schedule", "ring_pieces", "backward_chunk", "Block",
           "DEFAULT_CHUNK"]

_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
# Key/value positions per transfer (queries go to the kernel in parts of twice that) and
# the tile sizes of the per-block kernel (key tiles never wider than a piece). A rank's
# working memory beyond its own shards, output and gradients is a few pieces plus one
# query part's kernel outputs and logits, whatever the shard length (the model and the
# measurements: benchmarks/results/ring_memory.md).
DEFAULT_CHUNK = 128
DEFAULT_BLOCK_Q = 128
DEFAULT_BLOCK_K = 128
# Shards shorter than this many chunks send their backward in half pieces.
_HALF_BELOW_CHUNKS = 32


@dataclasses.dataclass(frozen=True)
class Block:
    """One block of work: local query rows ``q_start:q_start+q_len`` of this rank against
    local key rows ``kv_start:kv_start+kv_len`` of the shard held at ``step``.

    Attributes:
        step: ring step (the keys come from rank ``(rank - step) % W``).
        piece: which transfer of that shard the keys travel in (:func:`ring_pieces`).
        source: the rank whose keys/values these are.
        q_start, q_len, kv_start, kv_len: local row ranges in the two shards.
        fns: the tiled kernel's per-tile mask and tile plan for this block.
        logits: query-key pairs in the tiles the kernel computes (empty tiles excluded),
            per batch row and query head.
    """

    step: int
    piece: int
    source: int
    q_start: int
    q_len: int
    kv_start: int
    kv_len: int
    fns: TileFns
    logits: int


def _combined_mask(causal: bool, mask):
    if not causal:
        return mask
    return causal_mask() if mask is None else and_masks(mask, causal_mask())


def _block(step, piece, source, q_part, kv_part, mask, batch, heads, block_q, block_k,
           device) -> Block | None:
    """The work of one (query part, key piece) pair, or None when the mask rules it out."""
    (q_global, q_start, q_len), (kv_global, kv_start, kv_len) = q_part, kv_part
    rows = [min(block_q, q_len - i) for i in range(0, q_len, block_q)]  # tile heights
    cols = [min(block_k, kv_len - j) for j in range(0, kv_len, block_k)]
    if mask is None:
        fns = TileFns()
        logits = q_len * kv_len
    else:
        local = localize(mask, q_global, q_len, kv_global, kv_len)
        plan = CallPlan(batch, heads, q_len, kv_len, device, None, local, None, None)
        fns = plan.tile_fns(block_q, block_k)
        kept = (fns.plan != EMPTY).to(torch.int64)  # (nq, nk)
        logits = int(torch.tensor(rows, dtype=torch.int64) @ kept
                     @ torch.tensor(cols, dtype=torch.int64))
        if logits == 0:
            return None
    return Block(step, piece, source, q_start, q_len, kv_start, kv_len, fns, logits)


def _split(runs, size: int) -> list[tuple[int, int, int]]:
    """Runs ``((global_start, length), ...)`` of a shard cut into parts of at most
    ``size`` positions: ``[(global_start, local_start, length), ...]`` in local order."""
    parts, local = [], 0
    for start, length in runs:
        for offset in range(0, length, size):
            parts.append((start + offset, local + offset, min(size, length - offset)))
        local += length
    return parts


def ring_pieces(seq_len: int, world_size: int, layout: str = "zigzag", *,
                chunk: int = DEFAULT_CHUNK) -> list[tuple[int, int]]:
    """The transfers a shard travels in: ``[(local_start, length), ...]``, the same on
    every rank (every shard has the same runs). Each run of :func:`segments` is cut into
    pieces of at most ``chunk`` positions."""
    check_int(chunk, "chunk", minimum=1)
    runs = segments(seq_len, world_size, 0, layout)
    return [(local, length) for _, local, length in _split(runs, chunk)]


def backward_chunk(shard_len: int, chunk: int = DEFAULT_CHUNK) -> int:
    """Key/value positions per transfer in the backward of a shard of ``shard_len``
    positions: ``chunk``, or ``chunk // 2`` (at least 1) when the shard is shorter than
    ``32 * chunk``.

    The backward is a rank's memory peak: besides its shards it holds about eleven
    pieces' worth of keys, values and gradient sums in flight plus the kernel's
    per-call logits (``part x piece`` per head). On short shards that working set is a
    large share of the rank's memory, so the pieces are halved there; the query parts
    stay ``2 * chunk`` rows."""
    check_int(shard_len, "shard_len", minimum=0)
    check_int(chunk, "chunk", minimum=1)
    return chunk if shard_len >= _HALF_BELOW_CHUNKS * chunk else max(1, chunk // 2)


def ring_schedule(seq_len: int, world_size: int, rank: int, layout: str = "zigzag", *,
                  causal: bool = False, mask=None, batch: int = 1, heads: int = 1,
                  block_q: int = DEFAULT_BLOCK_Q, block_k: int = DEFAULT_BLOCK_K,
                  chunk: int = DEFAULT_CHUNK, part: int | None = None,
                  device: torch.device | str | None = None) -> list[list[Block]]:
    """The blocks rank ``rank`` computes at each of the ``W`` ring steps (no communication;
    :func:`ring_attention`'s forward runs exactly this schedule, its backward the one for
    ``chunk=backward_chunk(L // W, chunk), part=2 * chunk``).

    Args:
        seq_len: ``L``, the full sequence length.
        world_size, rank: ``W`` and this rank.
        layout: ``"zigzag"`` or ``"contiguous"``.
        causal, mask: as :func:`ring_attention` (``mask`` over the full sequence).
        batch, heads: ``B`` and ``Hq`` the mask is evaluated for.
        block_q, block_k: tile sizes of the per-block kernel; key tiles are at most
            ``chunk`` wide (a piece holds no more keys).
        chunk: key/value positions per transfer (:func:`ring_pieces`).
        part: query rows per kernel call (default ``2 * chunk``).

    Returns:
        ``schedule[step]``: the :class:`Block` s computed at that step, in the order
        they run (by piece, then by query part); blocks the mask rules out entirely are
        absent. ``sum(b.logits ...)`` is the rank's attention work.
    """
    check_bool(causal, "causal")
    check_int(batch, "batch", minimum=1)
    check_int(heads, "heads", minimum=1)
    check_int(block_q, "block_q", minimum=1)
    check_int(block_k, "block_k", minimum=1)
    check_int(chunk, "chunk", minimum=1)
    part = 2 * chunk if part is None else check_int(part, "part", minimum=1)
    check_ring_mask(mask, batch, seq_len)
    mask = _combined_mask(causal, mask)
    block_k = min(block_k, chunk)
    runs = [segments(seq_len, world_size, r, layout) for r in range(world_size)]
    q_parts = _split(runs[rank], part)
    schedule = []
    for step in range(world_size):
        source = (rank - step) % world_size
        blocks = []
        kv_parts = _split(runs[source], chunk)
        # the pairs a mask rules out in closed form are skipped before any per-pair plan
        # (otherwise planning is quadratic in the shard: every piece meets every part)
        empty = empty_pairs(mask, q_parts, kv_parts, device)
        for piece, kv_part in enumerate(kv_parts):
            for index, q_part in enumerate(q_parts):
                if empty is not None and empty[index, piece]:
                    continue
                block = _block(step, piece, source, q_part, kv_part, mask, batch, heads,
                               block_q, block_k, device)
                if block is not None:
                    blocks.append(block)
        schedule.append(blocks)
    return schedule


class _RingFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, ring: RingPasses, q, k, v):
        out, lse = ring.forward(q, k, v)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.ring = ring
        ctx.mark_non_differentiable(lse)
        ctx.set_materialize_grads(False)  # no zeros for the lse's (absent) gradient
        return out.to(q.dtype), lse

    @staticmethod
    def backward(ctx, grad_out, _grad_lse):
        if grad_out is None:  # the output did not reach the loss
            return None, None, None, None
        q, k, v, out, lse = ctx.saved_tensors
        dq, dk, dv = ctx.ring.backward(q, k, v, out, lse, grad_out)
        return None, dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype)


def _describe(q, k, v, causal, mask, scale, layout, block_q, block_k, chunk, stats,
              world) -> list[int]:
    """Check this rank's arguments; describe the call as ints for the other ranks."""
    if stats is not None and not isinstance(stats, dict):
        raise TypeError(f"stats must be a dict or None, got {type(stats).__name__}")
    check_qkv(q, k, v)
    if k.shape[2] != q.shape[2]:
        raise ValueError(f"k: ring attention is self-attention over one sharded sequence, so "
                         f"k's shard must be as long as q's; got q {tuple(q.shape)}, "
                         f"k {tuple(k.shape)}")
    check_bool(causal, "causal")
    check_choice(layout, "layout", LAYOUTS)
    check_int(block_q, "block_q", minimum=1)
    check_int(block_k, "block_k", minimum=1)
    check_int(chunk, "chunk", minimum=1)
    if scale is not None:
        check_float(scale, "scale")
    B, Hq, n, D = q.shape
    check_ring_mask(mask, B, n * world)
    return [LAYOUTS.index(layout), n, B, Hq, k.shape[1], D, v.shape[3],
            _DTYPES.index(q.dtype), int(causal), mask_signature(mask),
            zlib.crc32(repr(scale).encode()) & 0x7FFFFFFF, block_q, block_k, chunk]


_FIELDS = ("layout", "shard length", "B", "Hq", "Hkv", "D", "Dv", "dtype", "causal", "mask",
           "scale", "block_q", "block_k", "chunk")
_ARGUMENT = {"B": "q", "Hq": "q", "Hkv": "k", "D": "q", "Dv": "v", "dtype": "q",
             "causal": "causal", "mask": "mask", "scale": "scale", "block_q": "block_q",
             "block_k": "block_k", "chunk": "chunk"}


def _check_agreement(table: list[list[int]]) -> None:
    """Raise the same ValueError on every rank when the ranks' calls differ."""
    per_rank = list(zip(*table, strict=True))
    layouts = per_rank[0]
    if len(set(layouts)) > 1:
        names = ", ".join(f"rank {r}: {LAYOUTS[code]!r}" for r, code in enumerate(layouts))
        raise ValueError(f"layout: the ranks passed different layouts ({names}); every rank "
                         f"must pass the layout its shards were made with")
    lengths = per_rank[1]
    if len(set(lengths)) > 1:
        raise ValueError(f"q: uneven shard lengths across ranks (q.shape[2] per rank: "
                         f"{list(lengths)}); every rank must hold L / W positions "
                         f"(attnkit.distributed.shard cuts them)")
    if LAYOUTS[layouts[0]] == "zigzag" and lengths[0] % 2:
        raise ValueError(f"q: layout='zigzag' shards hold two equal chunks of L / (2W) "
                         f"positions, but the shard length is {lengths[0]} (odd)")
    for field, values in zip(_FIELDS[2:], per_rank[2:], strict=True):
        if len(set(values)) > 1:
            shown = list(values) if field not in ("mask", "scale") else "differs"
            raise ValueError(f"{_ARGUMENT[field]}: the ranks disagree on {field} "
                             f"({shown}); every rank must make the same call on its shard")


def ring_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
                   causal: bool = False, mask=None, scale: float | None = None,
                   group: dist.ProcessGroup | None = None, layout: str = "zigzag",
                   block_q: int = DEFAULT_BLOCK_Q, block_k: int = DEFAULT_BLOCK_K,
                   chunk: int = DEFAULT_CHUNK, stats: dict | None = None,
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact scaled-dot self-attention over a sequence sharded across ``group``.

    Every rank of ``group`` calls it with its own shard; together the calls compute
    ``attnkit.attention(Q, K, V, causal=..., mask=...)`` on the full sequence, and
    autograd gives each rank the gradients of its shard. Shape legend: ``W`` ranks,
    full length ``L``, shard length ``n = L / W``.

    Args:
        q: ``(B, Hq, n, D)`` this rank's queries, positions as :func:`shard` lays them out.
        k: ``(B, Hkv, n, D)`` this rank's keys; ``Hq % Hkv == 0`` (grouped-query attention:
            query head ``h`` reads key/value head ``h // (Hq // Hkv)``).
        v: ``(B, Hkv, n, Dv)`` this rank's values.
        causal: causal self-attention over the full sequence (query at global position
            ``i`` sees keys ``<= i``); None means False.
        mask: None, or a structured mask **of the full sequence** (global positions,
            document ids of length ``L``): ``masks.causal()``, ``masks.sliding_window(w,
            causal=...)``, ``masks.document(ids)``, ``masks.key_padding(lengths)`` and
            ``&``/``|``/``~`` combinations of them. Other masks (dense tensors,
            ``prefix_lm``, custom callables) raise ``TypeError``. Combined with ``causal``
            by logical and.
        scale: logit multiplier, default ``1 / sqrt(D)``.
        group: the process group holding the sequence (None: the default group). Its
            timeout bounds every wait.
        layout: ``"zigzag"`` (balanced causal work) or ``"contiguous"``; every rank must
            pass the same, the one its shards were made with.
        block_q, block_k: tile sizes of the per-block ``tiled`` kernel.
        chunk: key/value positions per transfer. Keys and values travel in pieces of at
            most ``chunk`` positions (the backward's are halved on shards shorter than
            ``32 * chunk``, :func:`backward_chunk`) and queries go to the kernel in parts
            of ``2 * chunk``, so a rank's working memory beyond its own shards, output
            and gradients is a few pieces and one part's kernel buffers, not shards;
            smaller saves memory, larger spends less Python per FLOP.
        stats: a dict to fill with this rank's counts (for benchmarks): ``blocks`` and
            ``logits`` the forward computes (see :func:`ring_schedule`), ``pieces`` per
            shard, ``bytes_sent_forward``, ``messages_forward`` (point-to-point sends)
            and ``compute_s_forward`` (seconds in the kernels and merges), and once the
            backward has run ``pieces_backward``, ``bytes_sent_backward``,
            ``messages_backward`` and ``compute_s_backward``.

    Returns:
        ``(out, lse)``: ``out (B, Hq, n, Dv)`` in the input dtype, this rank's rows of the
        full attention output; ``lse (B, Hq, n)`` (float32, float64 for float64 inputs,
        no gradient) their log-sum-exp over the whole sequence, ``-inf`` for a row with
        nothing to attend to (its output is 0).

    Raises:
        TypeError/ValueError naming the argument, on every rank at once, when any rank's
        arguments are wrong or the ranks' calls differ (shard lengths, layouts, shapes,
        dtypes, masks). RuntimeError from torch.distributed when a peer fails mid-call
        or the group's timeout passes.

    Example (each of ``W`` processes, after ``init_process_group``)::

        from attnkit.distributed import ring_attention, shard
        q, k, v = (shard(t, dim=2) for t in (Q, K, V))       # (B, H, L / W, D) each
        out, _ = ring_attention(q, k, v, causal=True)        # this rank's rows of the output
    """
    causal = False if causal is None else causal
    world, rank = world_and_rank(group)
    table = checked_agree(group, "q", lambda: _describe(q, k, v, causal, mask, scale, layout,
                                                        block_q, block_k, chunk, stats,
                                                        world))
    _check_agreement(table)
    B, Hq, n, D = q.shape
    scale = D ** -0.5 if scale is None else float(scale)
    L = n * world

    def plan(piece: int) -> Pass:
        key_tile = min(block_k, piece)
        schedule = ring_schedule(L, world, rank, layout, causal=causal, mask=mask, batch=B,
                                 heads=Hq, block_q=block_q, block_k=key_tile, chunk=piece,
                                 part=2 * chunk, device=q.device)
        return Pass(schedule, ring_pieces(L, world, layout, chunk=piece), key_tile, world)

    forward_pass = plan(chunk)
    piece = backward_chunk(n, chunk)
    ring = RingPasses(group, world, rank, forward_pass,
                      (lambda: forward_pass) if piece == chunk else (lambda: plan(piece)),
                      scale, block_q, stats)
    return _RingFunction.apply(ring, q, k, v)
