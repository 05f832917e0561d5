"""Right-padded keys: :func:`key_padding` lets batch row ``b`` attend to its first
``lengths[b]`` keys only."""

from __future__ import annotations

import dataclasses

import torch

from attnkit.functional.masks.base import MaskMod, classify
from attnkit.functional.masks.ids import as_index_tensor, check_index_batch, check_rows

__all__ = ["KeyPadding", "key_padding"]


@dataclasses.dataclass(frozen=True, eq=False)
class KeyPadding(MaskMod):
    """``kv_idx < lengths[b]``: only the first ``lengths[b]`` keys are real."""

    lengths: torch.Tensor

    def __call__(self, b, h, q_idx, kv_idx):
        check_index_batch(b, self.lengths.shape[0], "key_padding(lengths)")
        lengths = self.lengths.to(kv_idx.device)
        return kv_idx < lengths[b]

    def tile_kinds(self, tiles):
        lengths = self.lengths.to(tiles.kv_first.device)[:, None, None]  # (B, 1, 1)
        kinds = classify(tiles.kv_last < lengths, tiles.kv_first >= lengths)  # (B, 1, nk)
        return kinds[:, None].expand(-1, 1, tiles.q_first.shape[0], -1), True  # (B,1,nq,nk)

    def check_shapes(self, batch, q_len, kv_len):
        check_rows(self.lengths, batch, "key_padding(lengths)")

    def kernel_terms(self, batch, q_len, kv_len, fields):
        if "kv_lengths" in fields or self.lengths.shape[0] not in (1, batch):
            return "key_padding lengths do not hold one entry per batch row"
        fields["kv_lengths"] = self.lengths.expand(batch)
        return None


def key_padding(lengths: torch.Tensor) -> KeyPadding:
    """Right-padded keys: batch row ``b`` has ``lengths[b]`` valid keys.

    Args:
        lengths: ``(B,)`` integer tensor of valid key counts (>= 0; a row with 0
            valid keys attends to nothing and gives zeros).
    """
    lengths = as_index_tensor(lengths, "lengths", (1,))
    if (lengths < 0).any():
        raise ValueError(f"lengths must be >= 0, got {lengths.tolist()}")
    return KeyPadding(lengths)
