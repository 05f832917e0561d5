"""FlashAttention-2 in Triton: fused forward and backward with structured masks and score mods.

The algorithm is FlashAttention-2, Tri Dao 2023, "FlashAttention-2: Faster
Attention with Better Parallelism and Work Partitioning" (arXiv:2307.08691):
each forward program owns a block of query rows and streams key/value blocks
through an online softmax (running max ``m``, running sum ``l``, unnormalized
float32 accumulator rescaled once at the end). The backward pass recomputes the
probabilities ``P`` tile by tile: a small kernel first computes
``delta = rowsum(dO * O)``, then a program that owns a key block accumulates dK
and dV while it walks the query blocks that can see it.

Semantics are those of :func:`attnkit.functional.reference.reference_attention`
with the mask and score_mod described by a :class:`~attnkit.kernels.spec.KernelSpec`:
``s = q . k * scale``, then ALiBi, then soft-capping, then the mask (``-inf``);
a query row with nothing to attend to gets a zero output, ``lse = -inf`` and zero
gradients.

Where this implementation deviates from the paper:

* dQ is computed by a third kernel that walks the key blocks of one query block
  (recomputing ``S`` and ``dP``), instead of the paper's atomic adds into a
  float32 dQ buffer. It costs two extra tile products per tile, but it is
  deterministic and needs no scratch buffer.
* The forward saves each row's max logit ``m`` and ``1 / l`` (beside the public
  ``lse``), and the backward forms ``P = exp(s - m) / l`` instead of
  ``exp(s - lse)``: the float32 rounding of ``lse = m + log l`` (half an ulp of
  ``|lse|``) would otherwise enter every weight, which shows in float32 gradients.
  It costs one more float32 per query row.
* ``delta`` accumulates in float64 for float32 inputs: a row that attends to a
  few keys makes ``dP - delta`` cancel almost exactly.
* Grouped-query attention: the dK/dV program of a key/value head loops over the
  query heads of its group and sums their contributions in registers; K and V are
  never repeated in memory.
* Block skipping: for every query block (or key block, in the dK/dV kernel) the
  range of tiles that the causal and sliding-window terms can touch is computed
  up front; the loop covers only that range and splits it into edge tiles (with
  element masks) and interior tiles (no mask arithmetic, unless document ids are
  present, which are always checked per element). Key padding shortens the range.
  Document ids do not skip tiles.
* Logits keep the reference's order of operations (``(q . k) * scale`` in float32,
  natural ``exp``) instead of folding ``scale * log2(e)`` into ``q``, so the kernel
  rounds like the oracle. Float32 inputs use full-precision products (no TF32).
* Under ``TRITON_INTERPRET=1`` (CPU testing) the tile products upcast their
  operands to float32 and the float32 -> bfloat16 casts round to nearest even by
  hand: the interpreter multiplies raw bfloat16 bit patterns and truncates on
  casts. Neither change is compiled into the GPU kernels.

Shape legend: ``B`` batch, ``Hq`` query heads, ``Hkv`` key/value heads
(``Hq % Hkv == 0``), ``Lq``/``Lk`` query/key lengths, ``D`` query/key head dim,
``Dv`` value head dim.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from attnkit.kernels.spec import KernelSpec

try:
    import triton
    import triton.language as tl
except ImportError:  # the kernels below are then never defined as Triton functions
    triton = None
    tl = None

__all__ = ["TileSizes", "default_tiles", "triton_attention", "triton_attention_forward",
           "triton_refusal"]

SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
MAX_HEAD_DIM = 256
_MAX_GRID_Y = 65535  # CUDA limit of the second grid axis, which carries B * H


def _jit(fn):
    return fn if triton is None else triton.jit(fn)


# ---------------------------------------------------------------------------
# device helpers


@_jit
def _tanh(x):
    # libdevice's tanh is unavailable in the interpreter. For |x| < 1/4 a Taylor
    # polynomial keeps full relative precision (the exp form cancels there).
    ax = tl.abs(x)
    e = tl.exp(-2.0 * ax)
    far = (1.0 - e) / (1.0 + e)
    x2 = x * x
    near = ax * (1.0 + x2 * (-0.3333333333333333 + x2 * (0.13333333333333333 + x2 * (
        -0.05396825396825397 + x2 * 0.021869488536155203))))
    t = tl.where(ax < 0.25, near, far)
    return tl.where(x < 0.0, -t, t)


@_jit
def _operand(x, DTYPE: tl.constexpr, OP_DTYPE: tl.constexpr):
    """float32 ``x`` rounded to nearest-even DTYPE, held as OP_DTYPE (a dot operand).

    On the GPU OP_DTYPE is DTYPE. The interpreter multiplies in float32
    (OP_DTYPE) and truncates on float32 -> bfloat16 casts, so bfloat16 rounding
    is done on the bits there.
    """
    if OP_DTYPE == DTYPE:
        y = x.to(DTYPE)
    elif DTYPE == tl.bfloat16:
        bits = x.to(tl.uint32, bitcast=True)
        bits = bits + 0x7FFF + ((bits >> 16) & 1)
        y = ((bits >> 16) << 16).to(tl.float32, bitcast=True)
    else:
        y = x.to(DTYPE).to(OP_DTYPE)
    return y


@_jit
def _scores(q, kT, offs_m, offs_n, kv_end, q_doc, kv_doc, scale, slope,
            causal_offset, win_size, win_offset, alibi_q_offset, softcap,
            MASKED: tl.constexpr, HAS_CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr,
            WINDOW_CAUSAL: tl.constexpr, HAS_DOC: tl.constexpr, HAS_ALIBI: tl.constexpr,
            ALIBI_SYMMETRIC: tl.constexpr, HAS_SOFTCAP: tl.constexpr, PRECISION: tl.constexpr):
    """Logits of one tile, (BLOCK_M, BLOCK_N) float32, masked entries ``-inf``.

    Also returns ``tanh(pre-cap score / cap)`` (the soft-cap derivative needs it),
    or the logits themselves when there is no soft-cap.
    """
    s = tl.dot(q, kT, input_precision=PRECISION) * scale
    if HAS_ALIBI:
        distance = (offs_n[None, :] - (offs_m[:, None] + alibi_q_offset)).to(tl.float32)
        if ALIBI_SYMMETRIC:
            distance = -tl.abs(distance)
        s = s + slope * distance
    t = s
    if HAS_SOFTCAP:
        t = _tanh(s / softcap)
        s = softcap * t
    if MASKED:
        keep = offs_n[None, :] < kv_end
        if HAS_CAUSAL:
            keep = keep & (offs_n[None, :] <= offs_m[:, None] + causal_offset)
        if HAS_WINDOW:
            distance_q = offs_m[:, None] + win_offset - offs_n[None, :]  # > 0: key in the past
            if WINDOW_CAUSAL:
                keep = keep & (distance_q >= 0) & (distance_q < win_size)
            else:
                keep = keep & (distance_q < win_size) & (distance_q > -win_size)
        if HAS_DOC:
            keep = keep & (q_doc[:, None] == kv_doc[None, :])
        s = tl.where(keep, s, float("-inf"))
    elif HAS_DOC:
        s = tl.where(q_doc[:, None] == kv_doc[None, :], s, float("-inf"))
    return s, t


@_jit
def _key_range(m0, m_last, kv_end, causal_offset, win_size, win_offset,
               HAS_CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr,
               WINDOW_CAUSAL: tl.constexpr, BLOCK_N: tl.constexpr):
    """Key tiles for query rows ``m0..m_last``: ``[start, full_start)`` and
    ``[full_end, end)`` need element masks, ``[full_start, full_end)`` is allowed for
    every row. Starts are multiples of BLOCK_N; nothing outside ``[start, end)``
    may be attended."""
    lo = m0 * 0  # first key some row may see
    hi = kv_end  # one past the last key some row may see
    full_lo = lo  # keys in [full_lo, full_hi) are seen by every row
    full_hi = kv_end
    if HAS_CAUSAL:  # kv <= q + c
        hi = tl.minimum(hi, m_last + causal_offset + 1)
        full_hi = tl.minimum(full_hi, m0 + causal_offset + 1)
    if HAS_WINDOW:  # q + o - size < kv, and kv <= q + o (causal) or kv < q + o + size
        lo = tl.maximum(lo, m0 + win_offset - win_size + 1)
        full_lo = tl.maximum(full_lo, m_last + win_offset - win_size + 1)
        if WINDOW_CAUSAL:
            reach = 1
        else:
            reach = win_size
        hi = tl.minimum(hi, m_last + win_offset + reach)
        full_hi = tl.minimum(full_hi, m0 + win_offset + reach)
    # Every value divided below is >= 0: integer division of negative numbers
    # rounds differently on the GPU and in the interpreter.
    start = (lo // BLOCK_N) * BLOCK_N
    full_start = ((full_lo + BLOCK_N - 1) // BLOCK_N) * BLOCK_N
    full_start = tl.minimum(tl.maximum(full_start, start), tl.maximum(hi, start))
    full_end = (tl.maximum(full_hi, 0) // BLOCK_N) * BLOCK_N
    full_end = tl.maximum(full_end, full_start)
    return start, full_start, full_end, hi


@_jit
def _query_range(n0, n_last, q_len, causal_offset, win_size, win_offset,
                 HAS_CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr,
                 WINDOW_CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """Query tiles for the valid keys ``n0..n_last`` of one key block (none when
    ``n_last < n0``), split like :func:`_key_range`. Interior tiles exist only
    when all BLOCK_N keys of the block are valid."""
    lo = n0 * 0
    hi = tl.where(n_last >= n0, q_len, 0)
    full_lo = lo
    full_hi = tl.where(n_last == n0 + BLOCK_N - 1, q_len, 0)
    if HAS_CAUSAL:  # q >= kv - c
        lo = tl.maximum(lo, n0 - causal_offset)
        full_lo = tl.maximum(full_lo, n_last - causal_offset)
    if HAS_WINDOW:
        if WINDOW_CAUSAL:  # kv - o <= q <= kv - o + size - 1
            lo = tl.maximum(lo, n0 - win_offset)
            full_lo = tl.maximum(full_lo, n_last - win_offset)
        else:  # kv - o - size < q < kv - o + size
            lo = tl.maximum(lo, n0 - win_offset - win_size + 1)
            full_lo = tl.maximum(full_lo, n_last - win_offset - win_size + 1)
        hi = tl.minimum(hi, n_last - win_offset + win_size)
        full_hi = tl.minimum(full_hi, n0 - win_offset + win_size)
    start = (lo // BLOCK_M) * BLOCK_M
    full_start = ((full_lo + BLOCK_M - 1) // BLOCK_M) * BLOCK_M
    full_start = tl.minimum(tl.maximum(full_start, start), tl.maximum(hi, start))
    full_end = (tl.maximum(full_hi, 0) // BLOCK_M) * BLOCK_M
    full_end = tl.maximum(full_end, full_start)
    return start, full_start, full_end, hi


# ---------------------------------------------------------------------------
# forward


@_jit
def _fwd_step(acc, l_i, m_i, q, q_doc, offs_m, start_n, offs_d, offs_dv, k_base, v_base,
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
    s, _ = _scores(q, kT.to(OP_DTYPE), offs_m, offs_n, kv_end, q_doc, kv_doc, scale, slope,
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
    acc = tl.dot(_operand(p, DTYPE, OP_DTYPE), v.to(OP_DTYPE), acc * alpha[:, None],
                 input_precision=PRECISION)
    return acc, l_i, m_new


@_jit
def _fwd_kernel(Q, K, V, O, LSE, ROW_MAX, ROW_INV_SUM, SLOPES, KV_LENGTHS, Q_DOC, KV_DOC,
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
    start, full_start, full_end, end = _key_range(
        m0, m_last, kv_end, causal_offset, win_size, win_offset,
        HAS_CAUSAL, HAS_WINDOW, WINDOW_CAUSAL, BLOCK_N)

    m_i = tl.full((BLOCK_M,), float("-inf"), dtype=tl.float32)
    l_i = tl.full((BLOCK_M,), 0.0, dtype=tl.float32)
    acc = tl.full((BLOCK_M, BLOCK_DV), 0.0, dtype=tl.float32)
    for start_n in range(start, full_start, BLOCK_N):  # edge tiles
        acc, l_i, m_i = _fwd_step(
            acc, l_i, m_i, q, q_doc, offs_m, start_n, offs_d, offs_dv, k_base, v_base,
            kv_doc_base, stride_kn, stride_kd, stride_vn, stride_vd, kv_len, kv_end,
            head_dim, v_dim, scale, slope, causal_offset, win_size, win_offset,
            alibi_q_offset, softcap, True, HAS_CAUSAL, HAS_WINDOW, WINDOW_CAUSAL, HAS_DOC,
            HAS_ALIBI, ALIBI_SYMMETRIC, HAS_SOFTCAP, BLOCK_N, DTYPE, OP_DTYPE, PRECISION)
    for start_n in range(full_start, full_end, BLOCK_N):  # interior tiles
        acc, l_i, m_i = _fwd_step(
            acc, l_i, m_i, q, q_doc, offs_m, start_n, offs_d, offs_dv, k_base, v_base,
            kv_doc_base, stride_kn, stride_kd, stride_vn, stride_vd, kv_len, kv_end,
            head_dim, v_dim, scale, slope, causal_offset, win_size, win_offset,
            alibi_q_offset, softcap, False, HAS_CAUSAL, HAS_WINDOW, WINDOW_CAUSAL, HAS_DOC,
            HAS_ALIBI, ALIBI_SYMMETRIC, HAS_SOFTCAP, BLOCK_N, DTYPE, OP_DTYPE, PRECISION)
    for start_n in range(full_end, end, BLOCK_N):  # edge tiles
        acc, l_i, m_i = _fwd_step(
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
             _operand(out, DTYPE, OP_DTYPE).to(DTYPE),
             mask=in_rows[:, None] & (offs_dv[None, :] < v_dim))


# ---------------------------------------------------------------------------
# backward


@_jit
def _bwd_delta_kernel(O, DO, DELTA,
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


@_jit
def _bwd_kv_step(dk, dv, k, v, kv_doc, offs_n, start_m, offs_d, offs_dv, q_base, do_base,
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
    s, t = _scores(q, tl.trans(k), offs_m, offs_n, kv_end, q_doc, kv_doc, scale, slope,
                   causal_offset, win_size, win_offset, alibi_q_offset, softcap,
                   MASKED, HAS_CAUSAL, HAS_WINDOW, WINDOW_CAUSAL, HAS_DOC, HAS_ALIBI,
                   ALIBI_SYMMETRIC, HAS_SOFTCAP, PRECISION)
    p = tl.exp(s - row_max[:, None]) * inv_sum[:, None]  # (M, N)
    dv = tl.dot(tl.trans(_operand(p, DTYPE, OP_DTYPE)), do, dv, input_precision=PRECISION)
    dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)  # (M, N)
    ds = p * (dp - delta[:, None])
    if HAS_SOFTCAP:
        ds = ds * (1.0 - t * t)  # d(cap * tanh(x / cap))/dx
    dk = tl.dot(tl.trans(_operand(ds, DTYPE, OP_DTYPE)), q, dk, input_precision=PRECISION)
    return dk, dv


@_jit
def _bwd_kv_kernel(Q, K, V, DO, ROW_MAX, ROW_INV_SUM, DELTA, DK, DV, SLOPES, KV_LENGTHS,
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
    start, full_start, full_end, end = _query_range(
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
            dk, dv = _bwd_kv_step(
                dk, dv, k, v, kv_doc, offs_n, start_m, offs_d, offs_dv, q_base, do_base,
                ROW_MAX + bh * q_len, ROW_INV_SUM + bh * q_len, DELTA + bh * q_len,
                q_doc_base, stride_qm, stride_qd,
                stride_dom, stride_dod, q_len, kv_end, head_dim, v_dim, scale, slope,
                causal_offset, win_size, win_offset, alibi_q_offset, softcap,
                True, HAS_CAUSAL, HAS_WINDOW, WINDOW_CAUSAL, HAS_DOC, HAS_ALIBI,
                ALIBI_SYMMETRIC, HAS_SOFTCAP, BLOCK_M, DTYPE, OP_DTYPE, PRECISION)
        for start_m in range(full_start, full_end, BLOCK_M):  # interior tiles
            dk, dv = _bwd_kv_step(
                dk, dv, k, v, kv_doc, offs_n, start_m, offs_d, offs_dv, q_base, do_base,
                ROW_MAX + bh * q_len, ROW_INV_SUM + bh * q_len, DELTA + bh * q_len,
                q_doc_base, stride_qm, stride_qd,
                stride_dom, stride_dod, q_len, kv_end, head_dim, v_dim, scale, slope,
                causal_offset, win_size, win_offset, alibi_q_offset, softcap,
                False, HAS_CAUSAL, HAS_WINDOW, WINDOW_CAUSAL, HAS_DOC, HAS_ALIBI,
                ALIBI_SYMMETRIC, HAS_SOFTCAP, BLOCK_M, DTYPE, OP_DTYPE, PRECISION)
        for start_m in range(full_end, end, BLOCK_M):  # edge tiles
            dk, dv = _bwd_kv_step(
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
             _operand(dk, DTYPE, OP_DTYPE).to(DTYPE),
             mask=in_keys[:, None] & (offs_d[None, :] < head_dim))
    tl.store(DV + b64 * stride_dvb + h_kv.to(tl.int64) * stride_dvh
             + offs_n[:, None] * stride_dvn + offs_dv[None, :] * stride_dvd,
             _operand(dv, DTYPE, OP_DTYPE).to(DTYPE),
             mask=in_keys[:, None] & (offs_dv[None, :] < v_dim))


@_jit
def _bwd_q_step(dq, q, do, row_max, inv_sum, delta, q_doc, offs_m, start_n, offs_d, offs_dv, k_base,
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
    s, t = _scores(q, tl.trans(k), offs_m, offs_n, kv_end, q_doc, kv_doc, scale, slope,
                   causal_offset, win_size, win_offset, alibi_q_offset, softcap,
                   MASKED, HAS_CAUSAL, HAS_WINDOW, WINDOW_CAUSAL, HAS_DOC, HAS_ALIBI,
                   ALIBI_SYMMETRIC, HAS_SOFTCAP, PRECISION)
    p = tl.exp(s - row_max[:, None]) * inv_sum[:, None]  # (M, N)
    dp = tl.dot(do, tl.trans(v.to(OP_DTYPE)), input_precision=PRECISION)  # (M, N)
    ds = p * (dp - delta[:, None])
    if HAS_SOFTCAP:
        ds = ds * (1.0 - t * t)
    return tl.dot(_operand(ds, DTYPE, OP_DTYPE), k, dq, input_precision=PRECISION)


@_jit
def _bwd_q_kernel(Q, K, V, DO, ROW_MAX, ROW_INV_SUM, DELTA, DQ, SLOPES, KV_LENGTHS,
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
    start, full_start, full_end, end = _key_range(
        m0, m_last, kv_end, causal_offset, win_size, win_offset,
        HAS_CAUSAL, HAS_WINDOW, WINDOW_CAUSAL, BLOCK_N)

    dq = tl.full((BLOCK_M, BLOCK_D), 0.0, dtype=tl.float32)
    for start_n in range(start, full_start, BLOCK_N):  # edge tiles
        dq = _bwd_q_step(
            dq, q, do, row_max, inv_sum, delta, q_doc, offs_m, start_n, offs_d, offs_dv,
            k_base, v_base, kv_doc_base, stride_kn, stride_kd, stride_vn, stride_vd, kv_len, kv_end,
            head_dim, v_dim, scale, slope, causal_offset, win_size, win_offset,
            alibi_q_offset, softcap, True, HAS_CAUSAL, HAS_WINDOW, WINDOW_CAUSAL, HAS_DOC,
            HAS_ALIBI, ALIBI_SYMMETRIC, HAS_SOFTCAP, BLOCK_N, DTYPE, OP_DTYPE, PRECISION)
    for start_n in range(full_start, full_end, BLOCK_N):  # interior tiles
        dq = _bwd_q_step(
            dq, q, do, row_max, inv_sum, delta, q_doc, offs_m, start_n, offs_d, offs_dv,
            k_base, v_base, kv_doc_base, stride_kn, stride_kd, stride_vn, stride_vd, kv_len, kv_end,
            head_dim, v_dim, scale, slope, causal_offset, win_size, win_offset,
            alibi_q_offset, softcap, False, HAS_CAUSAL, HAS_WINDOW, WINDOW_CAUSAL, HAS_DOC,
            HAS_ALIBI, ALIBI_SYMMETRIC, HAS_SOFTCAP, BLOCK_N, DTYPE, OP_DTYPE, PRECISION)
    for start_n in range(full_end, end, BLOCK_N):  # edge tiles
        dq = _bwd_q_step(
            dq, q, do, row_max, inv_sum, delta, q_doc, offs_m, start_n, offs_d, offs_dv,
            k_base, v_base, kv_doc_base, stride_kn, stride_kd, stride_vn, stride_vd, kv_len, kv_end,
            head_dim, v_dim, scale, slope, causal_offset, win_size, win_offset,
            alibi_q_offset, softcap, True, HAS_CAUSAL, HAS_WINDOW, WINDOW_CAUSAL, HAS_DOC,
            HAS_ALIBI, ALIBI_SYMMETRIC, HAS_SOFTCAP, BLOCK_N, DTYPE, OP_DTYPE, PRECISION)

    dq = dq * scale  # d(q . k * scale)/dq
    tl.store(DQ + b64 * stride_dqb + h.to(tl.int64) * stride_dqh
             + offs_m[:, None] * stride_dqm + offs_d[None, :] * stride_dqd,
             _operand(dq, DTYPE, OP_DTYPE).to(DTYPE),
             mask=in_rows[:, None] & (offs_d[None, :] < head_dim))


# ---------------------------------------------------------------------------
# host side


@dataclasses.dataclass(frozen=True)
class TileSizes:
    """Tile shape and launch options of one kernel launch.

    ``block_m`` is the number of query rows and ``block_n`` the number of keys in
    one tile (powers of two, at least 16). The forward and dQ kernels give each
    program ``block_m`` query rows; the dK/dV kernel gives each program
    ``block_n`` keys.
    """

    block_m: int
    block_n: int
    num_warps: int = 4  # ignored by the interpreter
    num_stages: int = 2  # software-pipelining depth of the tile loop (GPU only)

    def __post_init__(self):
        for name in ("block_m", "block_n"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 16 \
                    or value & (value - 1):
                raise ValueError(f"{name} must be a power of two >= 16, got {value!r}")


def _interpreted() -> bool:
    """Whether the kernels were defined under ``TRITON_INTERPRET=1`` (read at import)."""
    return type(_fwd_kernel).__name__ == "InterpretedFunction"


def default_tiles(dtype: torch.dtype, head_dim: int, backward: bool) -> TileSizes:
    """Tile sizes used when the caller passes none.

    Chosen to fit the registers and shared memory of an A100/H100 (not tuned on
    this machine); the interpreter gets 16 x 16 tiles so small test problems
    still cover several tiles.
    """
    if _interpreted():
        return TileSizes(16, 16)
    wide = head_dim > 64
    if dtype == torch.float32:
        return TileSizes(32, 32, num_warps=4, num_stages=2)
    if head_dim > 128:
        return TileSizes(32, 32, num_warps=8, num_stages=2)
    if backward:
        return TileSizes(32, 64, num_warps=8 if wide else 4, num_stages=2)
    return TileSizes(128, 64, num_warps=8 if wide else 4, num_stages=3 if not wide else 2)


def triton_refusal(q_dtype: torch.dtype, device_type: str, spec_or_reason: KernelSpec | str,
                   *, head_dim: int | None = None, v_dim: int | None = None) -> str | None:
    """Why :func:`triton_attention` cannot run a call, or None when it can.

    Args:
        q_dtype: dtype of ``q`` (and ``k``, ``v``).
        device_type: ``q.device.type``.
        spec_or_reason: the functional layer's description of the mask and
            score_mod (``CallPlan.kernel_spec()``): a
            :class:`~attnkit.kernels.spec.KernelSpec`, or the reason there is none.
        head_dim, v_dim: ``D`` and ``Dv`` when known (both at most 256).
    """
    if triton is None:
        return "triton is not installed: install attnkit[triton]"
    if device_type != "cuda" and not _interpreted():
        return (f"the Triton kernels need a CUDA device, got device type {device_type!r} "
                f"(CPU tensors run only when TRITON_INTERPRET=1 is set before "
                f"attnkit.kernels.triton_attention is first imported)")
    if q_dtype not in SUPPORTED_DTYPES:
        return f"dtype {q_dtype} is not supported (float16, bfloat16 or float32)"
    if (q_dtype == torch.bfloat16 and device_type == "cuda" and not _interpreted()
            and not torch.cuda.is_bf16_supported()):
        return "bfloat16 needs a GPU of compute capability 8.0 or newer"
    if isinstance(spec_or_reason, str):
        return spec_or_reason
    for name, dim in (("head_dim", head_dim), ("v_dim", v_dim)):
        if dim is not None and dim > MAX_HEAD_DIM:
            return f"{name} {dim} exceeds the kernel's maximum of {MAX_HEAD_DIM}"
    return None


def _require_triton() -> None:
    if triton is None:
        raise ImportError("the Triton attention kernel needs triton: install attnkit[triton]")


def _check_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spec: KernelSpec,
                  scale: float) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor) or t.dim() != 4:
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{name} must be a 4-D tensor (B, H, L, D), got {got}")
        if t.dtype not in SUPPORTED_DTYPES:
            raise TypeError(f"{name} must be float16, bfloat16 or float32, got {t.dtype}")
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"q, k, v must share one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError(f"q, k, v must be on one device, got {q.device}, {k.device}, {v.device}")
    B, Hq, Lq, D = q.shape
    if k.shape[0] != B or v.shape[0] != B:
        raise ValueError(f"batch sizes differ: q {B}, k {k.shape[0]}, v {v.shape[0]}")
    if k.shape[3] != D:
        raise ValueError(f"k head dim {k.shape[3]} != q head dim {D}")
    if v.shape[1] != k.shape[1] or v.shape[2] != k.shape[2]:
        raise ValueError(f"v (B, Hkv, Lk, Dv) = {tuple(v.shape)} does not match "
                         f"k {tuple(k.shape)} in heads and length")
    if Hq % k.shape[1] != 0:
        raise ValueError(f"q heads {Hq} must be a multiple of k/v heads {k.shape[1]}")
    if max(D, v.shape[3]) > MAX_HEAD_DIM:
        raise ValueError(f"head dims (D={D}, Dv={v.shape[3]}) must be <= {MAX_HEAD_DIM}")
    if B * Hq > _MAX_GRID_Y:
        raise ValueError(f"B * Hq = {B * Hq} exceeds the launch grid's limit of {_MAX_GRID_Y}")
    if not isinstance(spec, KernelSpec):
        raise TypeError(f"spec must be a KernelSpec, got {type(spec).__name__}")
    if not (isinstance(scale, (int, float)) and math.isfinite(scale)):
        raise ValueError(f"scale must be a finite number, got {scale!r}")
    slopes = spec.score.alibi_slopes
    if slopes is not None and (slopes.dim() != 1 or slopes.shape[0] < Hq):
        raise ValueError(f"alibi slopes must hold one entry per query head ({Hq}), "
                         f"got shape {tuple(slopes.shape)}")
    mask = spec.mask
    if mask.kv_lengths is not None and tuple(mask.kv_lengths.shape) != (B,):
        raise ValueError(f"kv_lengths must have shape ({B},), got {tuple(mask.kv_lengths.shape)}")
    if (mask.q_doc_ids is None) != (mask.kv_doc_ids is None):
        raise ValueError("q_doc_ids and kv_doc_ids must be given together")
    if mask.q_doc_ids is not None and (tuple(mask.q_doc_ids.shape) != (B, Lq)
                                       or tuple(mask.kv_doc_ids.shape) != (B, k.shape[2])):
        raise ValueError(f"doc ids must have shapes ({B}, {Lq}) and ({B}, {k.shape[2]}), got "
                         f"{tuple(mask.q_doc_ids.shape)} and {tuple(mask.kv_doc_ids.shape)}")
    if mask.window is not None and mask.window[0] < 1:
        raise ValueError(f"window size must be >= 1, got {mask.window[0]}")


def _spec_args(spec: KernelSpec, q: torch.Tensor, kv_len: int) -> tuple[list, dict]:
    """Device tensors and scalar/constexpr arguments shared by the attention kernels."""
    device = q.device
    placeholder = torch.zeros(1, dtype=torch.int32, device=device)
    mask, score = spec.mask, spec.score
    slopes = (placeholder.float() if score.alibi_slopes is None else
              score.alibi_slopes.to(device=device, dtype=torch.float32).contiguous())
    kv_lengths = (placeholder if mask.kv_lengths is None else
                  mask.kv_lengths.to(device).clamp(0, kv_len).to(torch.int32).contiguous())
    has_doc = mask.q_doc_ids is not None
    q_doc = (mask.q_doc_ids.to(device=device, dtype=torch.int64).contiguous() if has_doc
             else placeholder)
    kv_doc = (mask.kv_doc_ids.to(device=device, dtype=torch.int64).contiguous() if has_doc
              else placeholder)
    size, window_causal, window_offset = mask.window if mask.window is not None else (1, True, 0)
    scalars = dict(
        causal_offset=int(mask.causal_offset or 0), win_size=int(size),
        win_offset=int(window_offset), alibi_q_offset=int(score.alibi_q_offset),
        softcap=float(score.softcap or 1.0),
        HAS_CAUSAL=mask.causal_offset is not None, HAS_WINDOW=mask.window is not None,
        WINDOW_CAUSAL=bool(window_causal), HAS_KV_LENGTHS=mask.kv_lengths is not None,
        HAS_DOC=has_doc, HAS_ALIBI=score.alibi_slopes is not None,
        ALIBI_SYMMETRIC=bool(score.alibi_symmetric), HAS_SOFTCAP=score.softcap is not None,
        DTYPE=_TL_DTYPES[q.dtype],
        # The interpreter's dot multiplies raw bfloat16 bits: give it float32 operands.
        OP_DTYPE=tl.float32 if _interpreted() else _TL_DTYPES[q.dtype],
        # float32 inputs: full-precision products, not TF32 (torch's matmul default too).
        PRECISION="ieee" if q.dtype == torch.float32 else "tf32",
    )
    return [slopes, kv_lengths, q_doc, kv_doc], scalars


_TL_DTYPES = {} if tl is None else {
    torch.float16: tl.float16, torch.bfloat16: tl.bfloat16, torch.float32: tl.float32}


def _head_blocks(q: torch.Tensor, v: torch.Tensor) -> dict:
    return dict(BLOCK_D=max(16, triton.next_power_of_2(q.shape[3])),
                BLOCK_DV=max(16, triton.next_power_of_2(v.shape[3])))


def _forward(q, k, v, spec, scale, tiles):
    """``out, lse`` and, for the backward, each row's max logit and 1 / sum of weights."""
    _require_triton()
    _check_inputs(q, k, v, spec, scale)
    B, Hq, Lq, D = q.shape
    Hkv, Lk, Dv = k.shape[1], k.shape[2], v.shape[3]
    tiles = tiles or default_tiles(q.dtype, max(D, Dv), backward=False)
    out = torch.empty(B, Hq, Lq, Dv, dtype=q.dtype, device=q.device)
    lse, row_max, row_inv_sum = torch.empty(3, B, Hq, Lq, dtype=torch.float32,
                                            device=q.device)  # each (B, Hq, Lq)
    if out.numel() == 0:
        return out.zero_(), lse.fill_(float("-inf")), row_max.fill_(float("inf")), \
            row_inv_sum.zero_()
    tensors, scalars = _spec_args(spec, q, Lk)
    grid = (triton.cdiv(Lq, tiles.block_m), B * Hq)
    _fwd_kernel[grid](
        q, k, v, out, lse, row_max, row_inv_sum, *tensors,
        *q.stride(), *k.stride(), *v.stride(), *out.stride(),
        Hq, Hq // Hkv, Lq, Lk, D, Dv, float(scale), **scalars,
        BLOCK_M=tiles.block_m, BLOCK_N=tiles.block_n, **_head_blocks(q, v),
        num_warps=tiles.num_warps, num_stages=tiles.num_stages)
    return out, lse, row_max, row_inv_sum


def triton_attention_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                             spec: KernelSpec, scale: float, *,
                             tiles: TileSizes | None = None
                             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused attention forward, without an autograd graph.

    Args:
        q: ``(B, Hq, Lq, D)``; k: ``(B, Hkv, Lk, D)``; v: ``(B, Hkv, Lk, Dv)``;
            one dtype (float16, bfloat16 or float32), any strides. Query head ``h``
            reads key/value head ``h // (Hq // Hkv)``.
        spec: mask and score_mod description (see :mod:`attnkit.kernels.spec`).
        scale: logit multiplier.
        tiles: tile sizes; :func:`default_tiles` when None.

    Returns:
        ``out (B, Hq, Lq, Dv)`` in the input dtype (zeros on rows with nothing to
        attend to) and ``lse (B, Hq, Lq)`` float32, the natural-log log-sum-exp of
        the scaled, score-modded, masked logits (``-inf`` on those rows).
    """
    out, lse, _, _ = _forward(q, k, v, spec, scale, tiles)
    return out, lse


def _backward(dout, q, k, v, out, row_max, row_inv_sum, spec, scale, tiles):
    B, Hq, Lq, D = q.shape
    Hkv, Lk, Dv = k.shape[1], k.shape[2], v.shape[3]
    tiles = tiles or default_tiles(q.dtype, max(D, Dv), backward=True)
    dq = torch.empty_like(q, memory_format=torch.contiguous_format)
    dk = torch.empty_like(k, memory_format=torch.contiguous_format)
    dv = torch.empty_like(v, memory_format=torch.contiguous_format)
    if q.numel() == 0 or k.numel() == 0:
        return dq.zero_(), dk.zero_(), dv.zero_()
    tensors, scalars = _spec_args(spec, q, Lk)
    delta = torch.empty(B, Hq, Lq, dtype=torch.float32, device=q.device)
    _bwd_delta_kernel[(triton.cdiv(Lq, tiles.block_m), B * Hq)](
        out, dout, delta, *out.stride(), *dout.stride(), Hq, Lq, Dv,
        BLOCK_M=tiles.block_m, BLOCK_DV=_head_blocks(q, v)["BLOCK_DV"],
        ACC_DTYPE=tl.float64 if q.dtype == torch.float32 else tl.float32)
    common = dict(**scalars, BLOCK_M=tiles.block_m, BLOCK_N=tiles.block_n,
                  **_head_blocks(q, v), num_warps=tiles.num_warps, num_stages=tiles.num_stages)
    sizes = (Hq, Hq // Hkv, Lq, Lk, D, Dv, float(scale))
    _bwd_kv_kernel[(triton.cdiv(Lk, tiles.block_n), B * Hkv)](
        q, k, v, dout, row_max, row_inv_sum, delta, dk, dv, *tensors,
        *q.stride(), *k.stride(), *v.stride(), *dout.stride(), *dk.stride(), *dv.stride(),
        *sizes, **common)
    _bwd_q_kernel[(triton.cdiv(Lq, tiles.block_m), B * Hq)](
        q, k, v, dout, row_max, row_inv_sum, delta, dq, *tensors,
        *q.stride(), *k.stride(), *v.stride(), *dout.stride(), *dq.stride(),
        *sizes, **common)
    return dq, dk, dv


class _TritonAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, spec, scale, tiles):
        out, lse, row_max, row_inv_sum = _forward(q, k, v, spec, scale, tiles)
        ctx.save_for_backward(q, k, v, out, row_max, row_inv_sum)
        ctx.spec, ctx.scale, ctx.tiles = spec, scale, tiles
        ctx.mark_non_differentiable(lse)
        return out, lse

    @staticmethod
    def backward(ctx, dout, _dlse):
        q, k, v, out, row_max, row_inv_sum = ctx.saved_tensors
        dq, dk, dv = _backward(dout, q, k, v, out, row_max, row_inv_sum, ctx.spec, ctx.scale,
                               ctx.tiles)
        return dq, dk, dv, None, None, None


def triton_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spec: KernelSpec,
                     scale: float, *, tiles: TileSizes | None = None,
                     return_lse: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Fused attention with autograd (FlashAttention-2 forward and backward).

    Args:
        q: ``(B, Hq, Lq, D)``; k: ``(B, Hkv, Lk, D)``; v: ``(B, Hkv, Lk, Dv)``;
            one dtype (float16, bfloat16 or float32), any strides, ``Hq % Hkv == 0``
            (query head ``h`` reads key/value head ``h // (Hq // Hkv)``).
        spec: mask and score_mod description (see :mod:`attnkit.kernels.spec`).
        scale: logit multiplier.
        tiles: tile sizes for forward and backward; per-pass defaults when None.
        return_lse: also return ``lse (B, Hq, Lq)`` float32 (no gradient), as
            :func:`triton_attention_forward` does, e.g. to rebuild chosen weights.

    Returns:
        ``out (B, Hq, Lq, Dv)`` in the input dtype (or ``(out, lse)``). Gradients
        reach ``q``, ``k`` and ``v`` (not the ALiBi slopes); rows with nothing to
        attend to give zeros in the output and in the gradients.

    Example (needs triton and a CUDA device, or ``TRITON_INTERPRET=1``)::

        spec = KernelSpec(MaskSpec(causal_offset=0), ScoreSpec())
        out = triton_attention(q, k, v, spec, scale=q.shape[-1] ** -0.5)
    """
    _require_triton()
    out, lse = _TritonAttention.apply(q, k, v, spec, scale, tiles)
    return (out, lse) if return_lse else out
