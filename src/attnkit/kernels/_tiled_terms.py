"""Masks and score modifiers over a whole batch of tiles at once.

A batch (:class:`~attnkit.kernels._tiled_schedule.TileBatch`) holds ``g`` query blocks
of ``block_q`` rows against ``n`` key tiles of ``block_k`` keys each; its logits are
viewed as ``(B, Hkv, g, G, block_q, c)`` with ``c = n * block_k`` and ``G = Hq / Hkv``.
Masks given as plain numbers (:class:`~attnkit.kernels.spec.MaskSpec`: causal, sliding
window, key lengths, document ids) and the built-in score modifiers
(:class:`~attnkit.kernels.spec.ScoreSpec`: ALiBi, Press et al. 2021, arXiv:2108.12409;
soft-capping) become index arithmetic on the batch's query and key positions, so one
tensor operation covers every tile. Any other mask is a per-tile callable; its tiles
are evaluated one by one and stacked into one boolean tensor for the batch.
"""

from __future__ import annotations

import torch

from attnkit.kernels.spec import PARTIAL, MaskSpec, ScoreSpec

__all__ = ["positions", "spec_blocked", "one_document", "apply_scores", "softcap_grad",
           "callable_blocked"]


def positions(batch, block_q: int, block_k: int, device,
              first_only: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Query positions ``(g, block_q, 1)`` and key positions ``(g, 1, c)`` (int64) of a
    batch (``g = 1``: its first query block only, when ``first_only``); positions
    past ``Lq``/``Lk`` (padding) are included."""
    rows, tiles = batch.rows.to(device), batch.tiles.to(device)
    if first_only:
        rows, tiles = rows[:1], tiles[:1]
    q_pos = rows[:, None] * block_q + torch.arange(block_q, device=device)  # (g, bq)
    kv_pos = (tiles[:, :, None] * block_k + torch.arange(block_k, device=device))
    return q_pos[:, :, None], kv_pos.flatten(1)[:, None, :]


def spec_blocked(spec: MaskSpec, q_pos: torch.Tensor, kv_pos: torch.Tensor, q_len: int,
                 kv_len: int, edge: bool) -> torch.Tensor | None:
    """Positions the mask rules out, bool broadcastable to ``(B|1, g, block_q, c)``
    (True = may NOT attend), or None when nothing is ruled out.

    ``edge``: also rule out padded keys (``kv_pos >= Lk``).
    """
    blocked = None

    def add(term: torch.Tensor) -> None:
        nonlocal blocked
        blocked = term if blocked is None else blocked | term

    if spec.causal_offset is not None:
        add(kv_pos > q_pos + spec.causal_offset)
    if spec.window is not None:
        size, causal, offset = spec.window
        distance = q_pos + offset - kv_pos  # (g, bq, c); > 0: the key lies in the past
        add((distance < 0) | (distance >= size) if causal else distance.abs() >= size)
    if edge:
        add(kv_pos >= kv_len)
    if spec.kv_lengths is not None:
        lengths = spec.kv_lengths.to(kv_pos.device)[:, None, None, None]  # (B, 1, 1, 1)
        add(kv_pos[None] >= lengths)
    if spec.q_doc_ids is not None:
        q_doc = spec.q_doc_ids.to(q_pos.device)
        kv_doc = spec.kv_doc_ids.to(kv_pos.device)
        # Padded positions read the last id; their logits are discarded or masked.
        q_ids = q_doc[:, q_pos.clamp(max=q_len - 1)]  # (B, g, bq, 1)
        kv_ids = kv_doc[:, kv_pos.clamp(max=kv_len - 1)]  # (B, g, 1, c)
        add(q_ids != kv_ids)
    if blocked is not None and blocked.dim() == 3:
        blocked = blocked[None]
    return blocked


def one_document(spec: MaskSpec, batch, block_q: int, block_k: int, q_len: int,
                 kv_len: int) -> bool:
    """Whether every query block of the batch and all of its keys lie in one document
    (per batch row): the document term then rules nothing out. Reads ``g * (bq + c)``
    ids, not ``g * bq * c``."""
    device = spec.q_doc_ids.device
    rows, tiles = batch.rows.to(device), batch.tiles.to(device)
    q_pos = (rows[:, None] * block_q + torch.arange(block_q, device=device)).clamp(
        max=q_len - 1)  # (g, bq)
    kv_pos = (tiles[:, :, None] * block_k + torch.arange(block_k, device=device)).flatten(
        1).clamp(max=kv_len - 1)  # (g, c)
    q_ids, kv_ids = spec.q_doc_ids[:, q_pos], spec.kv_doc_ids[:, kv_pos]  # (B, g, .)
    first = q_ids[:, :, :1]
    return bool((q_ids == first).all()) and bool((kv_ids == first).all())


def apply_scores(spec: ScoreSpec, s6: torch.Tensor, q_pos: torch.Tensor,
                 kv_pos: torch.Tensor, keep_tanh: bool = False) -> torch.Tensor | None:
    """Apply ALiBi then soft-capping in place to logits ``s6 (B, Hkv, g, G, bq, c)``.

    Returns ``tanh(s / cap)`` (a new tensor, for the backward) when ``keep_tanh`` and a
    cap is set; else None.
    """
    if spec.alibi_slopes is not None:
        _, kv_heads, _, group, _, _ = s6.shape
        slopes = spec.alibi_slopes.to(device=s6.device, dtype=s6.dtype)
        slopes = slopes.view(1, kv_heads, 1, group, 1, 1)
        distance = (kv_pos - (q_pos + spec.alibi_q_offset)).to(s6.dtype)  # (g, bq, c)
        if spec.alibi_symmetric:
            distance = distance.abs_().neg_()
        s6.addcmul_(slopes, distance[None, None, :, None])
    if spec.softcap is None:
        return None
    cap = spec.softcap
    if keep_tanh:
        t = torch.div(s6, cap).tanh_()
        torch.mul(t, cap, out=s6)
        return t
    s6.div_(cap).tanh_().mul_(cap)
    return None


def softcap_grad(ds: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``dS`` through ``cap * tanh(s / cap)``: ``dS * (1 - tanh^2)``, in place (``t``
    is consumed)."""
    return ds.mul_(t.mul_(t).neg_().add_(1.0).view(ds.shape))


def callable_blocked(fns, batch, block_q: int, block_k: int, q_len: int, kv_len: int,
                     q_heads: int, kv_heads: int, device) -> torch.Tensor:
    """Positions a per-tile ``fns.mask`` rules out, bool broadcastable to
    ``(B, Hkv, g, G, block_q, c)``; padded keys are ruled out too.

    PARTIAL tiles call ``fns.mask(q0, q1, k0, k1)`` once each; FULL tiles never do.
    """
    g, n = batch.tiles.shape
    found = []
    kinds = batch.kinds.tolist()
    for t, i in enumerate(batch.rows.tolist()):
        q0 = i * block_q
        for u, j in enumerate(batch.tiles[t].tolist()):
            if kinds[t][u] != PARTIAL:
                continue
            k0 = j * block_k
            q1, k1 = min(q0 + block_q, q_len), min(k0 + block_k, kv_len)
            m = fns.mask(q0, q1, k0, k1)
            m = m.reshape((1,) * (4 - m.dim()) + tuple(m.shape))
            found.append((t, u, m.expand(m.shape[0], m.shape[1], q1 - q0, k1 - k0)))
    b_size = max([m.shape[0] for _, _, m in found], default=1)
    h_size = max([m.shape[1] for _, _, m in found], default=1)
    allowed = torch.ones(b_size, h_size, g, block_q, n, block_k, dtype=torch.bool,
                         device=device)
    for t, u, m in found:
        allowed[:, :, t, :m.shape[2], u, :m.shape[3]] = m
    last = kv_len % block_k
    if last:  # the short last key tile: its padded keys are never allowed
        for t, u in (batch.tiles == -(-kv_len // block_k) - 1).nonzero().tolist():
            allowed[:, :, t, :, u, last:] = False
    blocked = ~allowed.view(b_size, h_size, g, block_q, n * block_k)
    if h_size == 1:
        return blocked[:, :, :, None]  # (B|1, 1, g, 1, bq, c)
    group = q_heads // kv_heads
    return blocked.view(b_size, kv_heads, group, g, block_q, -1).transpose(2, 3)
