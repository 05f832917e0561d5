"""Device helpers shared by the Triton kernels: tanh, operand casts, the tile's logits
with every score and mask term, and the tile ranges that structured masks can touch.

``triton`` and ``tl`` are None when triton is not installed; the helpers are then plain
Python functions that are never called (the backend refuses every call).
"""

from __future__ import annotations

try:
    import triton
    import triton.language as tl
except ImportError:  # the kernels are then never defined as Triton functions
    triton = None
    tl = None

__all__ = ["triton", "tl", "jit", "tanh", "operand", "tile_scores", "key_range", "query_range"]


def jit(fn):
    """``triton.jit`` when triton is installed (the function unchanged otherwise)."""
    return fn if triton is None else triton.jit(fn)


@jit
def tanh(x):
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


@jit
def operand(x, DTYPE: tl.constexpr, OP_DTYPE: tl.constexpr):
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


@jit
def tile_scores(q, kT, offs_m, offs_n, kv_end, q_doc, kv_doc, scale, slope,
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
        t = tanh(s / softcap)
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


@jit
def key_range(m0, m_last, kv_end, causal_offset, win_size, win_offset,
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


@jit
def query_range(n0, n_last, q_len, causal_offset, win_size, win_offset,
                 HAS_CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr,
                 WINDOW_CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """Query tiles for the valid keys ``n0..n_last`` of one key block (none when
    ``n_last < n0``), split like :func:`key_range`. Interior tiles exist only
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
