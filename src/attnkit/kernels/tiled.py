"""The ``tiled`` backend: FlashAttention in plain torch ops, with block skipping.

Forward (Dao et al. 2022, arXiv:2205.14135; loop order of FlashAttention-2,
Dao 2023, arXiv:2307.08691): for each block of queries, walk the key blocks with
an online softmax (running max ``m``, running sum ``l``, rescaled accumulator),
and keep only the per-row log-sum-exp ``lse``. Backward recomputes every tile's
probabilities from ``lse`` instead of storing the ``(Lq, Lk)`` matrix, so memory
is ``O((Lq + Lk) * D)`` plus one tile.

What differs from the CUDA kernels:

* the tile loop is Python over batched torch ops; a tile covers every batch row
  and head at once, so the loop runs ``ceil(Lq/block_q) * ceil(Lk/block_k)``
  times, not per head;
* a tile plan (``EMPTY``/``PARTIAL``/``FULL`` per tile, from the mask's block
  map) lets empty tiles be skipped entirely and full tiles run unmasked;
* ``score_mod`` is any Python callable; its gradient is taken per tile with
  autograd on that tile's logits, including gradients to tensors it captures
  (a learned relative-position table, say);
* grouped-query attention reshapes the queries to ``(B, Hkv, G, L, D)`` and
  broadcasts K/V over ``G``: K/V are never repeated in memory;
* half-precision inputs are multiplied in float32 (keys/values upcast once,
  ``O(Lk * D)``), so logits are not rounded to 8 bits of mantissa.

The functional layer (:mod:`attnkit.functional.attention`) builds the tile plan,
the per-tile mask and the per-tile score function; this module sees only
tensors and callables.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from attnkit.kernels.backend import Backend, Bid
from attnkit.kernels.precision import compute_dtype
from attnkit.kernels.problem import Problem
from attnkit.kernels.spec import EMPTY, FULL, PARTIAL

__all__ = ["tiled_attention", "TileFns", "DEFAULT_BLOCK_Q", "DEFAULT_BLOCK_K", "BACKEND",
           "TILED_MIN_ELEMENTS", "TILED_MIN_SPARSITY", "REFERENCE_MAX_WEIGHTS",
           "tiled_forward", "tiled_backward"]

# Chosen by measurement on the 2-core development machine (dense forward, B=1,
# H=8, D=64, float32, 2 threads; L=2048 and 4096): 128x512, 256x256, 256x512,
# 512x512 and 512x1024 tiles ran within 10% of each other (0.56-0.63x SDPA's flash
# kernel) and 256x256 was best at both lengths. Smaller tiles pay more Python loop
# overhead per FLOP; larger ones push a tile's logits (8 heads x 256 x 256 floats
# = 2 MiB) out of the L2 cache during the softmax passes.
DEFAULT_BLOCK_Q = 256
DEFAULT_BLOCK_K = 256


class TileFns:
    """Callables the functional layer hands to the kernel.

    Attributes:
        mask: ``mask(q0, q1, k0, k1) -> bool (B|1, Hq|1, q1-q0, k1-k0)`` for the
            tile's rows ``q0:q1`` and keys ``k0:k1`` (True = may attend), or None.
        score: ``score(s, q0, k0) -> s'`` applying the score_mod to a tile's
            scaled logits ``s (B, Hq, rows, cols)``, or None.
        plan: int8 ``(nq, nk)`` tile kinds for ``(block_q, block_k)`` tiles; None
            means every tile is PARTIAL when ``mask`` is given, FULL otherwise.
    """

    def __init__(self, mask: Callable | None = None, score: Callable | None = None,
                 plan: torch.Tensor | None = None):
        self.mask = mask
        self.score = score
        self.plan = plan


def _tile_kind(plan: torch.Tensor | None, has_mask: bool, i: int, j: int) -> int:
    if plan is None:
        return PARTIAL if has_mask else FULL
    return int(plan[i, j])


def _rows(x: torch.Tensor, q0: int, q1: int, kv_heads: int, dtype) -> torch.Tensor:
    """Rows ``q0:q1`` of ``(B, Hq, L, X)`` as ``(B, Hkv, G*r, X)`` in ``dtype``.

    Stacking the G query heads that share a key/value head along the row axis turns
    every product with K or V into one plain batched matmul over ``(B, Hkv)``.
    """
    B, Hq, _, X = x.shape
    block = x[:, :, q0:q1].to(dtype).contiguous()  # read only: may be the caller's memory
    return block.view(B, kv_heads, Hq // kv_heads * (q1 - q0), X)


def _logits(q_blk, k_blk, scale):
    """``(q . k) * scale`` of one tile, ``(B, Hkv, G*r, c)``: the reference's order of
    operations, so the lse rounds like the oracle's logits (weights rebuilt from it by
    ``exp(s - lse)`` are then exact where the reference's are)."""
    return torch.matmul(q_blk, k_blk.transpose(-2, -1)).mul_(scale)


def _scores(q_blk, k_blk, fns: TileFns, q0, k0, heads, scale):
    """Score-modded logits of one tile: ``(B, Hkv, G*r, c)``, and the same memory
    viewed per query head as ``(B, Hq, r, c)``."""
    s = _logits(q_blk, k_blk, scale)  # (B, Hkv, G*r, c)
    per_head = s.view(s.shape[0], heads, -1, s.shape[-1])  # (B, Hq, r, c)
    if fns.score is not None:
        per_head = fns.score(per_head, q0, k0).contiguous()
        s = per_head.view(s.shape)
    return s, per_head


class _TiledAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, fns: TileFns, scale: float, block_q: int, block_k: int,
                q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *captured: torch.Tensor):
        out_acc, lse = _forward(q, k, v, fns, scale, block_q, block_k)
        out = out_acc.to(q.dtype)
        # The backward's row term delta = rowsum(dO * O) needs O before rounding to
        # a half type: with O in bfloat16 the softmax-backward identity drifts and
        # the gradients of score_mod tensors (summed over many logits) degrade.
        ctx.save_for_backward(q, k, v, out_acc, lse, *captured)
        ctx.fns, ctx.scale, ctx.block_q, ctx.block_k = fns, scale, block_q, block_k
        ctx.mark_non_differentiable(lse)
        return out, lse

    @staticmethod
    def backward(ctx, grad_out, _grad_lse):
        q, k, v, out, lse, *captured = ctx.saved_tensors
        grads = _backward(q, k, v, out, lse, grad_out, ctx.fns, ctx.scale, ctx.block_q,
                          ctx.block_k, captured, ctx.needs_input_grad[7:])
        dq, dk, dv, captured_grads = grads
        return (None, None, None, None, dq, dk, dv, *captured_grads)


def tiled_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, scale: float,
                    fns: TileFns | None = None, captured: Sequence[torch.Tensor] = (),
                    block_q: int = DEFAULT_BLOCK_Q, block_k: int = DEFAULT_BLOCK_K,
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact attention in tiles, trainable, in ``O((Lq + Lk) * D)`` memory.

    Args:
        q: ``(B, Hq, Lq, D)``; k: ``(B, Hkv, Lk, D)``; v: ``(B, Hkv, Lk, Dv)``.
        scale: logit multiplier.
        fns: per-tile mask, score function and tile plan (see :class:`TileFns`).
        captured: tensors the score function reads that need gradients (their
            gradients are computed tile by tile and returned through autograd).
        block_q, block_k: tile sizes; ``fns.plan`` must use the same.

    Returns:
        ``out (B, Hq, Lq, Dv)`` in the input dtype and ``lse (B, Hq, Lq)`` in
        float32 (float64 for float64 inputs): the natural log-sum-exp of each
        row's logits, ``-inf`` for a row with nothing to attend to (its output is 0).
    """
    fns = fns or TileFns()
    return _TiledAttention.apply(fns, scale, block_q, block_k, q, k, v, *captured)


def _forward(q, k, v, fns: TileFns, scale, block_q, block_k):
    B, Hq, Lq, D = q.shape
    Hkv, Lk, Dv = k.shape[1], k.shape[2], v.shape[3]
    acc = compute_dtype(q.dtype)
    k_acc, v_acc = k.to(acc), v.to(acc)  # no copy for float32/float64
    out = torch.zeros(B, Hq, Lq, Dv, dtype=acc, device=q.device)  # cast by the caller
    lse = torch.full((B, Hq, Lq), float("-inf"), dtype=acc, device=q.device)
    if B == 0:
        return out, lse  # an empty batch: the tile views below cannot infer their rows
    neg_inf = float("-inf")
    n_k = -(-Lk // block_k)
    for i, q0 in enumerate(range(0, Lq, block_q)):
        q1 = min(q0 + block_q, Lq)
        q_blk = _rows(q, q0, q1, Hkv, acc)  # (B, Hkv, G*r, D)
        rows = q_blk.shape[2]
        m = torch.full((B, Hkv, rows, 1), neg_inf, dtype=acc, device=q.device)
        l = torch.zeros_like(m)
        o = torch.zeros(B, Hkv, rows, Dv, dtype=acc, device=q.device)
        for j in range(n_k):
            kind = _tile_kind(fns.plan, fns.mask is not None, i, j)
            if kind == EMPTY:
                continue
            k0, k1 = j * block_k, min((j + 1) * block_k, Lk)
            s, per_head = _scores(q_blk, k_acc[:, :, k0:k1], fns, q0, k0, Hq, scale)
            if kind != FULL:
                per_head.masked_fill_(~fns.mask(q0, q1, k0, k1), neg_inf)  # writes into s
            m_new = torch.maximum(m, s.amax(dim=-1, keepdim=True))
            # Rows with nothing allowed so far keep m = -inf; shift them by 0
            # instead so exp() sees -inf - 0 = -inf rather than -inf + inf = nan.
            shift = m_new.masked_fill(m_new == neg_inf, 0.0)
            p = s.sub_(shift).exp_()  # (B, Hkv, G*r, c), in place: s is this tile's own
            correction = torch.exp(m - shift)
            l = l.mul_(correction).add_(p.sum(dim=-1, keepdim=True))
            o = o.mul_(correction).add_(torch.matmul(p, v_acc[:, :, k0:k1]))
            m = m_new
        empty = l == 0
        o = o.div_(l.masked_fill(empty, 1.0))  # empty rows: o is already 0
        out[:, :, q0:q1] = o.view(B, Hq, q1 - q0, Dv)
        lse[:, :, q0:q1] = (m + torch.log(l)).masked_fill(empty, neg_inf).view(B, Hq, q1 - q0)
    return out, lse


def _backward(q, k, v, out, lse, grad_out, fns: TileFns, scale, block_q, block_k,
              captured, captured_needs_grad):
    B, Hq, Lq, D = q.shape
    Hkv, Lk = k.shape[1], k.shape[2]
    acc = compute_dtype(q.dtype)
    k_acc, v_acc = k.to(acc), v.to(acc)
    dq = torch.empty(B, Hq, Lq, D, dtype=acc, device=q.device)
    dk = torch.zeros(B, Hkv, Lk, D, dtype=acc, device=q.device)
    dv = torch.zeros(B, Hkv, Lk, v.shape[3], dtype=acc, device=q.device)
    captured_grads = [torch.zeros_like(t) if need else None
                      for t, need in zip(captured, captured_needs_grad, strict=True)]
    if B == 0:
        return dq.zero_().to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), captured_grads
    wanted = [t for t, need in zip(captured, captured_needs_grad, strict=True) if need]
    # delta_i = sum_j P_ij dP_ij = rowsum(dO * O): the softmax backward's row term.
    delta = (grad_out.to(acc) * out).sum(dim=-1, keepdim=True)  # (B, Hq, Lq, 1)
    # Rows with nothing to attend to have lse = -inf; +inf makes their P exactly 0.
    lse = lse.masked_fill(lse == float("-inf"), float("inf"))[..., None]  # (B, Hq, Lq, 1)
    n_k = -(-Lk // block_k)

    def probabilities(i, j, q0, q1, q_blk, lse_blk, track):
        """Recompute one tile: (P, raw logits, score-modded logits or None)."""
        k0, k1 = j * block_k, min((j + 1) * block_k, Lk)
        raw = modded = None
        if fns.score is not None:
            raw = _logits(q_blk, k_acc[:, :, k0:k1], scale)  # (B, Hkv, G*r, c)
            with torch.enable_grad():
                raw.requires_grad_(track)
                modded = fns.score(raw.view(B, Hq, q1 - q0, k1 - k0), q0, k0)
            s = modded.detach().reshape(raw.shape)  # a copy the mask may write into
        else:
            s = _logits(q_blk, k_acc[:, :, k0:k1], scale)
        if _tile_kind(fns.plan, fns.mask is not None, i, j) != FULL:
            s.view(B, Hq, q1 - q0, k1 - k0).masked_fill_(~fns.mask(q0, q1, k0, k1),
                                                         float("-inf"))
        return s.sub_(lse_blk).exp_(), raw, modded  # exact softmax weights

    for i, q0 in enumerate(range(0, Lq, block_q)):
        q1 = min(q0 + block_q, Lq)
        q_blk = _rows(q, q0, q1, Hkv, acc)  # (B, Hkv, G*r, D)
        do_blk = _rows(grad_out, q0, q1, Hkv, acc)  # (B, Hkv, G*r, Dv)
        lse_blk = _rows(lse, q0, q1, Hkv, acc)  # (B, Hkv, G*r, 1)
        tiles = [j for j in range(n_k)
                 if _tile_kind(fns.plan, fns.mask is not None, i, j) != EMPTY]
        if wanted:
            # Gradients of score_mod tensors sum dS over many logits, so the rows of
            # dS must cancel to rounding, as they do in an exact softmax backward.
            # rowsum(dO * O) and the saved lse only match P . dP and sum(P) = 1 up to
            # rounding, which would accumulate; one extra pass measures both sums
            # on the very P and dP used below, and renormalizes with them.
            p_sum = torch.zeros_like(lse_blk)
            delta_blk = torch.zeros_like(lse_blk)
            for j in tiles:
                p, _, _ = probabilities(i, j, q0, q1, q_blk, lse_blk, track=False)
                v_blk = v_acc[:, :, j * block_k:min((j + 1) * block_k, Lk)]
                p_sum += p.sum(dim=-1, keepdim=True)
                delta_blk += (p * torch.matmul(do_blk, v_blk.transpose(-2, -1))).sum(
                    dim=-1, keepdim=True)
            filled = p_sum > 0  # empty rows keep lse = +inf and P = 0
            delta_blk = torch.where(filled, delta_blk / p_sum.where(filled, 1.0), 0.0)
            lse_blk = torch.where(filled, lse_blk + torch.log(p_sum.where(filled, 1.0)),
                                  lse_blk)
        else:
            delta_blk = _rows(delta, q0, q1, Hkv, acc)
        dq_blk = torch.zeros_like(q_blk)
        for j in tiles:
            k0, k1 = j * block_k, min((j + 1) * block_k, Lk)
            k_blk, v_blk = k_acc[:, :, k0:k1], v_acc[:, :, k0:k1]  # (B, Hkv, c, D)
            p, raw, modded = probabilities(i, j, q0, q1, q_blk, lse_blk, track=True)
            # dV sums over the query heads of a group: they are stacked along the rows.
            dv[:, :, k0:k1] += torch.matmul(p.transpose(-2, -1), do_blk)
            dp = torch.matmul(do_blk, v_blk.transpose(-2, -1))
            ds = p.mul_(dp.sub_(delta_blk))  # gradient w.r.t. the (modded) logits
            if modded is not None:
                grads = torch.autograd.grad(modded, [raw, *wanted],
                                            ds.view(modded.shape), allow_unused=True)
                ds = grads[0]
                extras = iter(grads[1:])
                for g in captured_grads:
                    if g is not None:
                        extra = next(extras)
                        if extra is not None:
                            g += extra
            dq_blk += torch.matmul(ds, k_blk)
            dk[:, :, k0:k1] += torch.matmul(ds.transpose(-2, -1), q_blk)
        dq[:, :, q0:q1] = dq_blk.mul_(scale).view(B, Hq, q1 - q0, D)
    dk.mul_(scale)  # dS is the gradient of the scaled logits: dK = scale * dS^T q
    return (dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype),
            [g.to(t.dtype) if g is not None else None
             for g, t in zip(captured_grads, captured, strict=True)])


# The auto policy's thresholds, measured on the 2-core development machine
# (benchmarks/README.md). Below TILED_MIN_ELEMENTS logits the reference's single
# matmul beats the tile loop; a mask_mod leaves the dense kernels for this one once at
# least TILED_MIN_SPARSITY of the tiles are empty; returned weights are rebuilt from
# the lse above REFERENCE_MAX_WEIGHTS logits instead of materialized with the rest.
TILED_MIN_ELEMENTS = 1 << 22
TILED_MIN_SPARSITY = 0.5
REFERENCE_MAX_WEIGHTS = 1 << 26


def _run(q, k, v, call):
    out, lse = tiled_attention(q, k, v, scale=call.scale,
                               fns=call.tile_fns(DEFAULT_BLOCK_Q, DEFAULT_BLOCK_K),
                               captured=call.captured())
    return out, (call.weights_from_lse(lse.detach()) if call.return_weights else None)


def _refusal(p: Problem) -> str | None:
    if p.normalize != "softmax":
        return f"normalize={p.normalize!r}: the online softmax does not apply"
    if p.dropout_p > 0.0:
        return ("dropout_p > 0: the tiled backward recomputes the weights and would need "
                "the forward's random dropout mask")
    return None


def _bid(p: Problem) -> Bid:
    """Beats the fused dense kernels (3) on sparse structured masks, the reference (1) on
    large problems; stays below it where the tile loop does not pay."""
    few = f"only {p.elements:,} logits: too few to pay for the tile loop"
    if p.return_weights:
        if p.elements > REFERENCE_MAX_WEIGHTS:
            return Bid(2, f"return_weights with {p.elements:,} logits: O(L) memory, weights "
                          f"rebuilt from the lse")
        return Bid(0, "return_weights on a small problem: materializing them is simpler "
                      "and exact")
    if p.score_mod:
        if p.requires_grad and not p.score_mod_traceable:
            return Bid(0, "a custom score_mod callable under autograd: tensors it captures "
                          "may not all be found (use attnkit.score_mods, or backend='tiled')")
        big = p.elements >= TILED_MIN_ELEMENTS
        return Bid(2, f"{p.elements:,} logits are never materialized") if big else Bid(0, few)
    if p.block_sparsity is not None and p.block_sparsity >= TILED_MIN_SPARSITY:
        return Bid(4, f"skips the empty tiles of a mask_mod at block sparsity "
                      f"{p.block_sparsity:.2f}")
    if p.block_sparsity is not None:
        return Bid(2 if p.elements >= TILED_MIN_ELEMENTS else 0,
                   f"block sparsity {p.block_sparsity:.2f} is below {TILED_MIN_SPARSITY}: "
                   f"few tiles to skip")
    return Bid(2, "O(L) memory on a large problem") if p.elements >= TILED_MIN_ELEMENTS \
        else Bid(0, few)


BACKEND = Backend(
    name="tiled",
    summary="FlashAttention in torch ops: online softmax, tile skipping, O(L) memory, trainable",
    refusal=_refusal, run=_run, bid=_bid,
)


# The per-block kernels, for callers that merge blocks themselves (ring attention): the
# forward returns (out, lse); the backward (dq, dk, dv, captured score-mod gradients).
tiled_forward = _forward
tiled_backward = _backward
