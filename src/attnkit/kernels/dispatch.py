"""Backend selection: which implementation runs a given attention call, and why.

Every backend declares what it cannot do as a function ``Problem -> reason or
None``. :func:`choose` walks the preference order and returns the first backend
with no objection, together with every other backend's reason, so
``attnkit.explain`` can report the decision as data instead of warnings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

__all__ = ["Problem", "Decision", "BACKENDS", "AUTO_ORDER", "choose"]


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
    return_weights: bool
    dropout_p: float
    requires_grad: bool


@dataclasses.dataclass(frozen=True)
class Decision:
    """The backend that runs and, for every backend that does not, the reason."""

    backend: str
    refused: dict[str, str]

    def __str__(self) -> str:
        lines = [f"runs on: {self.backend}"]
        lines += [f"  {name}: {reason}" for name, reason in self.refused.items()]
        return "\n".join(lines)


def _reference_refusal(p: Problem) -> str | None:
    return None  # the oracle handles every documented case


def _sdpa_refusal(p: Problem) -> str | None:
    if p.return_weights:
        return "return_weights=True: SDPA does not expose the attention weights"
    if p.score_mod:
        return "a score_mod rewrites the logits; SDPA only takes a boolean or additive mask"
    if p.dtype == torch.float64 and p.device_type == "cuda":
        return "float64 on CUDA runs SDPA's unfused math path; the reference is as fast and exact"
    return None


BACKENDS: dict[str, Callable[[Problem], str | None]] = {
    "reference": _reference_refusal,
    "sdpa": _sdpa_refusal,
}

# Preference order for backend="auto": the first backend without a refusal runs.
AUTO_ORDER: tuple[str, ...] = ("sdpa", "reference")


def choose(problem: Problem, backend: str = "auto") -> Decision:
    """Pick the backend for ``problem``.

    Args:
        backend: ``"auto"`` or the name of a backend in :data:`BACKENDS`.

    Raises:
        ValueError: an unknown backend name, or a named backend that refuses the
            problem (the message gives its reason).
    """
    if backend != "auto" and backend not in BACKENDS:
        raise ValueError(f"backend must be 'auto' or one of {sorted(BACKENDS)}, got {backend!r}")
    refusals = {name: BACKENDS[name](problem) for name in BACKENDS}
    if backend != "auto":
        reason = refusals[backend]
        if reason is not None:
            raise ValueError(f"backend={backend!r} cannot run this call: {reason}")
        chosen = backend
    else:
        chosen = next(name for name in AUTO_ORDER if refusals[name] is None)
    refused = {name: (reason if reason is not None else
                      ("not requested" if backend != "auto" else f"{chosen} is preferred"))
               for name, reason in refusals.items() if name != chosen}
    return Decision(chosen, refused)
