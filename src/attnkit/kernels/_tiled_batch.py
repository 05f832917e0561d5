"""The tiled kernel in batches of tiles: block-sparse FlashAttention as a few batched
matmuls instead of a Python loop per tile.

FlashAttention (Dao et al. 2022, arXiv:2205.14135; FlashAttention-2, Dao 2023,
arXiv:2307.08691) with a block-sparse work list in the manner of FlexAttention's block
mask. The schedule (:mod:`attnkit.kernels._tiled_schedule`) groups the non-EMPTY tiles
into rectangles of ``g`` query blocks by ``n`` key tiles; each rectangle gathers its
key tiles into one ``(n * block_k)``-key slab per query block and runs:

* forward: one batched ``Q K^T`` over every query block of the batch, the mask and
  score modifier as tensor operations over the whole batch
  (:mod:`attnkit.kernels._tiled_terms`), an online-softmax update of the blocks'
  running max, sum and output (a block whose keys do not fit in one batch is met
  again in a later pass), one batched ``P V``;
* backward: the probabilities recomputed from the saved log-sum-exp, then ``dV``,
  ``dP``, ``dS``, ``dQ`` and ``dK`` as batched matmuls; the key-tile gradients are
  scattered back with ``index_add_``.

Memory: the inputs rearranged into blocks (``O(L * D)``) and one batch of logits (at
most ``max_elements``); no ``(Lq, Lk)`` tensor. Query rows and keys are padded to
whole tiles; padded keys are masked out and padded rows discarded.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F

from attnkit.kernels._tiled_schedule import Schedule, build_schedule, tile_kinds
from attnkit.kernels._tiled_terms import (
    apply_scores,
    callable_blocked,
    one_document,
    positions,
    softcap_grad,
    spec_blocked,
)
from attnkit.kernels.precision import compute_dtype

__all__ = ["batch_forward", "batch_backward", "MAX_KEYS", "MAX_ELEMENTS"]

# Keys one query block meets per pass, and logits one batch may hold per intra-op thread
# (B * Hq * rows * keys; the threads split each batch). Working memory is a few times
# MAX_ELEMENTS floats per thread (logits, dP, and tanh for a soft cap in the backward):
# 2 MiB each in float32, whatever L is. Measured on the 2-core development machine
# (B=1, H=8, D=64, float32, 1 thread): batches of 2^19-2^20 logits ran best (dense: 2^19
# 10% faster than 2^20; larger ones spill the 2 MiB L2 cache during the softmax passes,
# smaller ones pay more Python per logit), 512 keys per pass as fast as 1024.
MAX_KEYS = 512
MAX_ELEMENTS = 1 << 19


def _max_elements() -> int:
    return MAX_ELEMENTS * max(1, torch.get_num_threads())


def schedule(fns, block_q: int, block_k: int, q_len: int, kv_len: int,
             logits_per_pair: int) -> Schedule:
    """The work list for these tiles, cached on ``fns`` (ring attention runs the forward
    and backward of one block with the same ``fns``)."""
    budget = _max_elements()
    key = (block_q, block_k, q_len, kv_len, logits_per_pair, MAX_KEYS, budget)
    cache = getattr(fns, "_schedules", None)
    if cache is None:
        cache = {}
        try:
            fns._schedules = cache
        except AttributeError:
            pass
    if key not in cache:
        n_q, n_k = -(-q_len // block_q), -(-kv_len // block_k)
        kinds = tile_kinds(fns.plan, fns.mask is not None, n_q, n_k)
        if tuple(kinds.shape) != (n_q, n_k):
            raise ValueError(f"fns.plan has shape {tuple(kinds.shape)}, but {block_q}x"
                             f"{block_k} tiles of Lq={q_len}, Lk={kv_len} need "
                             f"{(n_q, n_k)}")
        cache[key] = build_schedule(kinds, block_q, block_k, kv_len, logits_per_pair,
                                    MAX_KEYS, budget)
    return cache[key]


def _blocks(x: torch.Tensor, block: int, kv_heads: int, dtype) -> torch.Tensor:
    """``(B, Hq, L, X)`` as ``(B, Hkv, n, G * block, X)`` in ``dtype``, rows padded with
    zeros to ``n * block``: the ``G`` query heads sharing a key head are stacked along
    the rows, so every product with a key slab is one plain batched matmul."""
    B, Hq, L, X = x.shape
    n = -(-L // block)
    x = x.to(dtype)
    if n * block != L:
        x = F.pad(x, (0, 0, 0, n * block - L))
    group = Hq // kv_heads
    return x.view(B, kv_heads, group, n, block, X).transpose(2, 3).reshape(
        B, kv_heads, n, group * block, X)


def _unblocks(x: torch.Tensor, length: int, q_heads: int) -> torch.Tensor:
    """Inverse of :func:`_blocks`: ``(B, Hkv, n, G * block, X) -> (B, Hq, L, X)``."""
    B, kv_heads, n, rows, X = x.shape
    group = q_heads // kv_heads
    block = rows // group
    x = x.view(B, kv_heads, n, group, block, X).transpose(2, 3)
    return x.reshape(B, q_heads, n * block, X)[:, :, :length]


def _tiles(x: torch.Tensor, block: int, dtype) -> torch.Tensor:
    """``(B, Hkv, L, X)`` as ``(B, Hkv, n, block, X)`` in ``dtype``, zero-padded."""
    B, H, L, X = x.shape
    n = -(-L // block)
    x = x.to(dtype)
    if n * block != L:
        x = F.pad(x, (0, 0, 0, n * block - L))
    return x.contiguous().view(B, H, n, block, X)


def _take_rows(x: torch.Tensor, batch) -> torch.Tensor:
    """The batch's query blocks of a ``(B, Hkv, n_q, rows, X)`` tensor (a view when
    they are consecutive)."""
    if batch.row_span is not None:
        return x[:, :, batch.row_span[0]:batch.row_span[1]]
    return x.index_select(2, batch.rows.to(x.device))


def _take_keys(x: torch.Tensor, batch) -> torch.Tensor:
    """The batch's key slabs of ``(B, Hkv, n_k, block_k, X)``: ``(B, Hkv, 1, c, X)``
    when every query block reads the same consecutive tiles, a strided view
    ``(B, Hkv, g, c, X)`` when each reads a run shifted by a fixed number of tiles (a
    sliding window), else a gathered copy ``(B, Hkv, g, c, X)``."""
    B, H, n_k, block, X = x.shape
    g, n = batch.tiles.shape
    if batch.key_run is not None:
        j0, step = batch.key_run
        if step == 0:
            return x[:, :, j0:j0 + n].reshape(B, H, 1, n * block, X)
        sb, sh, st, sr, sx = x.stride()
        return x.as_strided((B, H, g, n * block, X), (sb, sh, step * st, sr, sx),
                            x.storage_offset() + j0 * st)
    taken = x.index_select(2, batch.tiles.flatten().to(x.device))
    return taken.view(B, H, g, n * block, X)


def _per_slab(op, a: torch.Tensor, keys: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``op(a3, k3, out3)`` on 3-D batches: ``a (B, H, g, r, X)`` against slabs
    ``keys (B, H, g|1, c, X)`` into ``out (B, H, g, r, Y)``. A shared slab is one call
    with ``g * r`` rows; strided views (overlapping slabs) one call per ``(b, h)``, so
    they are read in place rather than copied."""
    B, H, g, r, X = a.shape
    c, Xk = keys.shape[3], keys.shape[4]
    if keys.shape[2] == 1:
        op(a.reshape(B * H, g * r, X), keys.reshape(B * H, c, Xk),
           out.view(B * H, g * r, out.shape[-1]))
    elif keys.is_contiguous():
        op(a.reshape(B * H * g, r, X), keys.reshape(B * H * g, c, Xk),
           out.view(B * H * g, r, out.shape[-1]))
    else:
        for b in range(B):
            for h in range(H):
                op(a[b, h], keys[b, h], out[b, h])
    return out


def _logits(a: torch.Tensor, keys: torch.Tensor, scale: float) -> torch.Tensor:
    """``(a . k) * scale`` per query block: ``a (B, H, g, r, D)`` against key slabs
    ``(B, H, g|1, c, D)`` -> ``(B, H, g, r, c)``. The scale is the GEMM's ``alpha``, so
    each logit is rounded once, as the reference's ``(q @ k^T) * scale`` nearly is."""
    B, H, g, r, _ = a.shape
    out = torch.empty(B, H, g, r, keys.shape[3], dtype=a.dtype, device=a.device)

    def op(a3, k3, o3):
        torch.baddbmm(o3, a3, k3.transpose(1, 2), beta=0.0, alpha=scale, out=o3)

    return _per_slab(op, a, keys, out)


def _matmul_keys(a: torch.Tensor, keys: torch.Tensor, transpose: bool) -> torch.Tensor:
    """``a (B, H, g, r, X)`` times each query block's slab ``(B, H, g|1, c, X)``:
    ``a k^T (B, H, g, r, c)`` when ``transpose``, else ``a (B, H, g, r, c) @ slab``
    ``(B, H, g, r, X)``."""
    B, H, g, r, _ = a.shape
    width = keys.shape[3] if transpose else keys.shape[4]
    out = torch.empty(B, H, g, r, width, dtype=a.dtype, device=a.device)

    def op(a3, k3, o3):
        torch.bmm(a3, k3.transpose(1, 2) if transpose else k3, out=o3)

    return _per_slab(op, a, keys, out)


def _scores(batch, q_rows, keys, scale, terms, fns, dims, keep_tanh: bool, cache: dict):
    """Scaled and score-modded logits of one batch ``s (B, Hkv, g, G * bq, c)``, with:

    * ``t``: ``tanh(s / cap)`` for the backward of a soft cap, else None;
    * ``mask``: None when every position is allowed, else ``(bias, allowed)``, both
      broadcastable to ``(B, Hkv, g, G, bq, c)`` in the logits' dtype: ``bias`` is
      0 / -inf (added before a row max), ``allowed`` 1 / 0 (multiplied into the
      weights after ``exp``; see :func:`_weights`).

    ``cache`` (one per kernel call) keeps the masks of shift-invariant batches.
    """
    block_q, block_k, q_len, kv_len, q_heads, kv_heads = dims
    s = _logits(q_rows, keys, scale)
    B, _, g, rows, c = s.shape
    s6 = s.view(B, kv_heads, g, q_heads // kv_heads, block_q, c)
    t = mask = None
    if terms is None:
        if batch.masked:
            blocked = callable_blocked(fns, batch, block_q, block_k, q_len, kv_len,
                                       q_heads, kv_heads, s.device)
            mask = _mask_pair(blocked, s.dtype)
        return s, t, mask
    edge = batch.edge
    # Every query block of the batch sees its keys at the same offset (a sliding window
    # over consecutive blocks): distance-only terms are the same for each block.
    same_offsets = batch.row_span is not None and batch.key_run is not None and (
        g == 1 or batch.key_run[1] * block_k == block_q)
    mask_terms = terms.mask
    if (batch.masked and mask_terms.q_doc_ids is not None
            and one_document(mask_terms, batch, block_q, block_k, q_len, kv_len)):
        mask_terms = dataclasses.replace(mask_terms, q_doc_ids=None, kv_doc_ids=None)
    by_distance = (same_offsets and not edge and mask_terms.kv_lengths is None
                   and mask_terms.q_doc_ids is None)
    q_pos = kv_pos = None
    if batch.masked or terms.score.alibi_slopes is not None:
        q_pos, kv_pos = positions(batch, block_q, block_k, s.device, first_only=by_distance)
    t = apply_scores(terms.score, s6, q_pos, kv_pos, keep_tanh)
    if batch.masked:
        key = None
        if by_distance:
            key = (int(batch.rows[0]) * block_q - int(batch.tiles[0, 0]) * block_k, c)
            mask = cache.get(key)
        if mask is None:
            blocked = spec_blocked(mask_terms, q_pos, kv_pos, q_len, kv_len, edge)
            if blocked is not None:
                mask = _mask_pair(blocked[:, None, :, None], s.dtype)  # (B|1,1,g,1,bq,c)
            if key is not None:
                cache[key] = mask
    return s, t, mask


def _mask_pair(blocked: torch.Tensor, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """``(bias, allowed)`` from "may not attend": 0 / -inf and 1 / 0 in ``dtype``."""
    zero = torch.zeros((), dtype=dtype, device=blocked.device)
    bias = torch.where(blocked, float("-inf"), zero)
    return bias, (~blocked).to(dtype)


def _weights(x: torch.Tensor, mask, dims6) -> torch.Tensor:
    """``exp(x)`` in place, ``x (B, Hkv, g, G * bq, c)`` already shifted by the row max
    or the lse, and zero at disallowed positions.

    With a mask, ``x`` is clamped from below at ``log(tiny)`` first and the disallowed
    positions are zeroed by a multiply: ``exp`` of ``-inf`` or of anything whose result
    underflows takes a slow path on x86 (tens of times slower than a normal ``exp``),
    and masked positions are exactly such inputs. The clamp only replaces weights below
    the smallest normal float (``1e-38``, relative to a row maximum of 1) by that value.
    """
    if mask is None:
        return x.exp_()
    x = x.clamp_min_(math.log(torch.finfo(x.dtype).tiny) + 1.0).exp_()
    x.view(dims6).mul_(mask[1])
    return x


def batch_forward(q, k, v, fns, scale, block_q, block_k, terms=None):
    """``(out (B, Hq, Lq, Dv), lse (B, Hq, Lq))`` in the accumulation dtype.

    ``terms``: a :class:`~attnkit.kernels.spec.KernelSpec` describing the mask and
    score modifier as numbers (``fns.mask`` is then not called), or None (``fns.mask``
    per PARTIAL tile, no score modifier).
    """
    B, Hq, Lq, _ = q.shape
    Hkv, Lk, Dv = k.shape[1], k.shape[2], v.shape[3]
    acc = compute_dtype(q.dtype)
    sched = schedule(fns, block_q, block_k, Lq, Lk, B * Hq)
    qb = _blocks(q, block_q, Hkv, acc)  # (B, Hkv, n_q, G*bq, D)
    kt, vt = _tiles(k, block_k, acc), _tiles(v, block_k, acc)  # (B, Hkv, n_k, bk, X)
    rows = qb.shape[3]
    o = torch.zeros(B, Hkv, sched.n_q, rows, Dv, dtype=acc, device=q.device)
    m = torch.full((B, Hkv, sched.n_q, rows, 1), float("-inf"), dtype=acc, device=q.device)
    l = torch.zeros_like(m)
    dims = (block_q, block_k, Lq, Lk, Hq, Hkv)
    cache: dict = {}
    for batch in sched.batches:
        keys, values = _take_keys(kt, batch), _take_keys(vt, batch)
        s, _, mask = _scores(batch, _take_rows(qb, batch), keys, scale, terms, fns, dims,
                             False, cache)
        dims6 = (B, Hkv, s.shape[2], Hq // Hkv, block_q, s.shape[-1])
        if mask is not None:
            s.view(dims6).add_(mask[0])  # disallowed logits: -inf, never a row max
        if batch.row_span is not None:
            i0, i1 = batch.row_span
            m_old, l_old, o_old = m[:, :, i0:i1], l[:, :, i0:i1], o[:, :, i0:i1]
        else:
            m_old, l_old, o_old = (_take_rows(x, batch) for x in (m, l, o))
        m_new = torch.maximum(m_old, s.amax(dim=-1, keepdim=True))
        # Rows with nothing allowed so far keep m = -inf; shift them by 0 so that exp()
        # sees -inf - 0 = -inf rather than -inf + inf = nan.
        shift = m_new.masked_fill(m_new == float("-inf"), 0.0)
        p = _weights(s.sub_(shift), mask, dims6)
        correction = torch.exp(m_old - shift)
        l_new = l_old.mul_(correction).add_(p.sum(dim=-1, keepdim=True))
        o_new = o_old.mul_(correction).add_(_matmul_keys(p, values, transpose=False))
        if batch.row_span is not None:
            m[:, :, i0:i1] = m_new  # l and o were updated in place (views)
        else:
            index = batch.rows.to(q.device)
            m.index_copy_(2, index, m_new)
            l.index_copy_(2, index, l_new)
            o.index_copy_(2, index, o_new)
    empty = l == 0
    o = o.div_(l.masked_fill(empty, 1.0))  # empty rows: o is already 0
    lse = (m + torch.log(l)).masked_fill_(empty, float("-inf"))
    return _unblocks(o, Lq, Hq), _unblocks(lse, Lq, Hq)[..., 0]


def batch_backward(q, k, v, out, lse, grad_out, fns, scale, block_q, block_k, terms=None):
    """``(dq, dk, dv)`` in the accumulation dtype, from the forward's ``out`` (in the
    accumulation dtype) and ``lse``; ``terms`` as in :func:`batch_forward`."""
    B, Hq, Lq, D = q.shape
    Hkv, Lk = k.shape[1], k.shape[2]
    acc = compute_dtype(q.dtype)
    sched = schedule(fns, block_q, block_k, Lq, Lk, B * Hq)
    qb = _blocks(q, block_q, Hkv, acc)  # (B, Hkv, n_q, G*bq, D)
    dob = _blocks(grad_out, block_q, Hkv, acc)  # (B, Hkv, n_q, G*bq, Dv)
    # delta_i = sum_j P_ij dP_ij = rowsum(dO * O): the softmax backward's row term.
    delta = _blocks((grad_out.to(acc) * out).sum(dim=-1, keepdim=True), block_q, Hkv, acc)
    # Empty and padded rows get lse = +inf, which makes their P exactly 0.
    lse = lse.to(acc).masked_fill(lse == float("-inf"), float("inf"))[..., None]
    lse_b = _blocks(lse, block_q, Hkv, acc)
    if Lq % block_q:
        lse_b.view(B, Hkv, sched.n_q, Hq // Hkv, block_q)[:, :, -1, :, Lq % block_q:] = \
            float("inf")
    kt, vt = _tiles(k, block_k, acc), _tiles(v, block_k, acc)  # (B, Hkv, n_k, bk, X)
    dq = torch.zeros_like(qb)
    dk, dv = torch.zeros_like(kt), torch.zeros_like(vt)
    dims = (block_q, block_k, Lq, Lk, Hq, Hkv)
    cache: dict = {}
    for batch in sched.batches:
        q_rows, do_rows = _take_rows(qb, batch), _take_rows(dob, batch)
        keys, values = _take_keys(kt, batch), _take_keys(vt, batch)
        s, t, mask = _scores(batch, q_rows, keys, scale, terms, fns, dims, True, cache)
        dims6 = (B, Hkv, s.shape[2], Hq // Hkv, block_q, s.shape[-1])
        p = _weights(s.sub_(_take_rows(lse_b, batch)), mask, dims6)  # exact weights
        # dV and dK sum over the query heads of a group: they are stacked along the rows.
        _add_keys(dv, batch, _transposed_matmul(p, do_rows, keys.shape[2] == 1))
        dp = _matmul_keys(do_rows, values, transpose=True)
        ds = p.mul_(dp.sub_(_take_rows(delta, batch)))  # gradient w.r.t. the logits
        if t is not None:
            ds = softcap_grad(ds, t)
        dq_rows = _matmul_keys(ds, keys, transpose=False)
        if batch.row_span is not None:
            dq[:, :, batch.row_span[0]:batch.row_span[1]] += dq_rows
        else:
            dq.index_add_(2, batch.rows.to(q.device), dq_rows)
        _add_keys(dk, batch, _transposed_matmul(ds, q_rows, keys.shape[2] == 1))
    dq = _unblocks(dq.mul_(scale), Lq, Hq)
    dk = dk.mul_(scale).flatten(2, 3)[:, :, :Lk]  # dS is the gradient of the scaled logits
    return dq, dk, dv.flatten(2, 3)[:, :, :Lk]


def _transposed_matmul(a: torch.Tensor, b: torch.Tensor, shared: bool) -> torch.Tensor:
    """``a^T b`` per query block: ``a (B, H, g, r, c)``, ``b (B, H, g, r, X)`` ->
    ``(B, H, g, c, X)``, or summed over the blocks ``(B, H, 1, c, X)`` when they share
    one key slab."""
    B, H, g, r, c = a.shape
    if shared:
        return torch.matmul(a.reshape(B, H, g * r, c).transpose(-2, -1),
                            b.reshape(B, H, g * r, b.shape[-1]))[:, :, None]
    return torch.matmul(a.transpose(-2, -1), b)


def _add_keys(grad: torch.Tensor, batch, slabs: torch.Tensor) -> None:
    """Add per-slab key gradients ``(B, H, g|1, c, X)`` into ``grad (B, H, n_k, bk, X)``."""
    B, H, _, block, X = grad.shape
    g, n = batch.tiles.shape
    if batch.key_run is None:
        grad.index_add_(2, batch.tiles.flatten().to(grad.device),
                        slabs.reshape(B, H, g * n, block, X))
        return
    j0, step = batch.key_run
    if slabs.shape[2] == 1:
        grad[:, :, j0:j0 + n] += slabs.view(B, H, n, block, X)
        return
    slabs = slabs.view(B, H, g, n, block, X)
    for u in range(n):  # rows t = 0..g-1 hit distinct tiles j0 + u + t * step
        grad[:, :, j0 + u:j0 + u + step * (g - 1) + 1:step] += slabs[:, :, :, u]
