"""Prefix language model masks (T5, UniLM): bidirectional over a prefix, causal after it."""

from __future__ import annotations

import dataclasses

import torch

from attnkit._validate import check_int
from attnkit.functional.masks.base import MaskMod, classify
from attnkit.functional.masks.ids import as_index_tensor, check_index_batch, check_rows

__all__ = ["PrefixLM", "prefix_lm"]


@dataclasses.dataclass(frozen=True, eq=False)
class PrefixLM(MaskMod):
    """Bidirectional over the first ``prefix_len`` keys, causal afterwards."""

    prefix_len: int | torch.Tensor

    def __call__(self, b, h, q_idx, kv_idx):
        prefix = self.prefix_len
        if isinstance(prefix, torch.Tensor):
            check_index_batch(b, prefix.shape[0], "prefix_lm(prefix_len)")
            prefix = prefix.to(kv_idx.device)[b]
        return (kv_idx < prefix) | (kv_idx <= q_idx)

    def tile_kinds(self, tiles):
        prefix = self.prefix_len
        if isinstance(prefix, torch.Tensor):
            prefix = prefix.to(tiles.q_first.device)[:, None, None]  # (B, 1, 1)
        # Every key of the tile is either inside the prefix or not after the first row.
        full = (tiles.kv_last < prefix) | (tiles.kv_last <= tiles.q_first)
        empty = (tiles.kv_first >= prefix) & (tiles.kv_first > tiles.q_last)
        kinds = classify(full, empty)
        return (kinds[:, None] if kinds.dim() == 3 else kinds[None, None]), True

    def check_shapes(self, batch, q_len, kv_len):
        if isinstance(self.prefix_len, torch.Tensor):
            check_rows(self.prefix_len, batch, "prefix_lm(prefix_len)")


def prefix_lm(prefix_len: int | torch.Tensor) -> PrefixLM:
    """Prefix language model (T5/UniLM): full attention inside the prefix,
    causal after it.

    Args:
        prefix_len: an int, or a ``(B,)`` integer tensor with one prefix length
            per batch row.

    Example, ``prefix_len=2``, ``L = 4``::

        1 1 0 0
        1 1 0 0
        1 1 1 0
        1 1 1 1
    """
    if isinstance(prefix_len, torch.Tensor):
        prefix_len = as_index_tensor(prefix_len, "prefix_len", (1,))
        if (prefix_len < 0).any():
            raise ValueError(f"prefix_len must be >= 0, got {prefix_len.tolist()}")
    else:
        check_int(prefix_len, "prefix_len", minimum=0)
    return PrefixLM(prefix_len)
