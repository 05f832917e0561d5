"""Packed sequences: :func:`document` lets a query attend only to keys of its own document."""

from __future__ import annotations

import dataclasses

import torch

from attnkit.functional.masks.base import MaskMod, classify
from attnkit.functional.masks.ids import as_index_tensor, check_index_batch, check_rows

__all__ = ["Document", "document"]


@dataclasses.dataclass(frozen=True, eq=False)
class Document(MaskMod):
    """``q_doc[b, q_idx] == kv_doc[b, kv_idx]``: attend within one packed document."""

    q_doc_ids: torch.Tensor  # (B, Lq)
    kv_doc_ids: torch.Tensor  # (B, Lk)

    def __call__(self, b, h, q_idx, kv_idx):
        if self.q_doc_ids.shape[0] > 1:
            check_index_batch(b, self.q_doc_ids.shape[0], "document(doc_ids)")
        q_doc = self.q_doc_ids.to(q_idx.device)
        kv_doc = self.kv_doc_ids.to(kv_idx.device)
        # b broadcasts over the batch rows; a (1, L) id tensor serves every batch
        # and keeps the result's batch dim at size 1.
        if q_doc.shape[0] == 1:
            b = torch.zeros((1,) * b.dim(), dtype=b.dtype, device=b.device)
        return q_doc[b, q_idx] == kv_doc[b, kv_idx]

    def tile_kinds(self, tiles):
        def ranges(ids: torch.Tensor, block: int) -> tuple[torch.Tensor, torch.Tensor]:
            """Smallest and largest id in each block of positions: two ``(B, n)``."""
            pad = (-ids.shape[1]) % block
            lo = torch.nn.functional.pad(ids, (0, pad), value=int(ids.max()))
            hi = torch.nn.functional.pad(ids, (0, pad), value=int(ids.min()))
            return (lo.view(ids.shape[0], -1, block).amin(-1),
                    hi.view(ids.shape[0], -1, block).amax(-1))

        device = tiles.q_first.device
        q_lo, q_hi = ranges(self.q_doc_ids.to(device), tiles.block_q)
        kv_lo, kv_hi = ranges(self.kv_doc_ids.to(device), tiles.block_k)
        q_lo, q_hi = q_lo[:, :, None], q_hi[:, :, None]  # (B, nq, 1)
        kv_lo, kv_hi = kv_lo[:, None, :], kv_hi[:, None, :]  # (B, 1, nk)
        # Disjoint id ranges cannot share a document; a single shared id is full.
        # Anything else is only "maybe partial" (ids need not be sorted).
        empty = (q_hi < kv_lo) | (kv_hi < q_lo)
        full = (q_lo == q_hi) & (kv_lo == kv_hi) & (q_lo == kv_lo)
        return classify(full, empty)[:, None], False  # (B, 1, nq, nk)

    def check_shapes(self, batch, q_len, kv_len):
        q_ids, kv_ids = self.q_doc_ids, self.kv_doc_ids
        if q_ids.shape[1] != q_len or kv_ids.shape[1] != kv_len:
            raise ValueError(f"document(doc_ids) covers {q_ids.shape[1]} query and "
                             f"{kv_ids.shape[1]} key positions, but Lq = {q_len} and "
                             f"Lk = {kv_len}; pass one id per position")
        check_rows(q_ids, batch, "document(doc_ids)")

    def kernel_terms(self, batch, q_len, kv_len, fields):
        if ("q_doc_ids" in fields or self.q_doc_ids.shape[1] != q_len
                or self.kv_doc_ids.shape[1] != kv_len
                or self.q_doc_ids.shape[0] not in (1, batch)):
            return "document ids do not match (B, Lq) and (B, Lk)"
        fields["q_doc_ids"] = self.q_doc_ids.expand(batch, -1)
        fields["kv_doc_ids"] = self.kv_doc_ids.expand(batch, -1)
        return None


def document(doc_ids: torch.Tensor, kv_doc_ids: torch.Tensor | None = None) -> Document:
    """Packed sequences: a query attends only to keys of the same document.

    Args:
        doc_ids: ``(L,)`` or ``(B, L)`` integer document id of every query position
            (and of every key position when ``kv_doc_ids`` is None).
        kv_doc_ids: ``(Lk,)`` or ``(B, Lk)`` document ids of the keys, when they
            differ from the queries' (e.g. cross-attention between packed batches).

    Combine with :func:`~attnkit.masks.causal` for packed causal language modelling:
    ``document(ids) & causal()``.
    """
    doc_ids = as_index_tensor(doc_ids, "doc_ids", (1, 2))
    kv = doc_ids if kv_doc_ids is None else as_index_tensor(kv_doc_ids, "kv_doc_ids", (1, 2))
    doc_ids = doc_ids if doc_ids.dim() == 2 else doc_ids[None]
    kv = kv if kv.dim() == 2 else kv[None]
    if doc_ids.shape[0] != kv.shape[0] and 1 not in (doc_ids.shape[0], kv.shape[0]):
        raise ValueError(f"doc_ids batch size {doc_ids.shape[0]} and kv_doc_ids batch size "
                         f"{kv.shape[0]} differ")
    batch = max(doc_ids.shape[0], kv.shape[0])
    return Document(doc_ids.expand(batch, -1), kv.expand(batch, -1))
