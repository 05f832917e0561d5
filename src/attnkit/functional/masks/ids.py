"""Integer tensors carried by masks (lengths, prefix lengths, document ids): conversion
and the check that their batch rows fit the call."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["as_index_tensor", "check_index_batch", "check_rows"]


def as_index_tensor(value: Any, name: str, ndim: tuple[int, ...]) -> torch.Tensor:
    """``value`` as an integer tensor of one of the ranks ``ndim`` (TypeError/ValueError
    naming ``name`` otherwise)."""
    if not isinstance(value, torch.Tensor):
        try:
            value = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(
                f"{name} must be an integer tensor, got {type(value).__name__}") from exc
    if value.dtype == torch.bool or value.is_floating_point() or value.is_complex():
        raise TypeError(f"{name} must be an integer tensor, got dtype {value.dtype}")
    if value.dim() not in ndim:
        raise ValueError(f"{name} must have {' or '.join(map(str, ndim))} dims, got shape "
                         f"{tuple(value.shape)}")
    return value


def check_index_batch(b: torch.Tensor, size: int, who: str) -> None:
    """Inside a mask_mod call: the batch index grid ``b`` must not exceed ``size`` rows."""
    batch = b.numel()
    if batch > size:
        raise ValueError(f"{who} holds {size} batch rows but attention has batch size {batch}")


def check_rows(tensor: torch.Tensor, batch: int, who: str) -> None:
    """A per-batch tensor must hold 1 or ``batch`` rows."""
    if tensor.shape[0] not in (1, batch):
        raise ValueError(f"{who} holds {tensor.shape[0]} batch rows but attention has "
                         f"batch size {batch}")
