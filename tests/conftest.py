"""Shared test configuration: the one tolerance table (DESIGN.md section 4).

Numerics are checked three ways: a float64 golden run of the reference, the
reference in the test dtype, and the candidate in the test dtype. The candidate's
max error against the golden run must be at most
``max(floor[dtype], factor * same-dtype reference error)`` with factor 2 for
outputs and 3 for gradients. The floor only matters when the reference happens
to be (almost) exact, e.g. tiny problems in float32.
"""

from __future__ import annotations

import pytest
import torch

FORWARD_FACTOR = 2.0
BACKWARD_FACTOR = 3.0

# Absolute error floors per dtype, for values of order 1 (unit-normal inputs).
# About 8 ulps of 1.0 in float32/float64 and 2 ulps in the half types.
FLOORS: dict[torch.dtype, float] = {
    torch.float64: 1e-12,
    torch.float32: 1e-6,
    torch.float16: 2e-3,
    torch.bfloat16: 1.6e-2,
}

DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def max_error(candidate: torch.Tensor, golden: torch.Tensor) -> float:
    return (candidate.double() - golden.double()).abs().max().item()


def assert_oracle_close(candidate: torch.Tensor, reference: torch.Tensor, golden: torch.Tensor,
                        *, kind: str = "forward", what: str = "output") -> None:
    """Three-way check: ``candidate`` vs ``golden`` within the allowed multiple of
    ``reference`` vs ``golden``. ``kind`` is ``"forward"`` or ``"backward"``."""
    assert candidate.shape == golden.shape, f"{what}: shape {candidate.shape} != {golden.shape}"
    assert torch.isfinite(candidate).all(), f"{what}: non-finite values in the candidate"
    factor = FORWARD_FACTOR if kind == "forward" else BACKWARD_FACTOR
    ref_err = max_error(reference, golden)
    cand_err = max_error(candidate, golden)
    allowed = max(FLOORS[candidate.dtype], factor * ref_err)
    assert cand_err <= allowed, (
        f"{what} ({kind}, {candidate.dtype}): error {cand_err:.3e} vs golden exceeds "
        f"{allowed:.3e} (same-dtype reference error {ref_err:.3e} x {factor})"
    )


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
