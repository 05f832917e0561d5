"""The backward kernels: ``delta = rowsum(dO * O)``, then dK/dV (one program per key
block, walking the query blocks that see it) and dQ (one program per query block)."""

from __future__ import annotations

from attnkit.kernels.triton.jit import jit, key_range, operand, query_range, tile_scores, tl

__all__ = ["bwd_delta_kernel", "bwd_kv_kernel", "bwd_q_kernel"]


@jit
def bwd_delta_kernel(O, DO, DELTA,
                      stride_ob, stride_oh, stride_om, stride_od,
                      stride_dob, stride_doh, stride_dom, stride_dod,
                      num_q_heads, q_len, v_dim,
                      BLOCK_M: tl.constexpr, BLOCK_DV: tl.constexpr, ACC_DTYPE: tl.constexpr):
    """``delta = rowsum(dO * O)``, (B * Hq, Lq) float32: the softmax backward's row term
    ``sum_j P_ij dP_ij``. Float32 inputs accumulate in float64: rows that attend to few
    keys subtract delta from dP almost exactly, so its rounding shows in dS."""
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)  # b * Hq + h
    b = (pid_bh // num_q_heads).to(tl.int64)
    h = (pid_bh % num_q_heads).to(tl.int64)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_dv = tl.arange(0, BLOCK_DV)
    keep = (offs_m[:, None] < q_len) & (offs_dv[None, :] < v_dim)
    o = tl.load(O + b * stride_ob + h * stride_oh + offs_m[:, None] * stride_om
                + offs_dv[None, :] * stride_od, mask=keep, other=0.0)  # (M, Dv)
    do = tl.load(DO + b * stride_dob + h * stride_doh + offs_m[:, None] * stride_dom
                 + offs_dv[None, :] * stride_dod, mask=keep, other=0.0)  # (M, Dv)
    delta = tl.sum(o.to(ACC_DTYPE) * do.to(ACC_DTYPE), 1)
    tl.store(DELTA + pid_bh.to(tl.int64) * q_len + offs_m, delta.to(tl.float32),
             mask=offs_m < q_len)


@jit
def bwd_kv_step(dk, dv, k, v, kv_doc, offs_n, start_m, offs_d, offs_dv, q_base, do_base,
                 max_base, inv_sum_base, delta_base, q_doc_base, stride_qm, stride_qd, stride_dom,
                 stride_dod, q_len, kv_end, head_dim, v_dim, scale, slope,
                 causal_offset, win_size, win_offset, alibi_q_offset, softcap,
                 MASKED: tl.constexpr, HAS_CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr,
                 WINDOW_CAUSAL: tl.constexpr, HAS_DOC: tl.constexpr, HAS_ALIBI: tl.constexpr,
                 ALIBI_SYMMETRIC: tl.constexpr, HAS_SOFTCAP: tl.constexpr,
                 BLOCK_M: tl.constexpr, DTYPE: tl.constexpr, OP_DTYPE: tl.constexpr,
                 PRECISION: tl.constexpr):
    """One query tile's contribution to the dK, dV of a key block."""
    offs_m = start_m + tl.arange(0, BLOCK_M)
    in_rows = offs_m < q_len
    q = tl.load(q_base + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qd,
                mask=in_rows[:, None] & (offs_d[None, :] < head_dim), other=0.0)  # (M, D)
    do = tl.load(do_base + offs_m[:, None] * stride_dom + offs_dv[None, :] * stride_dod,
                 mask=in_rows[:, None] & (offs_dv[None, :] < v_dim), other=0.0)  # (M, Dv)
    q = q.to(OP_DTYPE)
    do = do.to(OP_DTYPE)
    # max = +inf gives P = 0 on padding rows (and the forward stored it on empty rows).
    row_max = tl.load(max_base + offs_m, mask=in_rows, other=float("inf"))
    inv_sum = tl.load(inv_sum_base + offs_m, mask=in_rows, other=0.0)
    delta = tl.load(delta_base + offs_m, mask=in_rows, other=0.0)
    q_doc = offs_m
    if HAS_DOC:
        q_doc = tl.load(q_doc_base + offs_m, mask=in_rows, other=0)
    s, t = tile_scores(q, tl.trans(k), offs_m, offs_n, kv_end, q_doc, kv_doc, scale, slope,
                   causal_offset, win_size, win_offset, alibi_q_offset, softcap,
                   MASKED, HAS_CAUSAL, HAS_WINDOW, WINDOW_CAUSAL, HAS_DOC, HAS_ALIBI,
                   ALIBI_SYMMETRIC, HAS_SOFTCAP, PRECISION)
    p = tl.exp(s - row_max[:, None]) * inv_sum[:, None]  # (M, N)
    dv = tl.dot(tl.trans(operand(p, DTYPE, OP_DTYPE)), do, dv, input_precision=PRECISION)
    dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)  # (M, N)
    ds = p * (dp - delta[:, None])
    if HAS_SOFTCAP:
        ds = ds * (1.0 - t * t)  # d(cap * tanh(x / cap))/dx
    dk = tl.dot(tl.trans(operand(ds, DTYPE, OP_DTYPE)), q, dk, input_precision=PRECISION)
    return dk, dv


@jit
def bwd_kv_kernel(Q, K, V, DO, ROW_MAX, ROW_INV_SUM, DELTA, DK, DV, SLOPES, KV_LENGTHS,
                   Q_DOC, KV_DOC,
                   stride_qb, stride_qh, stride_qm, stride_qd,
                   stride_kb, stride_kh, stride_kn, stride_kd,
                   stride_vb, stride_vh, stride_vn, stride_vd,
                   stride_dob, stride_doh, stride_dom, stride_dod,
                   stride_dkb, stride_dkh, stride_dkn, stride_dkd,
                   stride_dvb, stride_dvh, stride_dvn, stride_dvd,
                   num_q_heads, group, q_len, kv_len, head_dim, v_dim,
                   scale, causal_offset, win_size, win_offset, alibi_q_offset, softcap,
                   HAS_CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr,
                   WINDOW_CAUSAL: tl.constexpr, HAS_KV_LENGTHS: tl.constexpr,
                   HAS_DOC: tl.constexpr, HAS_ALIBI: tl.constexpr,
                   ALIBI_SYMMETRIC: tl.constexpr, HAS_SOFTCAP: tl.constexpr,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                   BLOCK_DV: tl.constexpr, DTYPE: tl.constexpr, OP_DTYPE: tl.constexpr,
                   PRECISION: tl.constexpr):
    pid_n = tl.program_id(0)
    pid_bh = tl.program_id(1)  # b * Hkv + h_kv
    num_kv_heads = num_q_heads // group
    b = pid_bh // num_kv_heads
    h_kv = pid_bh % num_kv_heads
    b64 = b.to(tl.int64)

    n0 = pid_n * BLOCK_N
    offs_n = n0 + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    in_keys = offs_n < kv_len

    k = tl.load(K + b64 * stride_kb + h_kv.to(tl.int64) * stride_kh
                + offs_n[:, None] * stride_kn + offs_d[None, :] * stride_kd,
                mask=in_keys[:, None] & (offs_d[None, :] < head_dim), other=0.0)  # (N, D)
    v = tl.load(V + b64 * stride_vb + h_kv.to(tl.int64) * stride_vh
                + offs_n[:, None] * stride_vn + offs_dv[None, :] * stride_vd,
                mask=in_keys[:, None] & (offs_dv[None, :] < v_dim), other=0.0)  # (N, Dv)
    k = k.to(OP_DTYPE)
    v = v.to(OP_DTYPE)
    kv_end = kv_len
    if HAS_KV_LENGTHS:
        kv_end = tl.minimum(tl.load(KV_LENGTHS + b), kv_len)
    kv_doc = offs_n
    if HAS_DOC:
        kv_doc = tl.load(KV_DOC + b64 * kv_len + offs_n, mask=in_keys, other=0)
    q_doc_base = Q_DOC + b64 * q_len

    n_last = tl.minimum(n0 + BLOCK_N, kv_end) - 1
    start, full_start, full_end, end = query_range(
        n0, n_last, q_len, causal_offset, win_size, win_offset,
        HAS_CAUSAL, HAS_WINDOW, WINDOW_CAUSAL, BLOCK_M, BLOCK_N)

    dk = tl.full((BLOCK_N, BLOCK_D), 0.0, dtype=tl.float32)
    dv = tl.full((BLOCK_N, BLOCK_DV), 0.0, dtype=tl.float32)
    for g in range(0, group):  # the query heads that share this key/value head
        h = h_kv * group + g
        bh = b64 * num_q_heads + h
        q_base = Q + b64 * stride_qb + h.to(tl.int64) * stride_qh
        do_base = DO + b64 * stride_dob + h.to(tl.int64) * stride_doh
        slope = 0.0
        if HAS_ALIBI:
            slope = tl.load(SLOPES + h)
        for start_m in range(start, full_start, BLOCK_M):  # edge tiles
            dk, dv = bwd_kv_step(
                dk, dv, k, v, kv_doc, offs_n, start_m, offs_d, offs_dv, q_base, do_base,
                ROW_MAX + bh * q_len, ROW_INV_SUM + bh * q_len, DELTA + bh * q_len,
                q_doc_base, stride_qm, stride_qd,
                stride_dom, stride_dod, q_len, kv_end, head_dim, v_dim, scale, slope,
                causal_offset, win_size, win_offset, alibi_q_offset, softcap,
                True, HAS_CAUSAL, HAS_WINDOW, WINDOW_CAUSAL, HAS_DOC, HAS_ALIBI,
                ALIBI_SYMMETRIC, HAS_SOFTCAP, BLOCK_M, DTYPE, OP_DTYPE, PRECISION)
        for start_m in range(full_start, full_end, BLOCK_M):  # interior tiles
            dk, dv = bwd_kv_step(
                dk, dv, k, v, kv_doc, offs_n, start_m, offs_d, offs_dv, q_base, do_base,
                ROW_MAX + bh * q_len, ROW_INV_SUM + bh * q_len, DELTA + bh * q_len,
                q_doc_base, stride_qm, stride_qd,
                stride_dom, stride_dod, q_len, kv_end, head_dim, v_dim, scale, slope,
                causal_offset, win_size, win_offset, alibi_q_offset, softcap,
                False, HAS_CAUSAL, HAS_WINDOW, WINDOW_CAUSAL, HAS_DOC, HAS_ALIBI,
                ALIBI_SYMMETRIC, HAS_SOFTCAP, BLOCK_M, DTYPE, OP_DTYPE, PRECISION)
        for start_m in range(full_end, end, BLOCK_M):  # edge tiles
            dk, dv = bwd_kv_step(
                dk, dv, k, v, kv_doc, offs_n, start_m, offs_d, offs_dv, q_base, do_base,
                ROW_MAX + bh * q_len, ROW_INV_SUM + bh * q_len, DELTA + bh * q_len,
                q_doc_base, stride_qm, stride_qd,
                stride_dom, stride_dod, q_len, kv_end, head_dim, v_dim, scale, slope,
                causal_offset, win_size, win_offset, alibi_q_offset, softcap,
                True, HAS_CAUSAL, HAS_WINDOW, WINDOW_CAUSAL, HAS_DOC, HAS_ALIBI,
                ALIBI_SYMMETRIC, HAS_SOFTCAP, BLOCK_M, DTYPE, OP_DTYPE, PRECISION)

    dk = dk * scale  # d(q . k * scale)/dk
    tl.store(DK + b64 * stride_dkb + h_kv.to(tl.int64) * stride_dkh
             + offs_n[:, None] * stride_dkn + offs_d[None, :] * stride_dkd,
             operand(dk, DTYPE, OP_DTYPE).to(DTYPE),
             mask=in_keys[:, None] & (offs_d[None, :] < head_dim))
    tl.store(DV + b64 * stride_dvb + h_kv.to(tl.int64) * stride_dvh
             + offs_n[:, None] * stride_dvn + offs_dv[None, :] * stride_dvd,
             operand(dv, DTYPE, OP_DTYPE).to(DTYPE),
             mask=in_keys[:, None] & (offs_dv[None, :] < v_dim))


@jit
def bwd_q_step(dq, q, do, row_max, inv_sum, delta, q_doc, offs_m, start_n, offs_d, offs_dv, k_base,
                v_base, kv_doc_base, stride_kn, stride_kd, stride_vn, stride_vd,
                kv_len, kv_end, head_dim, v_dim, scale, slope,
                causal_offset, win_size, win_offset, alibi_q_offset, softcap,
                MASKED: tl.constexpr, HAS_CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr,
                WINDOW_CAUSAL: tl.constexpr, HAS_DOC: tl.constexpr, HAS_ALIBI: tl.constexpr,
                ALIBI_SYMMETRIC: tl.constexpr, HAS_SOFTCAP: tl.constexpr,
                BLOCK_N: tl.constexpr, DTYPE: tl.constexpr, OP_DTYPE: tl.constexpr,
                PRECISION: tl.constexpr):
    """One key tile's contribution to the dQ of a query block."""
    offs_n = start_n + tl.arange(0, BLOCK_N)
    in_keys = offs_n < kv_len
    k = tl.load(k_base + offs_n[:, None] * stride_kn + offs_d[None, :] * stride_kd,
                mask=in_keys[:, None] & (offs_d[None, :] < head_dim), other=0.0)  # (N, D)
    v = tl.load(v_base + offs_n[:, None] * stride_vn + offs_dv[None, :] * stride_vd,
                mask=in_keys[:, None] & (offs_dv[None, :] < v_dim), other=0.0)  # (N, Dv)
    k = k.to(OP_DTYPE)
    kv_doc = offs_n
    if HAS_DOC:
        kv_doc = tl.load(kv_doc_base + offs_n, mask=in_keys, other=0)
    s, t = tile_scores(q, tl.trans(k), offs_m, offs_n, kv_end, q_doc, kv_doc, scale, slope,
                   causal_offset, win_size, win_offset, alibi_q_offset, softcap,
                   MASKED, HAS_CAUSAL, HAS_WINDOW, WINDOW_CAUSAL, HAS_DOC, HAS_ALIBI,
                   ALIBI_SYMMETRIC, HAS_SOFTCAP, PRECISION)
    p = tl.exp(s - row_max[:, None]) * inv_sum[:, None]  # (M, N)
    dp = tl.dot(do, tl.trans(v.to(OP_DTYPE)), input_precision=PRECISION)  # (M, N)
    ds = p * (dp - delta[:, None])
    if HAS_SOFTCAP:
        ds = ds * (1.0 - t * t)
    return tl.dot(operand(ds, DTYPE, OP_DTYPE), k, dq, input_precision=PRECISION)


@jit
def bwd_q_kernel(Q, K, V, DO, ROW_MAX, ROW_INV_SUM, DELTA, DQ, SLOPES, KV_LENGTHS,
                  Q_DOC, KV_DOC,
                  stride_qb, stride_qh, stride_qm, stride_qd,
                  stride_kb, stride_kh, stride_kn, stride_kd,
                  stride_vb, stride_vh, stride_vn, stride_vd,
                  stride_dob, stride_doh, stride_dom, stride_dod,
                  stride_dqb, stride_dqh, stride_dqm, stride_dqd,
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
    bh = pid_bh.to(tl.int64)

    m0 = pid_m * BLOCK_M
    offs_m = m0 + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    in_rows = offs_m < q_len

    q = tl.load(Q + b64 * stride_qb + h.to(tl.int64) * stride_qh
                + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qd,
                mask=in_rows[:, None] & (offs_d[None, :] < head_dim), other=0.0)  # (M, D)
    do = tl.load(DO + b64 * stride_dob + h.to(tl.int64) * stride_doh
                 + offs_m[:, None] * stride_dom + offs_dv[None, :] * stride_dod,
                 mask=in_rows[:, None] & (offs_dv[None, :] < v_dim), other=0.0)  # (M, Dv)
    q = q.to(OP_DTYPE)
    do = do.to(OP_DTYPE)
    row_max = tl.load(ROW_MAX + bh * q_len + offs_m, mask=in_rows, other=float("inf"))
    inv_sum = tl.load(ROW_INV_SUM + bh * q_len + offs_m, mask=in_rows, other=0.0)
    delta = tl.load(DELTA + bh * q_len + offs_m, mask=in_rows, other=0.0)
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

    dq = tl.full((BLOCK_M, BLOCK_D), 0.0, dtype=tl.float32)
    for start_n in range(start, full_start, BLOCK_N):  # edge tiles
        dq = bwd_q_step(
            dq, q, do, row_max, inv_sum, delta, q_doc, offs_m, start_n, offs_d, offs_dv,
            k_base, v_base, kv_doc_base, stride_kn, stride_kd, stride_vn, stride_vd, kv_len, kv_end,
            head_dim, v_dim, scale, slope, causal_offset, win_size, win_offset,
            alibi_q_offset, softcap, True, HAS_CAUSAL, HAS_WINDOW, WINDOW_CAUSAL, HAS_DOC,
            HAS_ALIBI, ALIBI_SYMMETRIC, HAS_SOFTCAP, BLOCK_N, DTYPE, OP_DTYPE, PRECISION)
    for start_n in range(full_start, full_end, BLOCK_N):  # interior tiles
        dq = bwd_q_step(
            dq, q, do, row_max, inv_sum, delta, q_doc, offs_m, start_n, offs_d, offs_dv,
            k_base, v_base, kv_doc_base, stride_kn, stride_kd, stride_vn, stride_vd, kv_len, kv_end,
            head_dim, v_dim, scale, slope, causal_offset, win_size, win_offset,
            alibi_q_offset, softcap, False, HAS_CAUSAL, HAS_WINDOW, WINDOW_CAUSAL, HAS_DOC,
            HAS_ALIBI, ALIBI_SYMMETRIC, HAS_SOFTCAP, BLOCK_N, DTYPE, OP_DTYPE, PRECISION)
    for start_n in range(full_end, end, BLOCK_N):  # edge tiles
        dq = bwd_q_step(
            dq, q, do, row_max, inv_sum, delta, q_doc, offs_m, start_n, offs_d, offs_dv,
            k_base, v_base, kv_doc_base, stride_kn, stride_kd, stride_vn, stride_vd, kv_len, kv_end,
            head_dim, v_dim, scale, slope, causal_offset, win_size, win_offset,
            alibi_q_offset, softcap, True, HAS_CAUSAL, HAS_WINDOW, WINDOW_CAUSAL, HAS_DOC,
            HAS_ALIBI, ALIBI_SYMMETRIC, HAS_SOFTCAP, BLOCK_N, DTYPE, OP_DTYPE, PRECISION)

    dq = dq * scale  # d(q . k * scale)/dq
    tl.store(DQ + b64 * stride_dqb + h.to(tl.int64) * stride_dqh
             + offs_m[:, None] * stride_dqm + offs_d[None, :] * stride_dqd,
             operand(dq, DTYPE, OP_DTYPE).to(DTYPE),
             mask=in_rows[:, None] & (offs_d[None, :] < head_dim))
