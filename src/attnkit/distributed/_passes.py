"""The transfers of ring attention: its forward and backward passes round the ring.

Liu, Zaharia & Abbeel 2023, "Ring Attention with Blockwise Transformers for Near-Infinite
Context" (arXiv:2310.01889); the schedule (which blocks a rank computes while which piece
is in hand) comes from :func:`attnkit.distributed.ring.ring_schedule`, the per-block
compute from attnkit's ``tiled`` kernel. This module moves the pieces and the gradients.

A pass runs piece-major: for each piece ``p`` of the shards, ``W`` items ``(p, s)`` in
which rank ``r`` holds piece ``p`` of rank ``r - s``'s keys and values, computes its blocks
against it, and passes it on to ``r + 1`` while the next item's piece arrives from
``r - 1``. Keys and values travel **packed**: one buffer holds a piece's K and V, so each
hop is one message (dK and dV likewise in the backward).

Backward (owner first): at ``s = 0`` a rank computes its own piece's contribution to
``dK, dV`` and adds it straight into its gradients. The other ``W - 1`` ranks' sum
travels: the rank holding the piece at ``s = 1`` starts it, every later one adds its part
to the sum it receives and passes it on, and the rank at ``s = W - 1`` sends it home,
where the owner adds it while it works on the next piece. ``W - 1`` gradient messages
per piece; ``dQ`` stays local. The global ``lse`` and output saved by the forward let
every block recompute its exact probabilities, as the FlashAttention backward does.

Memory. Beyond its shards (``q, k, v, dO``, output, ``dq, dk, dv``) a rank holds, in the
backward (its peak): the piece in hand and the one arriving (two packed K|V pieces),
the gradient sum arriving (or coming home) and the one still leaving (two packed dK|dV
pieces: the previous item's message is waited for after the first block of the next
item, whose compute it overlaps), this item's own partial sum (the kernel's first
output, reused) and the kernel's working set for one block (its dK, dV output, and
query-sized outputs and logits for one part of ``part`` query rows). Measured in
``benchmarks/results/ring_memory.md``.

Failure handling: every wait is bounded by the process group's timeout, so a rank that
dies mid-ring makes its peers raise instead of hanging.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
import torch.distributed as dist

from attnkit.kernels.precision import compute_dtype
from attnkit.kernels.tiled import tiled_backward, tiled_forward

__all__ = ["Pass", "RingPasses", "merge"]

# Point-to-point tags: K|V pieces in transit, dK|dV sums on their way round, finished
# sums going home (distinct, so a message can never be matched to the wrong receive).
_KV_TAG, _GRAD_TAG, _HOME_TAG = 0, 1, 2

Packed = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (buffer, first, second)


def packed(shapes: tuple[tuple[int, ...], tuple[int, ...]], dtype: torch.dtype,
           device: torch.device, *, zero: bool = False) -> Packed:
    """One contiguous buffer holding two tensors of ``shapes`` (K and V, or dK and dV):
    ``(buffer, first, second)``, the last two contiguous views of the first."""
    sizes = [math.prod(shape) for shape in shapes]
    buffer = (torch.zeros if zero else torch.empty)(sum(sizes), dtype=dtype, device=device)
    return (buffer, buffer[:sizes[0]].view(shapes[0]), buffer[sizes[0]:].view(shapes[1]))


def merge(out: torch.Tensor, lse: torch.Tensor, block_out: torch.Tensor,
          block_lse: torch.Tensor) -> None:
    """Fold a block's ``(out (B, H, r, Dv), lse (B, H, r))`` into the running pair, in place
    (``block_out`` is overwritten). Rows with nothing attended on either side (``lse =
    -inf``) stay zero::

        lse = logaddexp(lse_a, lse_b)
        out = exp(lse_a - lse) * out_a + exp(lse_b - lse) * out_b
    """
    new = torch.logaddexp(lse, block_lse)
    shift = new.masked_fill(new == float("-inf"), 0.0)
    out.mul_(torch.exp(lse - shift)[..., None]).add_(
        block_out.mul_(torch.exp(block_lse - shift)[..., None]))
    lse.copy_(new)


class Pass:
    """The pieces and blocks of one pass.

    Args:
        schedule: ``schedule[step]``, the blocks of :func:`ring_schedule` for these pieces.
        pieces: ``[(local_start, length), ...]`` of every shard (:func:`ring_pieces`).
        block_k: the kernel's key tile width for these blocks.
        world: ``W``.
    """

    def __init__(self, schedule: list, pieces: list[tuple[int, int]], block_k: int,
                 world: int):
        self.pieces, self.block_k = pieces, block_k
        # work[p][s]: the blocks of piece p at step s, in the order they run.
        self.work = [[[b for b in schedule[s] if b.piece == p] for s in range(world)]
                     for p in range(len(pieces))]
        self.items = [(p, s) for p in range(len(pieces)) for s in range(world)]
        self.blocks = sum(len(blocks) for blocks in schedule)
        self.logits = sum(b.logits for blocks in schedule for b in blocks)

    def cols(self, block) -> slice:
        """The block's key rows within its piece."""
        start = block.kv_start - self.pieces[block.piece][0]
        return slice(start, start + block.kv_len)


class RingPasses:
    """Peers and transfers of one ring-attention call.

    Args:
        group, world, rank: the process group, ``W`` and this rank.
        forward_pass: the forward's :class:`Pass`.
        backward_pass: builds the backward's :class:`Pass` (called once, when the backward
            first runs).
        scale, block_q: the kernel's logit scale and query tile height.
        stats: a dict to fill with counts (see ``ring_attention``), or None.
    """

    def __init__(self, group, world: int, rank: int, forward_pass: Pass,
                 backward_pass: Callable[[], Pass], scale: float, block_q: int,
                 stats: dict | None):
        self.group, self.world = group, world
        self.scale, self.block_q, self.stats = scale, block_q, stats
        self.forward_pass, self._backward_pass = forward_pass, backward_pass
        if stats is not None:
            stats.update(bytes_sent_forward=0, bytes_sent_backward=0, messages_forward=0,
                         messages_backward=0, blocks=forward_pass.blocks,
                         logits=forward_pass.logits, pieces=len(forward_pass.pieces),
                         compute_s_forward=0.0, compute_s_backward=0.0)

        def peer(r: int) -> int:
            r %= world
            return r if group is None else dist.get_global_rank(group, r)

        self.next, self.prev = peer(rank + 1), peer(rank - 1)

    # --- transfers --------------------------------------------------------------------------

    def exchange(self, send: torch.Tensor | None, recv: torch.Tensor | None, tag: int,
                 phase: str) -> list:
        """Start sending ``send`` to the next rank and receiving ``recv`` from the
        previous one (either may be None); the works to wait for."""
        ops = []
        if send is not None:
            ops.append(dist.P2POp(dist.isend, send, self.next, self.group, tag))
            if self.stats is not None:
                self.stats[f"bytes_sent_{phase}"] += send.numel() * send.element_size()
                self.stats[f"messages_{phase}"] += 1
        if recv is not None:
            ops.append(dist.P2POp(dist.irecv, recv, self.prev, self.group, tag))
        return dist.batch_isend_irecv(ops) if ops else []

    @staticmethod
    def wait(works: list) -> None:
        for work in works:
            work.wait()  # bounded by the process group's timeout

    def _count(self, key: str, start: float) -> None:
        if self.stats is not None:
            self.stats[key] += time.perf_counter() - start

    @staticmethod
    def _kv_shapes(k: torch.Tensor, v: torch.Tensor, length: int):
        B, H = k.shape[:2]
        return (B, H, length, k.shape[3]), (B, H, length, v.shape[3])

    def _own(self, plan: Pass, k, v, piece: int) -> Packed:
        """Piece ``piece`` of this rank's keys and values, packed (it is sent on)."""
        start, length = plan.pieces[piece]
        held = packed(self._kv_shapes(k, v, length), k.dtype, k.device)
        held[1].copy_(k[:, :, start:start + length])
        held[2].copy_(v[:, :, start:start + length])
        return held

    def _keys_in_flight(self, plan: Pass, index: int, held: Packed, k, v, phase: str):
        """Item ``index``'s key/value transfers: pass the piece in hand on (unless it has
        been everywhere) and start receiving the next item's piece (unless it is this
        rank's own). Returns ``(works, arriving)``."""
        send = held[0] if plan.items[index][1] < self.world - 1 else None
        arriving = None
        if index + 1 < len(plan.items) and plan.items[index + 1][1] > 0:
            length = plan.pieces[plan.items[index + 1][0]][1]
            arriving = packed(self._kv_shapes(k, v, length), k.dtype, k.device)
        works = self.exchange(send, None if arriving is None else arriving[0], _KV_TAG, phase)
        return works, arriving

    def _next_held(self, plan: Pass, index: int, arriving, k, v) -> Packed | None:
        if arriving is not None:
            return arriving
        if index + 1 < len(plan.items):
            return self._own(plan, k, v, plan.items[index + 1][0])
        return None

    # --- forward ----------------------------------------------------------------------------

    def forward(self, q, k, v):
        """``q (B, Hq, n, D)``, ``k (B, Hkv, n, D)``, ``v (B, Hkv, n, Dv)`` local shards ->
        ``out (B, Hq, n, Dv)`` and ``lse (B, Hq, n)`` in the accumulation dtype."""
        plan = self.forward_pass
        acc = compute_dtype(q.dtype)
        B, Hq, n, _ = q.shape
        out = torch.zeros(B, Hq, n, v.shape[3], dtype=acc, device=q.device)
        lse = torch.full((B, Hq, n), float("-inf"), dtype=acc, device=q.device)
        held = self._own(plan, k, v, 0)  # travels in the input dtype
        for index, (p, s) in enumerate(plan.items):
            works, arriving = self._keys_in_flight(plan, index, held, k, v, "forward")
            start = time.perf_counter()
            for b in plan.work[p][s]:
                rows, cols = slice(b.q_start, b.q_start + b.q_len), plan.cols(b)
                block_out, block_lse = tiled_forward(
                    q[:, :, rows], held[1][:, :, cols], held[2][:, :, cols], b.fns,
                    self.scale, self.block_q, plan.block_k)
                merge(out[:, :, rows], lse[:, :, rows], block_out, block_lse)
                del block_out, block_lse
            self._count("compute_s_forward", start)
            self.wait(works)
            held = None  # sent: free it before the next piece is cut
            held = self._next_held(plan, index, arriving, k, v)
        return out, lse

    # --- backward ---------------------------------------------------------------------------

    def backward(self, q, k, v, out, lse, grad_out):
        """Gradients ``(dq, dk, dv)`` of this rank's shards, in the accumulation dtype."""
        plan = self._backward_pass()
        if self.stats is not None:
            self.stats["pieces_backward"] = len(plan.pieces)
        acc = compute_dtype(q.dtype)
        world = self.world
        dq = torch.zeros(q.shape, dtype=acc, device=q.device)
        dk = torch.zeros(k.shape, dtype=acc, device=q.device)
        dv = torch.zeros(v.shape, dtype=acc, device=q.device)
        held = self._own(plan, k, v, 0)
        leaving: tuple[list, Packed] | None = None  # the last dK|dV message sent, in flight
        for index, (p, s) in enumerate(plan.items):
            kv_works, arriving = self._keys_in_flight(plan, index, held, k, v, "backward")
            incoming = None  # the sum of the ranks before this one, or a finished one home
            if world > 1 and s >= 2:
                incoming = self._receive_sum(plan, p, dk, dv, _GRAD_TAG)
            elif world > 1 and s == 0 and p > 0:
                incoming = self._receive_sum(plan, p - 1, dk, dv, _HOME_TAG)
            start = time.perf_counter()
            keys = (held[1].to(acc), held[2].to(acc))  # gradients are summed in acc dtype
            part = None  # this rank's contribution to the piece's dK, dV (s > 0)
            for b in plan.work[p][s]:
                rows, cols = slice(b.q_start, b.q_start + b.q_len), plan.cols(b)
                dq_b, dk_b, dv_b, _ = tiled_backward(
                    q[:, :, rows], keys[0][:, :, cols], keys[1][:, :, cols],
                    out[:, :, rows], lse[:, :, rows], grad_out[:, :, rows], b.fns,
                    self.scale, self.block_q, plan.block_k, (), ())
                dq[:, :, rows] += dq_b
                if s == 0:  # this rank's own piece: straight into its gradients
                    at = slice(b.kv_start, b.kv_start + b.kv_len)
                    dk[:, :, at] += dk_b
                    dv[:, :, at] += dv_b
                elif part is None and b.kv_len == keys[0].shape[2]:
                    part = (dk_b, dv_b)  # the kernel's own output: summed into in place
                else:
                    if part is None:
                        part = (torch.zeros_like(keys[0]), torch.zeros_like(keys[1]))
                    part[0][:, :, cols] += dk_b
                    part[1][:, :, cols] += dv_b
                del dq_b, dk_b, dv_b
                if leaving is not None:  # it had this block's compute to leave
                    self.wait(leaving[0])
                    leaving = None
            del keys
            self._count("compute_s_backward", start)
            if s == 0:
                if incoming is not None:
                    self._add_home(plan, incoming, dk, dv)
            else:
                if leaving is not None:
                    self.wait(leaving[0])
                buffer = self._outgoing_sum(plan, p, part, incoming, dk, dv)
                part = incoming = None
                tag = _HOME_TAG if s == world - 1 else _GRAD_TAG
                leaving = (self.exchange(buffer[0], None, tag, "backward"), buffer)
                del buffer  # held by `leaving` until its send is waited for
            self.wait(kv_works)
            held = None
            held = self._next_held(plan, index, arriving, k, v)
        if world > 1:  # the last piece's sum comes home
            self._add_home(plan, self._receive_sum(plan, len(plan.pieces) - 1, dk, dv,
                                                   _HOME_TAG), dk, dv)
        if leaving is not None:
            self.wait(leaving[0])
        return dq, dk, dv

    def _receive_sum(self, plan: Pass, piece: int, dk, dv, tag: int):
        """Start receiving a dK|dV sum of ``piece``: ``(piece, works, packed buffer)``."""
        buffer = packed(self._kv_shapes(dk, dv, plan.pieces[piece][1]), dk.dtype, dk.device)
        return piece, self.exchange(None, buffer[0], tag, "backward"), buffer

    def _outgoing_sum(self, plan: Pass, piece: int, part, incoming, dk, dv) -> Packed:
        """This item's contribution plus the sum received (none at ``s = 1``), packed."""
        if incoming is not None:
            _, works, buffer = incoming
            self.wait(works)
            if part is not None:
                buffer[1].add_(part[0])
                buffer[2].add_(part[1])
            return buffer
        shapes = self._kv_shapes(dk, dv, plan.pieces[piece][1])
        buffer = packed(shapes, dk.dtype, dk.device, zero=part is None)
        if part is not None:
            buffer[1].copy_(part[0])
            buffer[2].copy_(part[1])
        return buffer

    @staticmethod
    def _add_home(plan: Pass, incoming, dk, dv) -> None:
        """Wait for the other ranks' sum of one of this rank's pieces and add it."""
        piece, works, buffer = incoming
        RingPasses.wait(works)
        start, length = plan.pieces[piece]
        dk[:, :, start:start + length] += buffer[1]
        dv[:, :, start:start + length] += buffer[2]
