"""Additive attention scores ``v^T tanh(Wq + Uk)``, and a chunked kernel that never
builds the ``(B, Lq, Lk, d)`` activation tensor.

Paper: Bahdanau, Cho & Bengio (2014), "Neural Machine Translation by Jointly
Learning to Align and Translate", arXiv:1409.0473, appendix A.1.2::

    e_ij = v_a^T tanh(W_a s_{i-1} + U_a h_j)

The functions here take the projections as inputs, so they serve every additive
score (Bahdanau, Luong's ``concat``, local attention):

    wq: (B, Lq, d)   the projected queries ``W_a s``
    uk: (B, Lk, d)   the projected keys ``U_a h`` (computed once per source)
    v:  (d,)         the score vector ``v_a``
    ->  (B, Lq, Lk)  the scores ``e``

* :func:`additive_scores_broadcast` is the textbook: broadcast, ``tanh``, dot with
  ``v``. Autograd keeps the ``(B, Lq, Lk, d)`` activations alive until backward, so
  its memory is ``O(B Lq Lk d)`` (8 GiB per copy at B=8, L=1024, d=256 in float32).
* :func:`additive_scores_chunked` loops over blocks of (batch, query) rows of at
  most ``chunk_elements`` activations, saves only ``wq, uk, v`` and recomputes
  ``tanh`` block by block in backward. Extra memory is ``O(chunk_elements + B Lk d)``
  besides the ``(B, Lq, Lk)`` scores; it is the readable twin's fast path and is
  tested against it.
* :func:`additive_scores` picks one from the problem size.

Numerics: both paths compute in float32 for half-precision inputs (float64 stays
float64) and cast the scores back, so the choice of path never changes precision.
The chunked kernel's backward is not itself differentiable (no double backward).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.autograd.function import once_differentiable

from attnkit._validate import check_int
from attnkit.functional.normalizers import compute_dtype

__all__ = ["additive_scores", "additive_scores_broadcast", "additive_scores_chunked",
           "DEFAULT_CHUNK_THRESHOLD", "DEFAULT_CHUNK_ELEMENTS"]

# Measured on a 2-core Xeon (torch 2.13 CPU, float32, forward+backward of the
# scores, one torch thread): blocks of 2**16..2**20 activations ran equally fast
# and larger ones slower; 2**20 (4 MiB) keeps the number of small ops, which
# costs most when threads are oversubscribed, low. The broadcast path is faster
# up to about 2**20 activations (1.5-2x below 2**18, where the chunked kernel's
# fixed cost dominates); from 2**21 up the chunked kernel wins (2x at 2**25).
DEFAULT_CHUNK_ELEMENTS = 2**20
DEFAULT_CHUNK_THRESHOLD = 2**20


def _check(wq: torch.Tensor, uk: torch.Tensor, v: torch.Tensor) -> None:
    for name, t, dims in (("wq", wq, 3), ("uk", uk, 3), ("v", v, 1)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a tensor, got {type(t).__name__}")
        if t.dim() != dims:
            raise ValueError(f"{name} must have {dims} dims, got shape {tuple(t.shape)}")
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {t.dtype}")
    if uk.shape[0] != wq.shape[0]:
        raise ValueError(f"wq {tuple(wq.shape)} and uk {tuple(uk.shape)} must have the same "
                         f"batch size")
    if not wq.shape[-1] == uk.shape[-1] == v.shape[0]:
        raise ValueError(f"wq (B, Lq, d), uk (B, Lk, d) and v (d,) must share d, got wq "
                         f"{tuple(wq.shape)}, uk {tuple(uk.shape)}, v {tuple(v.shape)}")
    if not wq.dtype == uk.dtype == v.dtype:
        raise TypeError(f"wq, uk and v must share one dtype, got {wq.dtype}, {uk.dtype}, "
                        f"{v.dtype}")


def additive_scores_broadcast(wq: torch.Tensor, uk: torch.Tensor,
                              v: torch.Tensor) -> torch.Tensor:
    """Textbook additive scores ``tanh(wq[:, :, None] + uk[:, None]) @ v``.

    Args:
        wq: ``(B, Lq, d)``; uk: ``(B, Lk, d)``; v: ``(d,)``.

    Returns:
        ``(B, Lq, Lk)`` scores in the input dtype. Memory ``O(B Lq Lk d)``.
    """
    _check(wq, uk, v)
    acc = compute_dtype(wq.dtype)
    hidden = torch.tanh(wq.to(acc)[:, :, None, :] + uk.to(acc)[:, None, :, :])  # (B, Lq, Lk, d)
    return (hidden @ v.to(acc)).to(wq.dtype)


def _blocks(batch: int, q_len: int, row_cost: int,
            chunk_elements: int) -> Iterator[tuple[slice, slice]]:
    """(batch slice, query slice) pairs covering ``(B, Lq)`` with at most
    ``chunk_elements`` activations each (at least one row, whatever its cost)."""
    rows = max(1, chunk_elements // row_cost)
    q_block = min(q_len, rows)
    b_block = max(1, rows // q_len) if rows >= q_len else 1
    for b0 in range(0, batch, b_block):
        for i0 in range(0, q_len, q_block):
            yield slice(b0, b0 + b_block), slice(i0, i0 + q_block)


class _ChunkedAdditiveScores(torch.autograd.Function):
    """``scores = tanh(wq[:, :, None] + uk[:, None]) @ v`` block by block; backward
    recomputes each block's ``tanh`` instead of saving it."""

    @staticmethod
    def forward(ctx, wq, uk, v, chunk_elements):
        acc = compute_dtype(wq.dtype)
        batch, q_len, dim = wq.shape
        k_len = uk.shape[1]
        uk_acc, v_acc = uk.to(acc), v.to(acc)
        scores = torch.empty((batch, q_len, k_len), dtype=acc, device=wq.device)
        for bs, qs in _blocks(batch, q_len, k_len * dim, chunk_elements):
            # One (b, c, Lk, d) buffer per block: the add allocates it, tanh_ reuses it.
            hidden = (wq[bs, qs].to(acc).unsqueeze(2) + uk_acc[bs].unsqueeze(1)).tanh_()
            scores[bs, qs] = hidden @ v_acc  # (b, c, Lk)
        ctx.save_for_backward(wq, uk, v)
        ctx.chunk_elements = chunk_elements
        return scores.to(wq.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_scores):
        wq, uk, v = ctx.saved_tensors
        need_wq, need_uk, need_v = ctx.needs_input_grad[:3]
        acc = compute_dtype(wq.dtype)
        batch, q_len, dim = wq.shape
        k_len = uk.shape[1]
        grad = grad_scores.to(acc)
        uk_acc, v_acc = uk.to(acc), v.to(acc)
        grad_wq = torch.zeros(wq.shape, dtype=acc, device=wq.device) if need_wq else None
        grad_uk = torch.zeros(uk.shape, dtype=acc, device=uk.device) if need_uk else None
        grad_v = torch.zeros(v.shape, dtype=acc, device=v.device) if need_v else None
        for bs, qs in _blocks(batch, q_len, k_len * dim, ctx.chunk_elements):
            hidden = (wq[bs, qs].to(acc).unsqueeze(2) + uk_acc[bs].unsqueeze(1)).tanh_()
            g = grad[bs, qs]  # (b, c, Lk)
            if need_v:
                # d scores / d v = tanh(.): a (1, b*c*Lk) @ (b*c*Lk, d) product.
                grad_v += (g.reshape(1, -1) @ hidden.reshape(-1, dim)).squeeze(0)
            if need_wq or need_uk:
                # d scores / d pre-activation = g * v * (1 - tanh^2), built in place in
                # the block buffer so backward also holds a single block at a time.
                pre = hidden.mul_(hidden).neg_().add_(1).mul_(g.unsqueeze(-1)).mul_(v_acc)
                if need_wq:
                    grad_wq[bs, qs] = pre.sum(2)
                if need_uk:
                    grad_uk[bs] += pre.sum(1)
        return (None if grad_wq is None else grad_wq.to(wq.dtype),
                None if grad_uk is None else grad_uk.to(uk.dtype),
                None if grad_v is None else grad_v.to(v.dtype),
                None)


def additive_scores_chunked(wq: torch.Tensor, uk: torch.Tensor, v: torch.Tensor, *,
                            chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> torch.Tensor:
    """Additive scores computed in blocks of at most ``chunk_elements`` activations.

    Same result as :func:`additive_scores_broadcast` (up to summation order), with
    extra memory ``O(chunk_elements + B Lk d)`` in forward and backward.

    Args:
        wq: ``(B, Lq, d)``; uk: ``(B, Lk, d)``; v: ``(d,)``.
        chunk_elements: activations per block (``b * c * Lk * d``); a block holds at
            least one query row, so a single row larger than this is still one block.

    Returns:
        ``(B, Lq, Lk)`` scores in the input dtype.
    """
    _check(wq, uk, v)
    check_int(chunk_elements, "chunk_elements", minimum=1)
    return _ChunkedAdditiveScores.apply(wq, uk, v, chunk_elements)


def additive_scores(wq: torch.Tensor, uk: torch.Tensor, v: torch.Tensor, *,
                    chunk_threshold: int | None = DEFAULT_CHUNK_THRESHOLD,
                    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> torch.Tensor:
    """Additive scores ``v^T tanh(wq_i + uk_j)``, chunked when the problem is large.

    Args:
        wq: ``(B, Lq, d)``; uk: ``(B, Lk, d)``; v: ``(d,)``.
        chunk_threshold: use the chunked kernel when ``B * Lq * Lk * d`` exceeds this;
            ``0`` always chunks, ``None`` never does.
        chunk_elements: block size of the chunked kernel, see
            :func:`additive_scores_chunked`.

    Returns:
        ``(B, Lq, Lk)`` scores in the input dtype.
    """
    if chunk_threshold is not None and (isinstance(chunk_threshold, bool)
                                        or not isinstance(chunk_threshold, int)
                                        or chunk_threshold < 0):
        raise ValueError(f"chunk_threshold must be a non-negative int or None, got "
                         f"{chunk_threshold!r}")
    _check(wq, uk, v)
    activations = wq.shape[0] * wq.shape[1] * uk.shape[1] * wq.shape[2]
    if chunk_threshold is not None and activations > chunk_threshold:
        return additive_scores_chunked(wq, uk, v, chunk_elements=chunk_elements)
    return additive_scores_broadcast(wq, uk, v)
