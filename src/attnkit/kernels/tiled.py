"""The ``tiled`` backend: FlashAttention in plain torch ops, with block skipping.

Forward (Dao et al. 2022, arXiv:2205.14135; loop order of FlashAttention-2,
Dao 2023, arXiv:2307.08691): for each block of queries, walk the key blocks with
an online softmax (running max ``m``, running sum ``l``, rescaled accumulator),
and keep only the per-row log-sum-exp ``lse``. Backward recomputes every tile's
probabilities from ``lse`` instead of storing the ``(Lq, Lk)`` matrix, so memory
is ``O((Lq + Lk) * D)`` plus a bounded batch of tiles.

Two executions of the same algorithm:

* batched (:mod:`attnkit.kernels._tiled_batch`), used unless a ``score`` callable
  needs Python per tile: the non-EMPTY tiles of many query blocks are gathered into
  key slabs and run as a few batched matmuls (block-sparse, as FlexAttention's block
  mask); masks and the built-in score mods (ALiBi, softcap) given as numbers
  (:class:`~attnkit.kernels.spec.KernelSpec`) are tensor operations over the whole
  batch, other masks are evaluated per PARTIAL tile and stacked. ``attention()``
  chooses its tile sizes per call from the block map (:func:`choose_tiles`: small
  tiles for narrow windows);
* per tile (:mod:`attnkit.kernels._tiled_loop`): one Python iteration per tile,
  for any ``score_mod`` callable; its gradient is taken per tile with autograd on
  that tile's logits, including gradients to tensors it captures (a learned
  relative-position table, say).

Common to both:

* a tile covers every batch row and head at once;
* a tile plan (``EMPTY``/``PARTIAL``/``FULL`` per tile, from the mask's block
  map) lets empty tiles be skipped entirely and full tiles run unmasked;
* grouped-query attention stacks the ``G`` query heads of a key/value head along
  the rows: K/V are never repeated in memory;
* half-precision inputs are multiplied in float32 (keys/values upcast once,
  ``O(Lk * D)``), so logits are not rounded to 8 bits of mantissa.

The functional layer (:mod:`attnkit.functional.attention`) builds the tile plan,
the per-tile mask and the per-tile score function; this module sees only
tensors, callables and plain numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from attnkit.kernels._tiled_batch import batch_backward, batch_forward
from attnkit.kernels._tiled_flash import flash_causal, flash_forward
from attnkit.kernels._tiled_loop import loop_backward, loop_forward
from attnkit.kernels.backend import Backend, Bid
from attnkit.kernels.precision import compute_dtype
from attnkit.kernels.problem import Problem
from attnkit.kernels.spec import EMPTY, FULL, PARTIAL, KernelSpec

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

# The batched kernel (``attention(backend="tiled")`` without a score callable) picks its
# tile sizes per call (:func:`choose_tiles`) among TILE_CANDIDATES (the first is the
# finest; the others multiples of it) when its mask has a plain-number description, and
# uses BATCH_TILES without a mask (other masks: DEFAULT_BLOCK_Q x DEFAULT_BLOCK_K). Measured on
# the 2-core development machine (B=1, H=8, D=64, float32, 1 thread, CPU time under
# load): dense L=1024/4096 ran within 10% for 128x128 and 128x256 tiles, 128x256 best
# (256x256 up to 25% slower);
# a 256-key sliding window at L=16384 ran 1.2x faster with 64x64 tiles than 128x128
# and 1.6x faster than 256x256. PARTIAL_COST (extra work of a masked tile, in tiles)
# and TILE_COST (fixed cost per tile, in logits) weigh the candidates.
TILE_CANDIDATES = ((64, 64), (128, 128), (128, 256))
BATCH_TILES = (128, 256)
PARTIAL_COST = 0.5
TILE_COST = 2048


class TileFns:
    """Callables the functional layer hands to the kernel.

    Attributes:
        mask: ``mask(q0, q1, k0, k1) -> bool (B|1, Hq|1, q1-q0, k1-k0)`` for the
            tile's rows ``q0:q1`` and keys ``k0:k1`` (True = may attend), or None.
        score: ``score(s, q0, k0) -> s'`` applying the score_mod to a tile's
            scaled logits ``s (B, Hq, rows, cols)``, or None.
        plan: int8 ``(nq, nk)`` tile kinds for ``(block_q, block_k)`` tiles; None
            means every tile is PARTIAL when ``mask`` is given, FULL otherwise.
        terms: the same mask and score modifier as plain numbers
            (:class:`~attnkit.kernels.spec.KernelSpec`), or None. When given, the
            kernel evaluates them over whole batches of tiles and calls neither
            ``mask`` nor ``score``; without it, a ``score`` callable sends the call
            through the per-tile loop.
    """

    def __init__(self, mask: Callable | None = None, score: Callable | None = None,
                 plan: torch.Tensor | None = None, terms: KernelSpec | None = None):
        self.mask = mask
        self.score = score
        self.plan = plan
        self.terms = terms


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


def _uses_loop(fns: TileFns) -> bool:
    """Whether the call needs the per-tile loop: a score callable with no plain-number
    description (it is run, and differentiated, one tile at a time)."""
    return fns.score is not None and fns.terms is None


def _forward(q, k, v, fns: TileFns, scale, block_q, block_k):
    """``(out, lse)`` in the accumulation dtype; see :func:`tiled_attention`."""
    B, Hq, Lq, _ = q.shape
    if B == 0 or Lq == 0 or k.shape[2] == 0:
        acc = compute_dtype(q.dtype)
        out = torch.zeros(B, Hq, Lq, v.shape[3], dtype=acc, device=q.device)
        return out, torch.full((B, Hq, Lq), float("-inf"), dtype=acc, device=q.device)
    if _uses_loop(fns):
        return loop_forward(q, k, v, fns, scale, block_q, block_k)
    causal = flash_causal(q, k, v, fns, fns.terms, scale)
    if causal is not None:  # nothing for the tiles to do: ATen's fused CPU kernel
        return flash_forward(q, k, v, scale, causal)
    return batch_forward(q, k, v, fns, scale, block_q, block_k, fns.terms)


def _backward(q, k, v, out, lse, grad_out, fns: TileFns, scale, block_q, block_k,
              captured, captured_needs_grad):
    """``(dq, dk, dv, captured_grads)`` in the input dtypes."""
    if _uses_loop(fns) or q.shape[0] == 0 or q.shape[2] == 0 or k.shape[2] == 0:
        return loop_backward(q, k, v, out, lse, grad_out, fns, scale, block_q, block_k,
                             captured, captured_needs_grad)
    dq, dk, dv = batch_backward(q, k, v, out, lse, grad_out, fns, scale, block_q, block_k,
                                fns.terms)
    return (dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype),
            [torch.zeros_like(t) if need else None
             for t, need in zip(captured, captured_needs_grad, strict=True)])


# The auto policy's thresholds, measured on the 2-core development machine
# (benchmarks/README.md). Below TILED_MIN_ELEMENTS logits the reference's single
# matmul beats the tile loop; a mask_mod leaves the dense kernels for this one once at
# least TILED_MIN_SPARSITY of the tiles are empty; returned weights are rebuilt from
# the lse above REFERENCE_MAX_WEIGHTS logits instead of materialized with the rest.
TILED_MIN_ELEMENTS = 1 << 22
TILED_MIN_SPARSITY = 0.5
REFERENCE_MAX_WEIGHTS = 1 << 26


def _plain_terms(call, q_heads: int, captured) -> KernelSpec | None:
    """The call's mask and score modifier as numbers, when the batched kernel can
    evaluate them that way (no score_mod tensor needs a gradient)."""
    if captured:
        return None
    spec = call.kernel_spec()
    if isinstance(spec, str):
        return None
    slopes = spec.score.alibi_slopes
    if slopes is not None and slopes.numel() != q_heads:
        return None  # the per-tile path reports the mismatch
    return spec


def _pool(kinds: torch.Tensor, fq: int, fk: int) -> torch.Tensor:
    """A ``(nq, nk)`` plan of small tiles as the plan of tiles ``fq x fk`` times larger
    (exact: a large tile is EMPTY/FULL iff all its small tiles are)."""
    nq, nk = kinds.shape
    pad = (0, (-nk) % fk, 0, (-nq) % fq)
    shape = (-1, fq, (nk + pad[1]) // fk, fk)
    empty = F.pad((kinds == EMPTY).to(torch.int8), pad, value=1).view(shape).amin((1, 3))
    full = F.pad((kinds == FULL).to(torch.int8), pad, value=1).view(shape).amin((1, 3))
    return torch.where(full == 1, FULL, torch.where(empty == 1, EMPTY, PARTIAL))


def choose_tiles(call, plan_of) -> tuple[int, int]:
    """Tile sizes for the batched kernel, from the call's block map.

    ``plan_of(block_q, block_k)`` gives the tile plan (None without a mask). Without a
    mask every size does the same work and :data:`BATCH_TILES` is used. With one, the
    plan at the finest candidate size is pooled to each candidate and the size with the
    least estimated cost wins: the logits computed (a narrow window wastes up to a tile
    on each side), PARTIAL tiles counted extra for the mask, and a fixed cost per tile.
    """
    fine_q, fine_k = TILE_CANDIDATES[0]
    fine = plan_of(fine_q, fine_k)
    if fine is None:
        return BATCH_TILES
    best, best_cost = BATCH_TILES, float("inf")
    for block_q, block_k in TILE_CANDIDATES:
        kinds = _pool(fine, block_q // fine_q, block_k // fine_k)
        visited = int((kinds != EMPTY).sum())
        partial = int((kinds == PARTIAL).sum())
        cost = block_q * block_k * (visited + PARTIAL_COST * partial) + TILE_COST * visited
        if cost < best_cost:
            best, best_cost = (block_q, block_k), cost
    return best


def _run(q, k, v, call):
    captured = call.captured()
    terms = _plain_terms(call, q.shape[1], captured)
    if terms is not None:
        block_q, block_k = choose_tiles(call, lambda bq, bk: call.tile_fns(bq, bk).plan)
    else:
        # A score callable (the per-tile loop), or a mask without a closed form (a tensor,
        # a user callable: every block map is a full evaluation, so none is built just to
        # compare sizes): the default tiles.
        block_q, block_k = DEFAULT_BLOCK_Q, DEFAULT_BLOCK_K
    fns = call.tile_fns(block_q, block_k)
    fns.terms = terms
    out, lse = tiled_attention(q, k, v, scale=call.scale, fns=fns, captured=captured,
                               block_q=block_q, block_k=block_k)
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
