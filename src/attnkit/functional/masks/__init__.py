"""Structured attention masks as ``mask_mod`` predicates.

A ``mask_mod`` is a callable ``mask_mod(b, h, q_idx, kv_idx) -> bool tensor`` that
says whether query ``q_idx`` of batch ``b`` and head ``h`` **may attend** to key
``kv_idx`` (True = may attend, the polarity used everywhere in attnkit). It is
called with broadcastable integer index tensors, e.g. ``b: (B, 1, 1, 1)``,
``h: (1, H, 1, 1)``, ``q_idx: (1, 1, Lq, 1)``, ``kv_idx: (1, 1, 1, Lk)``, and must
return a boolean tensor broadcastable to ``(B, H, Lq, Lk)``; a predicate that
ignores ``b`` and ``h`` yields a ``(1, 1, Lq, Lk)`` result, which keeps
materialized masks small. The idea and signature follow PyTorch's FlexAttention
(``torch.nn.attention.flex_attention``).

Constructors return small :class:`MaskMod` objects: they are plain callables,
compose with ``&``, ``|`` and ``~`` (or :func:`and_masks`, :func:`or_masks`,
:func:`not_mask`), and answer the kernels' questions themselves (tile kinds, shape
checks, a plain-number description). Any other callable with the same signature is
accepted too.

Files, one concept each: ``base.py`` (the type and its algebra), ``diagonal.py``
(causal, sliding window, and the 0/1 picture of both causal alignments),
``padding.py``, ``prefix.py``, ``document.py``, ``evaluate.py`` (index grids,
materialization), ``block_map.py`` (tile classification), ``ids.py``.
"""

from attnkit.functional.masks.base import MaskMod, and_masks, not_mask, or_masks
from attnkit.functional.masks.block_map import BlockMap, block_map
from attnkit.functional.masks.diagonal import ALIGNMENTS, causal, sliding_window
from attnkit.functional.masks.document import document
from attnkit.functional.masks.evaluate import check_mask_mod, index_grids, materialize
from attnkit.functional.masks.padding import key_padding
from attnkit.functional.masks.prefix import prefix_lm
from attnkit.kernels.spec import EMPTY, FULL, PARTIAL

__all__ = [
    "MaskMod",
    "BlockMap",
    "EMPTY",
    "PARTIAL",
    "FULL",
    "ALIGNMENTS",
    "causal",
    "sliding_window",
    "key_padding",
    "document",
    "prefix_lm",
    "and_masks",
    "or_masks",
    "not_mask",
    "materialize",
    "block_map",
    "index_grids",
    "check_mask_mod",
]
