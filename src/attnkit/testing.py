"""The numerical acceptance rule shared by the test suite and ``attnkit check``.

Every fast path is compared three ways (DESIGN.md section 4): a float64 golden
run of the reference backend, the reference in the test dtype, and the
candidate in the test dtype. The candidate passes when its max abs error against
the golden run is at most ``max(FLOORS[dtype] * max(1, |golden|), factor * reference
error)``, with
factor :data:`FORWARD_FACTOR` for outputs and :data:`BACKWARD_FACTOR` for
gradients. This module holds the one tolerance table; ``tests/conftest.py``
re-exports it.
"""

from __future__ import annotations

import torch

__all__ = ["FORWARD_FACTOR", "BACKWARD_FACTOR", "FLOORS", "DTYPES", "max_error",
           "oracle_check", "assert_oracle_close"]

FORWARD_FACTOR = 2.0
BACKWARD_FACTOR = 3.0

# Error floors per dtype, in units of the golden result's magnitude
# max(1, |golden|_max): about 8 ulps in float32/float64 and 2 ulps in the half
# types. They only matter when the same-dtype reference happens to be (almost)
# correctly rounded, so that "2x its error" would demand better than rounding;
# gradients reach magnitudes of several units, hence the relative scale.
FLOORS: dict[torch.dtype, float] = {
    torch.float64: 1e-12,
    torch.float32: 1e-6,
    torch.float16: 2e-3,
    torch.bfloat16: 1.6e-2,
}


# The dtypes every numerics test and ``attnkit check`` run a candidate in.
DTYPES: list[torch.dtype] = [torch.float32, torch.bfloat16, torch.float16]


def max_error(candidate: torch.Tensor, golden: torch.Tensor) -> float:
    """Max abs difference, computed in float64 (0 for empty tensors)."""
    difference = (candidate.detach().double() - golden.detach().double()).abs()
    return difference.max().item() if difference.numel() else 0.0


def oracle_check(candidate: torch.Tensor, reference: torch.Tensor, golden: torch.Tensor, *,
                 kind: str = "forward") -> tuple[float, float, bool]:
    """Returns ``(candidate error, allowed error, passed)``; non-finite values fail."""
    if kind not in ("forward", "backward"):
        raise ValueError(f"kind must be 'forward' or 'backward', got {kind!r}")
    factor = FORWARD_FACTOR if kind == "forward" else BACKWARD_FACTOR
    magnitude = max(1.0, golden.detach().abs().max().item()) if golden.numel() else 1.0
    allowed = max(FLOORS[candidate.dtype] * magnitude, factor * max_error(reference, golden))
    if candidate.shape != golden.shape or not torch.isfinite(candidate).all():
        return float("inf"), allowed, False
    error = max_error(candidate, golden)
    return error, allowed, error <= allowed


def assert_oracle_close(candidate: torch.Tensor, reference: torch.Tensor, golden: torch.Tensor,
                        *, kind: str = "forward", what: str = "output") -> None:
    """Assert the three-way rule; the message gives both errors and the factor."""
    assert candidate.shape == golden.shape, f"{what}: shape {candidate.shape} != {golden.shape}"
    assert torch.isfinite(candidate).all(), f"{what}: non-finite values in the candidate"
    error, allowed, ok = oracle_check(candidate, reference, golden, kind=kind)
    assert ok, (f"{what} ({kind}, {candidate.dtype}): error {error:.3e} vs golden exceeds "
                f"{allowed:.3e} (same-dtype reference error {max_error(reference, golden):.3e})")
