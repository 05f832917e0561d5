"""Shared test configuration. The tolerance table lives in :mod:`attnkit.testing`
(so ``attnkit check`` applies the same rule) and is re-exported here.

Numerics are checked three ways: a float64 golden run of the reference, the
reference in the test dtype, and the candidate in the test dtype. The candidate's
max error against the golden run must be at most
``max(floor[dtype] * max(1, |golden|), factor * same-dtype reference error)``, factor 2 for
outputs and 3 for gradients. The floor only matters when the reference happens
to be (almost) exact, e.g. tiny problems in float32.
"""

from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():
    # The Triton kernels run on CPU tensors only in Triton's interpreter, and Triton
    # reads this variable when it first defines jit functions (importing
    # torch.nn.attention imports triton), so it must be set before any test module
    # is imported. attnkit's auto dispatch never picks the interpreter itself.
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Keras reads its backend once, at first import: the parity tests need torch's.
os.environ["KERAS_BACKEND"] = "torch"

import pytest  # noqa: E402

# Re-exported for older test modules; new ones import attnkit.testing directly, because
# another folder's conftest.py may be the module that `import conftest` finds.
from attnkit.testing import (  # noqa: F401, E402
    BACKWARD_FACTOR,
    DTYPES,
    FLOORS,
    FORWARD_FACTOR,
    assert_oracle_close,
    max_error,
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
