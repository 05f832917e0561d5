"""A backend as a registry entry: its name, what it refuses, how it runs, how much it wants
a call.

A backend module in :mod:`attnkit.kernels` defines one :class:`Backend` named ``BACKEND``
and :mod:`attnkit.kernels.registry` lists it. ``attention()``, ``explain()``, the
``auto`` policy and the ``attnkit check`` command all iterate the registry; none of them
names a backend.

A backend never sees the user's arguments. It gets the validated tensors and a
:class:`KernelCall`, the functional layer's description of the rest of the call, which
offers each view of the mask a kernel may need (dense, per tile, plain numbers).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Protocol

import torch

from attnkit.kernels.problem import Problem
from attnkit.kernels.spec import KernelSpec

__all__ = ["Backend", "Bid", "KernelCall", "always_available"]


class KernelCall(Protocol):
    """The call as a backend sees it (implemented by ``attnkit.functional._plan.CallPlan``).

    Shapes: ``q (B, Hq, Lq, D)``, ``k (B, Hkv, Lk, D)``, ``v (B, Hkv, Lk, Dv)``.
    """

    scale: float  # logit multiplier, finite (may be 0 or negative)
    dropout_p: float  # in [0, 1)
    return_weights: bool
    alignment: str | None  # None, "upper_left" or "lower_right"
    q_len: int
    kv_len: int

    @property
    def has_mask(self) -> bool:
        """Whether the user gave a mask (tensor or mask_mod), causal aside."""

    def dense_mask(self) -> torch.Tensor | None:
        """Mask and causal as one bool tensor broadcastable to ``(B, Hq, Lq, Lk)``."""

    def score(self, scores: torch.Tensor, q0: int = 0, k0: int = 0) -> torch.Tensor:
        """The checked score_mod applied to logits ``(B, Hq, rows, cols)`` whose first row
        is query ``q0`` and first column key ``k0`` (identity without a score_mod)."""

    def normalize(self, scores: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Weights from logits along the last axis (softmax or sparsemax)."""

    def tile_fns(self, block_q: int, block_k: int):
        """Per-tile mask, score function and tile plan (:class:`~.tiled.TileFns`)."""

    def captured(self) -> list[torch.Tensor]:
        """Tensors the score_mod reads that need gradients."""

    def kernel_spec(self) -> KernelSpec | str:
        """The mask and score_mod as plain numbers, or why they have no such form."""

    def weights_from_lse(self, lse: torch.Tensor) -> torch.Tensor:
        """Exact weights ``(B, Hq, Lq, Lk)`` rebuilt from a fused forward's ``lse``."""


@dataclasses.dataclass(frozen=True)
class Bid:
    """How much a backend wants a call under ``backend="auto"``: the highest ``score``
    among the backends that do not refuse wins (ties go to the earlier registry entry).
    ``why`` explains the score; ``explain()`` shows it to the losers."""

    score: int
    why: str


def always_available() -> str | None:
    return None


@dataclasses.dataclass(frozen=True)
class Backend:
    """One attention implementation.

    Attributes:
        name: the ``backend=`` value that selects it.
        summary: one line for help texts and the architecture page.
        refusal: ``Problem -> reason or None``: why it cannot run a call.
        run: ``(q, k, v, call: KernelCall) -> (out (B, Hq, Lq, Dv), weights or None)``.
        bid: ``Problem -> Bid``: its claim on a call it accepts, for ``backend="auto"``.
        availability: ``() -> reason or None``: why it cannot run on this machine at
            all (a missing optional dependency, no device), for the command line.
    """

    name: str
    summary: str
    refusal: Callable[[Problem], str | None]
    run: Callable[..., tuple[torch.Tensor, torch.Tensor | None]]
    bid: Callable[[Problem], Bid]
    availability: Callable[[], str | None] = always_available
