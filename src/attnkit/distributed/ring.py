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
memory goal; measured in ``benchmarks/results/ring.md``). Queries go to the kernel in
parts of ``2 * chunk`` rows, which bounds the kernel's per-call outputs the same way.

The backward circulates the key/value pieces a second time together with their
gradient accumulators: rank ``r`` adds its contribution to ``dK, dV`` of the piece in
hand and passes the sum on, so after ``W`` hops each piece's ``dK, dV`` returns home
complete, while ``dQ`` stays local. The global ``lse`` and output saved by the forward let
every block recompute its exact probabilities, as the FlashAttention backward does.

What runs per block: attnkit's ``tiled`` kernel (:mod:`attnkit.kernels.tiled`, its
forward and backward with the row statistics supplied), with the mask rewritten for the
block by :func:`~attnkit.distributed.local_masks.localize`. A block a mask rules out for
this rank pair (keys entirely in the future under ``causal``, outside a sliding window,
in other documents) is never computed; inside a block, empty tiles are skipped and full
tiles run unmasked, as in a one-process call.

Deviations from the paper: blocks are computed with attnkit's torch-ops flash kernel (on
any device) instead of a fused one; the zigzag layout (not in the paper) balances causal
work; shards travel in pieces (the paper sends whole blocks and holds two of them).
Dropout and ``score_mod`` are not supported.

Failure handling: before any transfer the ranks exchange a description of their call
(:func:`~attnkit.distributed.agree.checked_agree`), so wrong or mismatched arguments make
every rank raise the same ``ValueError``. Every later wait is bounded by the process
group's timeout (``init_process_group(..., timeout=...)``): a rank that dies mid-ring makes
its peers raise instead of hanging.
"""

from __future__ import annotations

import dataclasses
import time
import zlib

import torch
import torch.distributed as dist

from attnkit._validate import check_bool, check_choice, check_float, check_int
from attnkit.distributed.agree import checked_agree
from attnkit.distributed.layout import LAYOUTS, segments, world_and_rank
from attnkit.distributed.local_masks import check_ring_mask, localize, mask_signature
from attnkit.functional._checks import check_qkv
from attnkit.functional._plan import CallPlan
from attnkit.functional.masks import and_masks
from attnkit.functional.masks import causal as causal_mask
from attnkit.kernels.precision import compute_dtype
from attnkit.kernels.spec import EMPTY
from attnkit.kernels.tiled import TileFns, tiled_backward, tiled_forward

__all__ = ["ring_attention", "ring_schedule", "ring_pieces", "Block", "DEFAULT_CHUNK"]

_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
# Point-to-point tags (+0 keys / dK, +1 values / dV): pieces in transit, gradient
# accumulators on their way round, finished accumulators going home.
_KV_TAG, _GRAD_TAG, _HOME_TAG = 0, 2, 4

# Key/value positions per transfer (queries go to the kernel in parts of twice that) and
# the tile sizes of the per-block kernel. A rank's working memory beyond its own shards,
# output and gradients is about 14 pieces of keys/values plus one query part and the
# kernel's tiles, whatever the shard length: measured in benchmarks/results/ring.md.
DEFAULT_CHUNK = 128
DEFAULT_BLOCK_Q = 128
DEFAULT_BLOCK_K = 128


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


def ring_schedule(seq_len: int, world_size: int, rank: int, layout: str = "zigzag", *,
                  causal: bool = False, mask=None, batch: int = 1, heads: int = 1,
                  block_q: int = DEFAULT_BLOCK_Q, block_k: int = DEFAULT_BLOCK_K,
                  chunk: int = DEFAULT_CHUNK,
                  device: torch.device | str | None = None) -> list[list[Block]]:
    """The blocks rank ``rank`` computes at each of the ``W`` ring steps (no communication;
    :func:`ring_attention` runs exactly this schedule).

    Args:
        seq_len: ``L``, the full sequence length.
        world_size, rank: ``W`` and this rank.
        layout: ``"zigzag"`` or ``"contiguous"``.
        causal, mask: as :func:`ring_attention` (``mask`` over the full sequence).
        batch, heads: ``B`` and ``Hq`` the mask is evaluated for.
        block_q, block_k: tile sizes of the per-block kernel.
        chunk: key/value positions per transfer; queries go to the kernel in parts of
            ``2 * chunk`` positions (see :func:`ring_attention`).

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
    check_ring_mask(mask, batch, seq_len)
    mask = _combined_mask(causal, mask)
    runs = [segments(seq_len, world_size, r, layout) for r in range(world_size)]
    q_parts = _split(runs[rank], 2 * chunk)
    schedule = []
    for step in range(world_size):
        source = (rank - step) % world_size
        blocks = []
        for piece, kv_part in enumerate(_split(runs[source], chunk)):
            for q_part in q_parts:
                block = _block(step, piece, source, q_part, kv_part, mask, batch, heads,
                               block_q, block_k, device)
                if block is not None:
                    blocks.append(block)
        schedule.append(blocks)
    return schedule


def _merge(out: torch.Tensor, lse: torch.Tensor, block_out: torch.Tensor,
           block_lse: torch.Tensor) -> None:
    """Fold a block's ``(out (B, H, r, Dv), lse (B, H, r))`` into the running pair, in place.
    Rows with nothing attended on either side (``lse = -inf``) stay zero."""
    new = torch.logaddexp(lse, block_lse)
    shift = new.masked_fill(new == float("-inf"), 0.0)
    out.mul_(torch.exp(lse - shift)[..., None]).add_(
        block_out.mul_(torch.exp(block_lse - shift)[..., None]))
    lse.copy_(new)


class _Ring:
    """Peers, schedule and transfers of one :func:`ring_attention` call.

    Work runs piece-major: for each piece ``p`` of the shards (:func:`ring_pieces`), ``W``
    steps in which rank ``r`` holds piece ``p`` of rank ``r - s``'s keys and values, uses
    it, and passes it on to ``r + 1`` while piece ``p`` of rank ``r - s - 1`` arrives. A
    rank therefore holds two pieces in flight, never a whole remote shard.
    """

    def __init__(self, group, world: int, rank: int, schedule: list[list[Block]],
                 pieces: list[tuple[int, int]], scale: float, block_q: int, block_k: int,
                 stats: dict | None):
        self.group, self.world = group, world
        self.scale, self.block_q, self.block_k = scale, block_q, block_k
        self.pieces, self.stats = pieces, stats
        # work[p][s]: the blocks of piece p at step s.
        self.work = [[[b for b in schedule[s] if b.piece == p] for s in range(world)]
                     for p in range(len(pieces))]
        self.items = [(p, s) for p in range(len(pieces)) for s in range(world)]
        if stats is not None:
            stats.update(bytes_sent_forward=0, bytes_sent_backward=0,
                         blocks=sum(len(blocks) for blocks in schedule),
                         logits=sum(b.logits for blocks in schedule for b in blocks),
                         pieces=len(pieces), compute_s_forward=0.0, compute_s_backward=0.0)

        def peer(r: int) -> int:
            r %= world
            return r if group is None else dist.get_global_rank(group, r)

        self.next, self.prev = peer(rank + 1), peer(rank - 1)

    def exchange(self, send: tuple[torch.Tensor, ...], recv: tuple[torch.Tensor, ...],
                 tag: int, phase: str) -> list:
        """Start sending ``send`` to the next rank and receiving ``recv`` from the previous."""
        if not send and not recv:
            return []
        if self.stats is not None:
            self.stats[f"bytes_sent_{phase}"] += sum(t.numel() * t.element_size() for t in send)
        ops = [dist.P2POp(dist.isend, t, self.next, self.group, tag + i)
               for i, t in enumerate(send)]
        ops += [dist.P2POp(dist.irecv, t, self.prev, self.group, tag + i)
                for i, t in enumerate(recv)]
        return dist.batch_isend_irecv(ops)

    @staticmethod
    def wait(works: list) -> None:
        for work in works:
            work.wait()  # bounded by the process group's timeout

    def _own(self, k, v, piece: int, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Piece ``piece`` of this rank's keys and values, contiguous (it is sent on)."""
        start, length = self.pieces[piece]
        return (k[:, :, start:start + length].to(dtype).contiguous(),
                v[:, :, start:start + length].to(dtype).contiguous())

    def _keys_in_flight(self, index: int, held, phase: str):
        """Item ``index``'s transfers: pass the piece in hand on, and start receiving the
        next item's piece (when it is not this rank's own). Returns (works, arriving)."""
        p, s = self.items[index]
        send = held if s < self.world - 1 else ()
        arriving = None
        if index + 1 < len(self.items) and self.items[index + 1][1] > 0:
            arriving = (torch.empty_like(held[0]), torch.empty_like(held[1]))
        return self.exchange(send, arriving or (), _KV_TAG, phase), arriving

    def _next_held(self, index, arriving, k, v, dtype):
        if arriving is not None:
            return arriving
        if index + 1 < len(self.items):
            return self._own(k, v, self.items[index + 1][0], dtype)
        return None

    def _cols(self, b: Block) -> slice:
        start = b.kv_start - self.pieces[b.piece][0]
        return slice(start, start + b.kv_len)

    def forward(self, q, k, v):
        """``q (B, Hq, n, D)``, ``k (B, Hkv, n, D)``, ``v (B, Hkv, n, Dv)`` local shards ->
        ``out (B, Hq, n, Dv)`` and ``lse (B, Hq, n)`` in the accumulation dtype."""
        acc = compute_dtype(q.dtype)
        B, Hq, n, _ = q.shape
        out = torch.zeros(B, Hq, n, v.shape[3], dtype=acc, device=q.device)
        lse = torch.full((B, Hq, n), float("-inf"), dtype=acc, device=q.device)
        held = self._own(k, v, 0, k.dtype)  # travels in the input dtype
        for index, (p, s) in enumerate(self.items):
            works, arriving = self._keys_in_flight(index, held, "forward")
            start = time.perf_counter()
            for b in self.work[p][s]:
                rows, cols = slice(b.q_start, b.q_start + b.q_len), self._cols(b)
                block_out, block_lse = tiled_forward(
                    q[:, :, rows], held[0][:, :, cols], held[1][:, :, cols], b.fns,
                    self.scale, self.block_q, self.block_k)
                _merge(out[:, :, rows], lse[:, :, rows], block_out, block_lse)
                del block_out, block_lse
            self._count("compute_s_forward", start)
            self.wait(works)
            held = None  # sent: free it before the next piece is cut
            held = self._next_held(index, arriving, k, v, k.dtype)
        return out, lse

    def _count(self, key: str, start: float) -> None:
        if self.stats is not None:
            self.stats[key] += time.perf_counter() - start

    def backward(self, q, k, v, out, lse, grad_out):
        """Gradients ``(dq, dk, dv)`` of this rank's shards, in the accumulation dtype.

        Each piece's ``dK, dV`` accumulator travels with it: rank ``r`` adds its part and
        passes the sum on, and after ``W`` hops it comes home complete (tag
        ``_HOME_TAG``) and is added into this rank's ``dk, dv``. Buffers at any time: the
        piece in hand and the one arriving, the accumulator being summed, the one
        arriving for it, the one still being sent, and a finished one coming home."""
        acc = compute_dtype(q.dtype)
        world = self.world
        dq = torch.zeros(q.shape, dtype=acc, device=q.device)
        dk = torch.zeros(k.shape, dtype=acc, device=q.device)
        dv = torch.zeros(v.shape, dtype=acc, device=q.device)
        held = self._own(k, v, 0, k.dtype)
        sending: list = []  # works of the accumulator in flight to the next rank
        home: tuple | None = None  # (piece, works, buffers) of an accumulator coming home
        for index, (p, s) in enumerate(self.items):
            kv_works, arriving = self._keys_in_flight(index, held, "backward")
            grad_in, grad_works = None, []
            if s > 0:  # the sum of the ranks before this one, for the piece in hand
                grad_in = (self._acc_piece(dk, p), self._acc_piece(dv, p))
                grad_works = self.exchange((), grad_in, _GRAD_TAG, "backward")
            start = time.perf_counter()
            keys = tuple(t.to(acc) for t in held)  # gradients are summed in acc dtype
            grad_k, grad_v = self._piece_grads(q, keys, out, lse, grad_out, dq, p, s)
            del keys
            self._count("compute_s_backward", start)
            if home is not None:  # the previous piece's finished accumulator
                self._add_home(home, dk, dv)
                home = None
            if world == 1:
                self._add_piece(dk, dv, p, grad_k, grad_v)
            else:
                self.wait(grad_works)
                if grad_in is not None:
                    grad_k += grad_in[0]
                    grad_v += grad_in[1]
                    grad_in = None
                self.wait(sending)
                last = s == world - 1  # the sum is complete: it goes home, to rank r + 1
                grad_k, grad_v = grad_k.contiguous(), grad_v.contiguous()
                sending = self.exchange((grad_k, grad_v), (),
                                        _HOME_TAG if last else _GRAD_TAG, "backward")
                if last:
                    buffers = (self._acc_piece(dk, p), self._acc_piece(dv, p))
                    home = (p, self.exchange((), buffers, _HOME_TAG, "backward"), buffers)
            self.wait(kv_works)
            held = None
            held = self._next_held(index, arriving, k, v, k.dtype)
        if home is not None:
            self._add_home(home, dk, dv)
        self.wait(sending)
        return dq, dk, dv

    def _acc_piece(self, like: torch.Tensor, piece: int) -> torch.Tensor:
        B, H, _, X = like.shape
        return torch.empty(B, H, self.pieces[piece][1], X, dtype=like.dtype,
                           device=like.device)

    def _add_piece(self, dk, dv, piece, grad_k, grad_v) -> None:
        start, length = self.pieces[piece]
        dk[:, :, start:start + length] += grad_k
        dv[:, :, start:start + length] += grad_v

    def _add_home(self, home, dk, dv) -> None:
        piece, works, (grad_k, grad_v) = home
        self.wait(works)
        self._add_piece(dk, dv, piece, grad_k, grad_v)

    def _piece_grads(self, q, keys, out, lse, grad_out, dq, p, s):
        """This rank's part of the piece's ``dK, dV`` (acc dtype, piece-shaped); adds
        into ``dq`` as it goes."""
        grad_k = grad_v = None
        for b in self.work[p][s]:
            rows, cols = slice(b.q_start, b.q_start + b.q_len), self._cols(b)
            dq_b, dk_b, dv_b, _ = tiled_backward(
                q[:, :, rows], keys[0][:, :, cols], keys[1][:, :, cols], out[:, :, rows],
                lse[:, :, rows], grad_out[:, :, rows], b.fns, self.scale, self.block_q,
                self.block_k, (), ())
            dq[:, :, rows] += dq_b
            del dq_b
            if grad_k is None and b.kv_len == keys[0].shape[2]:
                grad_k, grad_v = dk_b, dv_b  # the kernel's own output: summed into in place
            else:
                if grad_k is None:
                    grad_k, grad_v = torch.zeros_like(keys[0]), torch.zeros_like(keys[1])
                grad_k[:, :, cols] += dk_b
                grad_v[:, :, cols] += dv_b
            del dk_b, dv_b
        if grad_k is None:
            grad_k, grad_v = torch.zeros_like(keys[0]), torch.zeros_like(keys[1])
        return grad_k, grad_v


class _RingFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, ring: _Ring, q, k, v):
        out, lse = ring.forward(q, k, v)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.ring = ring
        ctx.mark_non_differentiable(lse)
        return out.to(q.dtype), lse

    @staticmethod
    def backward(ctx, grad_out, _grad_lse):
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
            most ``chunk`` positions and queries go to the kernel in parts of ``2 *
            chunk``, so a rank's working memory beyond its own shards, output and
            gradients is a few pieces (about ``14 * chunk`` key/value rows), not shards;
            smaller saves memory, larger spends less Python per FLOP.
        stats: a dict to fill with this rank's counts (for benchmarks): ``blocks`` and
            ``logits`` computed per pass (see :func:`ring_schedule`), ``pieces`` per
            shard, ``bytes_sent_forward`` and ``compute_s_forward`` (seconds in the
            kernels and merges), and once the backward has run ``bytes_sent_backward``
            and ``compute_s_backward``.

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
    schedule = ring_schedule(n * world, world, rank, layout, causal=causal, mask=mask,
                             batch=B, heads=Hq, block_q=block_q, block_k=block_k,
                             chunk=chunk, device=q.device)
    pieces = ring_pieces(n * world, world, layout, chunk=chunk)
    ring = _Ring(group, world, rank, schedule, pieces, scale, block_q, block_k, stats)
    return _RingFunction.apply(ring, q, k, v)
