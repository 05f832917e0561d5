"""Checks of token-id inputs, shared by every model and by the seq2seq decoders.

One rule each (it lives in ``nn`` so that both ``attnkit.models`` and the lower
``attnkit.train.decoding`` can use it):

* token ids: an int64 or int32 tensor of the expected rank, every id in
  ``[0, vocab_size)`` (an id outside the table would be an ``IndexError`` deep in
  ``nn.Embedding``, or a device-side assert on CUDA);
* a source batch: ``src (B, S)`` token ids with ``S >= 1``, and ``src_lengths (B,)``
  int64/int32 on ``src``'s device with every length in ``[1, S]`` (right padding; a
  source has at least one token).

* a float input to a module: the dtype of the module's parameters (outside autocast,
  ``nn.Linear`` would fail deep inside torch with both dtypes but no argument name).

Errors are ``TypeError`` (not a tensor, wrong dtype) or ``ValueError`` (shape, range),
naming the argument, what was received and what was expected.
"""

from __future__ import annotations

import torch

__all__ = ["check_token_ids", "check_source", "check_lengths", "check_dtype", "check_row_index"]

_ID_DTYPES = (torch.int64, torch.int32)
_RANKS: dict[str, int] = {}  # layout text -> rank


def _prefix(who: str | None) -> str:
    return f"{who}: " if who else ""


def check_token_ids(ids: object, name: str, *, layout: str = "(B, L)",
                    vocab_size: int | None = None, who: str | None = None,
                    allow_empty: bool = False) -> torch.Tensor:
    """``ids`` if it is an int64/int32 tensor of ``layout``'s rank with every value in
    ``[0, vocab_size)`` (not checked when ``vocab_size`` is None).

    Args:
        ids: the tensor to check.
        name: the argument's name, for the error.
        layout: the expected shape as text, e.g. ``"(B, L)"`` or ``"(B,)"``; its number
            of comma-separated letters is the required rank.
        vocab_size: the number of embedding rows, or None.
        who: the class or function name that prefixes the error.
        allow_empty: accept a tensor with a zero-sized dimension.
    """
    rank = _RANKS.get(layout)
    if rank is None:  # parsed once per layout: models check their input on every forward
        rank = _RANKS[layout] = len([part for part in layout.strip("()").split(",")
                                     if part.strip()])
    if type(ids) is not torch.Tensor and not isinstance(ids, torch.Tensor):
        raise TypeError(f"{_prefix(who)}{name} must be a torch.Tensor {layout} of token ids, "
                        f"got {type(ids).__name__}")
    if ids.dtype not in _ID_DTYPES:
        raise TypeError(f"{_prefix(who)}{name} must be an integer (int64 or int32) tensor, "
                        f"got dtype {ids.dtype}")
    zero_sized = 0 in ids.shape
    if ids.ndim != rank or (zero_sized and not allow_empty):
        empty = "" if allow_empty else "non-empty "
        raise ValueError(f"{_prefix(who)}{name} must be a {empty}{rank}-D {layout} tensor, got "
                         f"shape {tuple(ids.shape)}")
    if vocab_size is not None and not zero_sized:
        low, high = map(int, torch.aminmax(ids))
        if low < 0 or high >= vocab_size:
            raise ValueError(f"{_prefix(who)}{name} must lie in [0, {vocab_size}) (ids of a "
                             f"{vocab_size}-entry table), got values in [{low}, {high}]")
    return ids


def check_source(src: object, src_lengths: object, *, vocab_size: int | None = None,
                 who: str | None = None, allow_empty: bool = False) -> tuple[int, int]:
    """Check a right-padded source batch and return ``(B, S)``.

    Args:
        src: ``(B, S)`` int64/int32 token ids, ``S >= 1``, ids in ``[0, vocab_size)``.
        src_lengths: ``(B,)`` int64/int32 on ``src``'s device, each in ``[1, S]``.
        vocab_size: the source vocabulary size, or None (ids not range-checked).
        who: the class or function name that prefixes the error.
        allow_empty: accept ``B == 0`` (the decoders return an empty result for it;
            models need at least one sentence).
    """
    check_token_ids(src, "src", layout="(B, S)", vocab_size=vocab_size, who=who,
                    allow_empty=allow_empty)
    batch, width = src.shape
    if width < 1:
        raise ValueError(f"{_prefix(who)}src must have at least one position (S >= 1), got "
                         f"shape {tuple(src.shape)}")
    check_lengths(src_lengths, batch=batch, width=width, device=src.device, who=who)
    return batch, width


def check_lengths(src_lengths: object, *, batch: int, width: int, device: torch.device,
                  who: str | None = None) -> torch.Tensor:
    """``src_lengths`` if it is an int64/int32 ``(batch,)`` tensor on ``device`` with every
    length in ``[1, width]`` (the rule of :func:`check_source`, for callers that hold the
    encoded source ``(B, S, E)`` rather than ``src``)."""
    if not isinstance(src_lengths, torch.Tensor):
        raise TypeError(f"{_prefix(who)}src_lengths must be a torch.Tensor (B,), got "
                        f"{type(src_lengths).__name__}")
    if src_lengths.dtype not in _ID_DTYPES:
        raise TypeError(f"{_prefix(who)}src_lengths must be an integer (int64 or int32) "
                        f"tensor, got dtype {src_lengths.dtype}")
    if tuple(src_lengths.shape) != (batch,):
        raise ValueError(f"{_prefix(who)}src_lengths must have shape (B,) = ({batch},) (the "
                         f"source batch), got {tuple(src_lengths.shape)}")
    if src_lengths.device != torch.device(device):
        raise ValueError(f"{_prefix(who)}src_lengths is on {src_lengths.device} but the source "
                         f"is on {device}")
    if batch:
        low, high = int(src_lengths.min()), int(src_lengths.max())
        if low < 1 or high > width:
            raise ValueError(f"{_prefix(who)}src_lengths must be in [1, S] = [1, {width}], "
                             f"got values in [{low}, {high}]")
    return src_lengths


def check_dtype(x: torch.Tensor, name: str, expected: torch.dtype, *,
                who: str | None = None) -> None:
    """``TypeError`` naming ``name`` unless ``x`` has the parameters' dtype ``expected``.

    Under ``torch.autocast`` on ``x``'s device any floating dtype passes: autocast casts
    the operands of every projection itself.
    """
    if x.dtype == expected:
        return
    if x.is_floating_point() and torch.is_autocast_enabled(x.device.type):
        return
    raise TypeError(f"{_prefix(who)}{name} has dtype {x.dtype} but the module's parameters are "
                    f"{expected}; cast one to the other (e.g. {name}.to({expected}) or "
                    f"module.to({x.dtype}))")


def check_row_index(index: object, batch: int | None, *, who: str | None = None) -> torch.Tensor:
    """``index (B',)``: a non-empty int64/int32 tensor of batch rows in ``[0, batch)`` (range
    unchecked if ``batch`` is None), as beam search passes to ``reorder_state`` and
    ``index_select``; returned as int64."""
    check_token_ids(index, "index", layout="(B',)", who=who)
    if batch is not None:
        low, high = int(index.min()), int(index.max())
        if low < 0 or high >= batch:
            raise ValueError(f"{_prefix(who)}index values must be in [0, {batch}) (the batch "
                             f"size), got min {low}, max {high}")
    return index.long()
