"""What a backend is asked to run (:class:`Problem`) and what dispatch answers (:class:`Decision`).

Both are plain data: the functional layer fills a :class:`Problem` from validated
arguments, every backend in :data:`attnkit.kernels.BACKENDS` judges it, and
``attnkit.explain`` returns the :class:`Decision` as data instead of warnings.
"""

from __future__ import annotations

import dataclasses

import torch

__all__ = ["Problem", "Decision"]


@dataclasses.dataclass(frozen=True)
class Problem:
    """Everything about one attention call that decides which backend may run it.

    ``mask`` is ``"none"``, ``"tensor"`` (a dense bool mask) or ``"mask_mod"``;
    ``causal`` is None, ``"upper_left"`` or ``"lower_right"`` (already resolved).
    """

    batch: int
    q_heads: int
    kv_heads: int
    q_len: int
    kv_len: int
    head_dim: int
    v_dim: int
    dtype: torch.dtype
    device_type: str
    mask: str
    causal: str | None
    score_mod: bool
    score_mod_traceable: bool  # its trainable tensors can be found (built-in score mods)
    return_weights: bool
    dropout_p: float
    requires_grad: bool
    block_sparsity: float | None  # fraction of empty tiles of a mask_mod, else None
    normalize: str = "softmax"
    # Why the mask/score_mod has no plain-number description for fused kernels
    # (None when it has one; see attnkit.kernels.spec).
    spec_refusal: str | None = None

    @property
    def elements(self) -> int:
        """Size of the full logit tensor ``B * Hq * Lq * Lk``."""
        return self.batch * self.q_heads * self.q_len * self.kv_len


@dataclasses.dataclass(frozen=True)
class Decision:
    """The backend that runs and, for every backend that does not, the reason."""

    backend: str
    refused: dict[str, str]

    def __str__(self) -> str:
        lines = [f"runs on: {self.backend}"]
        lines += [f"  {name}: {reason}" for name, reason in self.refused.items()]
        return "\n".join(lines)
