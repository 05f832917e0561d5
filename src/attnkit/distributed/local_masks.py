"""Structured masks seen from one block of the ring.

A mask given to :func:`~attnkit.distributed.ring_attention` is written for the **full**
sequence (global positions ``0 .. L-1``, document ids of length ``L``). Each block of the
ring pairs a run of this rank's query positions (starting at global ``q_start``) with a
run of another rank's key positions (starting at ``kv_start``). :func:`localize`
rewrites the mask for that block in local indices, so that attnkit's own kernels classify
and skip its tiles exactly as they would for a one-process call:

* ``causal`` / ``sliding_window``: the diagonal offset grows by ``q_start - kv_start``;
* ``document``: the ids are sliced to the two runs;
* ``key_padding``: the lengths shrink by ``kv_start``;
* ``&``, ``|``, ``~`` of these: rewritten part by part.

Any other mask (a dense tensor, ``prefix_lm``, a user callable) is refused by
:func:`check_ring_mask` with a ``TypeError`` naming ``mask``: a user callable might read
positions in a way no offset can describe, and a dense mask would defeat sharding.
"""

from __future__ import annotations

import zlib

import torch

from attnkit.functional.masks.base import And, MaskMod, Not, Or, Tiles
from attnkit.functional.masks.diagonal import Causal, SlidingWindow
from attnkit.functional.masks.document import Document
from attnkit.functional.masks.padding import KeyPadding
from attnkit.kernels.spec import EMPTY

__all__ = ["SUPPORTED", "check_ring_mask", "empty_pairs", "localize", "mask_signature"]

SUPPORTED = ("masks.causal()", "masks.sliding_window(...)", "masks.document(ids)",
             "masks.key_padding(lengths)", "and &, |, ~ of these")


def check_ring_mask(mask: object, batch: int, seq_len: int) -> None:
    """Raise ``TypeError`` naming ``mask`` unless it is a supported mask, ``ValueError``
    when its document ids or lengths do not fit ``(B, L)`` = ``(batch, seq_len)``."""
    if mask is None:
        return
    if isinstance(mask, (And, Or)):
        for part in mask.mods:
            check_ring_mask(part, batch, seq_len)
        return
    if isinstance(mask, Not):
        check_ring_mask(mask.mod, batch, seq_len)
        return
    if isinstance(mask, (Causal, SlidingWindow, Document, KeyPadding)):
        try:
            mask.check_shapes(batch, seq_len, seq_len)
        except ValueError as exc:
            raise ValueError(f"mask: it must describe the full sequence (L = {seq_len}, "
                             f"the shard length times the world size): {exc}") from exc
        return
    got = "a tensor" if isinstance(mask, torch.Tensor) else type(mask).__name__
    raise TypeError(f"mask: ring_attention takes {', '.join(SUPPORTED)}, or None; got {got}. "
                    f"A dense tensor or a custom callable cannot be split by position; "
                    f"write it as one of these")


def localize(mask: MaskMod, q_start: int, q_len: int, kv_start: int, kv_len: int,
             ) -> MaskMod:
    """``mask`` (global positions) as a mask of the block whose local query ``i`` is global
    ``q_start + i`` (``i < q_len``) and local key ``j`` is global ``kv_start + j``."""
    if isinstance(mask, And):
        return And(tuple(localize(m, q_start, q_len, kv_start, kv_len) for m in mask.mods))
    if isinstance(mask, Or):
        return Or(tuple(localize(m, q_start, q_len, kv_start, kv_len) for m in mask.mods))
    if isinstance(mask, Not):
        return Not(localize(mask.mod, q_start, q_len, kv_start, kv_len))
    shift = q_start - kv_start
    if isinstance(mask, Causal):
        return Causal(mask.offset + shift)
    if isinstance(mask, SlidingWindow):
        return SlidingWindow(mask.size, mask.causal, mask.offset + shift)
    if isinstance(mask, Document):
        return Document(mask.q_doc_ids[:, q_start:q_start + q_len],
                        mask.kv_doc_ids[:, kv_start:kv_start + kv_len])
    if isinstance(mask, KeyPadding):
        return KeyPadding(mask.lengths - kv_start)
    raise TypeError(f"mask: {type(mask).__name__} is not supported by ring_attention")


def _positional(mask: MaskMod) -> bool:
    """Built only from masks whose tiles are classified from their bounds alone (no tile
    size: documents reduce ids over uniform tiles)."""
    if isinstance(mask, (And, Or)):
        return all(_positional(m) for m in mask.mods)
    if isinstance(mask, Not):
        return _positional(mask.mod)
    return isinstance(mask, (Causal, SlidingWindow, KeyPadding))


def empty_pairs(mask: MaskMod | None, q_runs, kv_runs, device=None) -> torch.Tensor | None:
    """Which (query run, key run) rectangles ``mask`` rules out entirely, for every batch row
    and head: bool ``(len(q_runs), len(kv_runs))``, from one closed-form classification of
    all of them at once; None when that needs the positions (documents) or there is no
    mask. Runs are ``(global_start, local_start, length)`` of contiguous global positions.
    Exact for what it marks (a rectangle marked empty has no allowed position); an unmarked
    one may still be empty."""
    if mask is None or not _positional(mask) or not q_runs or not kv_runs:
        return None
    q_first = torch.tensor([g for g, _, _ in q_runs], device=device)[:, None]
    q_last = q_first + torch.tensor([n - 1 for _, _, n in q_runs], device=device)[:, None]
    kv_first = torch.tensor([g for g, _, _ in kv_runs], device=device)[None, :]
    kv_last = kv_first + torch.tensor([n - 1 for _, _, n in kv_runs], device=device)[None, :]
    found = mask.tile_kinds(Tiles(q_first, q_last, kv_first, kv_last, 0, 0))
    if found is None:
        return None
    kinds = found[0]
    return (kinds == EMPTY).reshape(-1, *kinds.shape[-2:]).all(0)


def mask_signature(mask: MaskMod | None) -> int:
    """A 31-bit checksum of the mask's structure and numbers (ids and lengths included),
    so the ranks can check that they were given the same mask."""
    def describe(m) -> str:
        if m is None:
            return "none"
        if isinstance(m, (And, Or)):
            return f"{type(m).__name__}({','.join(describe(p) for p in m.mods)})"
        if isinstance(m, Not):
            return f"Not({describe(m.mod)})"
        if isinstance(m, Causal):
            return f"Causal({m.offset})"
        if isinstance(m, SlidingWindow):
            return f"SlidingWindow({m.size},{m.causal},{m.offset})"
        if isinstance(m, Document):
            return f"Document({_digest(m.q_doc_ids)},{_digest(m.kv_doc_ids)})"
        if isinstance(m, KeyPadding):
            return f"KeyPadding({_digest(m.lengths)})"
        return type(m).__name__

    return zlib.crc32(describe(mask).encode()) & 0x7FFFFFFF


def _digest(ids: torch.Tensor) -> str:
    flat = ids.detach().to("cpu", torch.int64).contiguous()
    return f"{tuple(flat.shape)}:{zlib.crc32(flat.numpy().tobytes())}"
