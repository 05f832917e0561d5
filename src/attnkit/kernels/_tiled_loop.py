"""The tiled kernel's per-tile loop: one Python iteration per ``(block_q, block_k)`` tile.

FlashAttention (Dao et al. 2022, arXiv:2205.14135) with the loop order of
FlashAttention-2 (Dao 2023, arXiv:2307.08691). This is the general path of
:mod:`attnkit.kernels.tiled`: it calls a Python ``score`` callable on every tile and
differentiates it with autograd, including gradients to tensors the callable captures
(a learned relative-position table, say). Calls whose mask and score modifier need no
per-tile Python run in batches of tiles instead (:mod:`attnkit.kernels._tiled_batch`).
"""

from __future__ import annotations

import torch

from attnkit.kernels.precision import compute_dtype
from attnkit.kernels.spec import EMPTY, FULL, PARTIAL

__all__ = ["loop_forward", "loop_backward"]


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


def _scores(q_blk, k_blk, fns, q0, k0, heads, scale):
    """Score-modded logits of one tile: ``(B, Hkv, G*r, c)``, and the same memory
    viewed per query head as ``(B, Hq, r, c)``."""
    s = _logits(q_blk, k_blk, scale)  # (B, Hkv, G*r, c)
    per_head = s.view(s.shape[0], heads, -1, s.shape[-1])  # (B, Hq, r, c)
    if fns.score is not None:
        per_head = fns.score(per_head, q0, k0).contiguous()
        s = per_head.view(s.shape)
    return s, per_head


def loop_forward(q, k, v, fns, scale, block_q, block_k):
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


def loop_backward(q, k, v, out, lse, grad_out, fns, scale, block_q, block_k,
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
