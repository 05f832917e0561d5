"""The forward kernel: one program per block of query rows streams the key/value blocks
through an online softmax (FlashAttention-2, Dao 2023, arXiv:2307.08691)."""

from __future__ import annotations

from attnkit.kernels.triton.jit import jit, key_range, operand, tile_scores, tl

__all__ = ["fwd_kernel"]


@jit
def fwd_step(acc, l_i, m_i, q, q_doc, offs_m, start_n, offs_d, offs_dv, k_base, v_base,
              kv_doc_base, stride_kn, stride_kd, stride_vn, stride_vd,
              kv_len, kv_end, head_dim, v_dim, scale, slope,
              causal_offset, win_size, win_offset, alibi_q_offset, softcap,
              MASKED: tl.constexpr, HAS_CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr,
              WINDOW_CAUSAL: tl.constexpr, HAS_DOC: tl.constexpr, HAS_ALIBI: tl.constexpr,
              ALIBI_SYMMETRIC: tl.constexpr, HAS_SOFTCAP: tl.constexpr, BLOCK_N: tl.constexpr,
              DTYPE: tl.constexpr, OP_DTYPE: tl.constexpr, PRECISION: tl.constexpr):
    """One key tile of the online softmax: returns the updated ``acc, l, m``."""
    offs_n = start_n + tl.arange(0, BLOCK_N)
    in_keys = offs_n < kv_len
    kT = tl.load(k_base + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kd,
                 mask=in_keys[None, :] & (offs_d[:, None] < head_dim), other=0.0)  # (D, N)
    v = tl.load(v_base + offs_n[:, None] * stride_vn + offs_dv[None, :] * stride_vd,
                mask=in_keys[:, None] & (offs_dv[None, :] < v_dim), other=0.0)  # (N, Dv)
    kv_doc = offs_n
    if HAS_DOC:
        kv_doc = tl.load(kv_doc_base + offs_n, mask=in_keys, other=0)
    s, _ = tile_scores(q, kT.to(OP_DTYPE), offs_m, offs_n, kv_end, q_doc, kv_doc, scale, slope,
                   causal_offset, win_size, win_offset, alibi_q_offset, softcap,
                   MASKED, HAS_CAUSAL, HAS_WINDOW, WINDOW_CAUSAL, HAS_DOC, HAS_ALIBI,
                   ALIBI_SYMMETRIC, HAS_SOFTCAP, PRECISION)
    m_new = tl.maximum(m_i, tl.max(s, 1))
    # A row with nothing allowed so far keeps m = -inf; subtracting 0 instead makes
    # exp() see -inf - 0 (weight 0), never -inf - (-inf).
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
    alpha = tl.exp(m_i - m_safe)
    p = tl.exp(s - m_safe[:, None])
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = tl.dot(operand(p, DTYPE, OP_DTYPE), v.to(OP_DTYPE), acc * alpha[:, None],
                 input_precision=PRECISION)
    return acc, l_i, m_new


@jit
def fwd_kernel(Q, K, V, O, LSE, ROW_MAX, ROW_INV_SUM, SLOPES, KV_LENGTHS, Q_DOC, KV_DOC,
                stride_qb, stride_qh, stride_qm, stride_qd,
                stride_kb, stride_kh, stride_kn, stride_kd,
                stride_vb, stride_vh, stride_vn, stride_vd,
                stride_ob, stride_oh, stride_om, stride_od,
                num_q_heads, group, q_len, kv_len, head_dim, v_dim,
                scale, causal_offset, win_size, win_offset, alibi_q_offset, softcap,
                HAS_CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr,
                WINDOW_CAUSAL: tl.constexpr, HAS_KV_LENGTHS: tl.constexpr,
                HAS_DOC: tl.constexpr, HAS_ALIBI: tl.constexpr,
                ALIBI_SYMMETRIC: tl.constexpr, HAS_SOFTCAP: tl.constexpr,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                BLOCK_DV: tl.constexpr, DTYPE: tl.constexpr, OP_DTYPE: tl.constexpr,
                PRECISION: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)  # b * Hq + h
    b = pid_bh // num_q_heads
    h = pid_bh % num_q_heads
    h_kv = h // group
    b64 = b.to(tl.int64)

    m0 = pid_m * BLOCK_M
    offs_m = m0 + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    in_rows = offs_m < q_len

    q = tl.load(Q + b64 * stride_qb + h.to(tl.int64) * stride_qh
                + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qd,
                mask=in_rows[:, None] & (offs_d[None, :] < head_dim), other=0.0)  # (M, D)
    q = q.to(OP_DTYPE)
    k_base = K + b64 * stride_kb + h_kv.to(tl.int64) * stride_kh
    v_base = V + b64 * stride_vb + h_kv.to(tl.int64) * stride_vh

    kv_end = kv_len
    if HAS_KV_LENGTHS:
        kv_end = tl.minimum(tl.load(KV_LENGTHS + b), kv_len)
    q_doc = offs_m
    if HAS_DOC:
        q_doc = tl.load(Q_DOC + b64 * q_len + offs_m, mask=in_rows, other=0)
    kv_doc_base = KV_DOC + b64 * kv_len
    slope = 0.0
    if HAS_ALIBI:
        slope = tl.load(SLOPES + h)

    m_last = tl.minimum(m0 + BLOCK_M, q_len) - 1
    start, full_start, full_end, end = key_range(
        m0, m_last, kv_end, causal_offset, win_size, win_offset,
        HAS_CAUSAL, HAS_WINDOW, WINDOW_CAUSAL, BLOCK_N)

    m_i = tl.full((BLOCK_M,), float("-inf"), dtype=tl.float32)
    l_i = tl.full((BLOCK_M,), 0.0, dtype=tl.float32)
    acc = tl.full((BLOCK_M, BLOCK_DV), 0.0, dtype=tl.float32)
    for start_n in range(start, full_start, BLOCK_N):  # edge tiles
        acc, l_i, m_i = fwd_step(
            acc, l_i, m_i, q, q_doc, offs_m, start_n, offs_d, offs_dv, k_base, v_base,
            kv_doc_base, stride_kn, stride_kd, stride_vn, stride_vd, kv_len, kv_end,
            head_dim, v_dim, scale, slope, causal_offset, win_size, win_offset,
            alibi_q_offset, softcap, True, HAS_CAUSAL, HAS_WINDOW, WINDOW_CAUSAL, HAS_DOC,
            HAS_ALIBI, ALIBI_SYMMETRIC, HAS_SOFTCAP, BLOCK_N, DTYPE, OP_DTYPE, PRECISION)
    for start_n in range(full_start, full_end, BLOCK_N):  # interior tiles
        acc, l_i, m_i = fwd_step(
            acc, l_i, m_i, q, q_doc, offs_m, start_n, offs_d, offs_dv, k_base, v_base,
            kv_doc_base, stride_kn, stride_kd, stride_vn, stride_vd, kv_len, kv_end,
            head_dim, v_dim, scale, slope, causal_offset, win_size, win_offset,
            alibi_q_offset, softcap, False, HAS_CAUSAL, HAS_WINDOW, WINDOW_CAUSAL, HAS_DOC,
            HAS_ALIBI, ALIBI_SYMMETRIC, HAS_SOFTCAP, BLOCK_N, DTYPE, OP_DTYPE, PRECISION)
    for start_n in range(full_end, end, BLOCK_N):  # edge tiles
        acc, l_i, m_i = fwd_step(
            acc, l_i, m_i, q, q_doc, offs_m, start_n, offs_d, offs_dv, k_base, v_base,
            kv_doc_base, stride_kn, stride_kd, stride_vn, stride_vd, kv_len, kv_end,
            head_dim, v_dim, scale, slope, causal_offset, win_size, win_offset,
            alibi_q_offset, softcap, True, HAS_CAUSAL, HAS_WINDOW, WINDOW_CAUSAL, HAS_DOC,
            HAS_ALIBI, ALIBI_SYMMETRIC, HAS_SOFTCAP, BLOCK_N, DTYPE, OP_DTYPE, PRECISION)

    empty = l_i == 0.0  # nothing allowed: zero output, lse = -inf
    l_safe = tl.where(empty, 1.0, l_i)
    out = acc / l_safe[:, None]
    lse = tl.where(empty, float("-inf"), m_i + tl.log(l_safe))
    row = pid_bh.to(tl.int64) * q_len + offs_m
    tl.store(LSE + row, lse, mask=in_rows)
    # For the backward: P = exp(s - max) / sum, as the reference rounds it. With
    # exp(s - lse) the float32 rounding of lse (half an ulp of |lse|) would enter
    # every weight. Empty rows get max = +inf and 1/sum = 0, so P = 0.
    tl.store(ROW_MAX + row, tl.where(empty, float("inf"), m_i), mask=in_rows)
    tl.store(ROW_INV_SUM + row, tl.where(empty, 0.0, 1.0 / l_safe), mask=in_rows)
    tl.store(O + b64 * stride_ob + h.to(tl.int64) * stride_oh
             + offs_m[:, None] * stride_om + offs_dv[None, :] * stride_od,
             operand(out, DTYPE, OP_DTYPE).to(DTYPE),
             mask=in_rows[:, None] & (offs_dv[None, :] < v_dim))
