"""sparsemax: hand-solved cases, an independent bisection oracle, the paper's
Jacobian, and the masking conventions shared with masked_softmax."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnkit.functional.normalizers import masked_softmax
from attnkit.functional.sparsemax import sparsemax
from attnkit.testing import FLOORS


def bisection_oracle(z: torch.Tensor) -> torch.Tensor:
    """Projection onto the simplex by bisecting on the threshold: ``sum max(z - tau, 0)``
    decreases in ``tau`` from >= 1 at ``max(z) - 1`` to 0 at ``max(z)``. Shares nothing
    with the sort-based algorithm under test. ``z (..., n)`` float64, no masking."""
    lo = z.amax(dim=-1, keepdim=True) - 1.0
    hi = z.amax(dim=-1, keepdim=True)
    for _ in range(200):
        mid = (lo + hi) / 2
        too_much = (z - mid).clamp(min=0).sum(dim=-1, keepdim=True) > 1.0
        lo = torch.where(too_much, mid, lo)
        hi = torch.where(too_much, hi, mid)
    return (z - (lo + hi) / 2).clamp(min=0)


@pytest.mark.parametrize("scores, expected", [
    # sorted 1, .5, -1: k=2 passes (1 + 2*.5 = 2 > 1.5), k=3 fails (1 - 3 < .5);
    # tau = (1.5 - 1) / 2 = .25.
    ([1.0, 0.5, -1.0], [0.75, 0.25, 0.0]),
    # k=2 fails (1 + 2*0 = 1 < 2): tau = 2 - 1 = 1, a one-hot result.
    ([2.0, 0.0], [1.0, 0.0]),
    # the whole row is the support: tau = (.4 - 1) / 2 = -.3.
    ([0.3, 0.1], [0.6, 0.4]),
    # ties: uniform, tau = -1/3.
    ([0.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]),
    # sorted .9, .8, .1, -2: k=2 passes (1 + 1.6 = 2.6 > 1.7), k=3 fails (1.3 < 1.8);
    # tau = (1.7 - 1) / 2 = .35.
    ([0.1, 0.9, -2.0, 0.8], [0.0, 0.55, 0.0, 0.45]),
])
def test_hand_solved(scores, expected):
    out = sparsemax(torch.tensor(scores, dtype=torch.float64))
    torch.testing.assert_close(out, torch.tensor(expected, dtype=torch.float64))


def test_hand_solved_gradient():
    # Support of [1, .5, -1] is {0, 1}: grad = s * (g - mean_S g) = [1 - .5, 0 - .5, 0].
    z = torch.tensor([1.0, 0.5, -1.0], dtype=torch.float64, requires_grad=True)
    sparsemax(z).backward(torch.tensor([1.0, 0.0, 5.0], dtype=torch.float64))
    torch.testing.assert_close(z.grad, torch.tensor([0.5, -0.5, 0.0], dtype=torch.float64))


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 4), n=st.integers(1, 12), spread=st.floats(0.01, 10.0),
       seed=st.integers(0, 2**31 - 1))
def test_matches_bisection_oracle(rows, n, spread, seed):
    z = torch.randn(rows, n, generator=torch.Generator().manual_seed(seed),
                    dtype=torch.float64) * spread
    out = sparsemax(z)
    torch.testing.assert_close(out, bisection_oracle(z), atol=1e-12, rtol=0)
    assert (out >= 0).all()
    torch.testing.assert_close(out.sum(-1), torch.ones(rows, dtype=torch.float64))


def test_is_the_closest_point_of_the_simplex():
    z = torch.randn(6, dtype=torch.float64) * 2
    p = sparsemax(z)
    others = torch.distributions.Dirichlet(torch.ones(6, dtype=torch.float64)).sample((2000,))
    assert ((others - z).norm(dim=-1) >= (p - z).norm() - 1e-12).all()


def test_sparse_where_softmax_is_dense():
    z = torch.tensor([3.0, 2.5, 0.0, -1.0, -4.0])
    p = sparsemax(z)
    assert (p == 0).sum() == 3  # exact zeros, which softmax never produces
    assert (torch.softmax(z, -1) > 0).all()
    torch.testing.assert_close(p.sum(), torch.tensor(1.0))


def test_limits_shared_with_softmax():
    z = torch.randn(4, 7, dtype=torch.float64)
    # Translation invariance, as softmax.
    torch.testing.assert_close(sparsemax(z + 3.7), sparsemax(z))
    # Temperature -> 0: both tend to the one-hot argmax (sparsemax reaches it exactly
    # once the gap to the runner-up exceeds 1).
    one_hot = torch.nn.functional.one_hot(z.argmax(-1), 7).double()
    torch.testing.assert_close(sparsemax(z * 1e4), one_hot)
    torch.testing.assert_close(masked_softmax(z * 1e4), one_hot)
    # Temperature -> infinity: both tend to uniform along the same direction. Once
    # every entry is in the support sparsemax is exactly 1/n + (z - mean z); softmax
    # is 1/n + (z - mean z) / n to first order.
    small = z * 1e-3
    centered = small - small.mean(-1, keepdim=True)
    torch.testing.assert_close(sparsemax(small), 1 / 7 + centered)
    torch.testing.assert_close(masked_softmax(small), 1 / 7 + centered / 7, atol=1e-5, rtol=0)
    # Two entries: softmax([t, 0])[0] is sigmoid(t); sparsemax gives the "hard sigmoid"
    # clip((t + 1) / 2, 0, 1), which agrees with it at t = 0 and as t -> +-infinity.
    t = torch.linspace(-3, 3, 13, dtype=torch.float64)
    two = sparsemax(torch.stack([t, torch.zeros_like(t)], -1))[:, 0]
    torch.testing.assert_close(two, ((t + 1) / 2).clamp(0, 1))


def test_jacobian_is_the_papers():
    # J = diag(s) - s s^T / |S| (Martins & Astudillo, eq. 11).
    z = torch.tensor([0.8, 0.1, 0.6, -1.0, 0.7], dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(sparsemax, z)
    s = (sparsemax(z) > 0).double()
    torch.testing.assert_close(jac, torch.diag(s) - torch.outer(s, s) / s.sum())


def test_gradcheck_float64_with_mask_and_empty_row():
    gen = torch.Generator().manual_seed(3)
    z = torch.randn(4, 3, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(4, 1, 6, generator=gen) > 0.3
    mask[2] = False  # an empty row
    assert torch.autograd.gradcheck(lambda s: sparsemax(s, mask), (z,))
    assert torch.autograd.gradcheck(lambda s: sparsemax(s, dim=1), (z,))
    assert torch.autograd.gradgradcheck(lambda s: sparsemax(s, dim=1), (z,)) is not None


def test_mask_conventions():
    z = torch.randn(3, 5, requires_grad=True)
    mask = torch.tensor([[True, False, True, True, False],
                         [False] * 5,
                         [True] * 5])
    p = sparsemax(z, mask)
    assert (p[~mask] == 0).all()
    torch.testing.assert_close(p[0].sum(), torch.tensor(1.0))
    assert (p[1] == 0).all()
    # Masked entries behave as if absent.
    torch.testing.assert_close(p[0, mask[0]], sparsemax(z[0, mask[0]]))
    (p * torch.randn(3, 5)).sum().backward()
    assert torch.isfinite(z.grad).all()
    assert (z.grad[~mask] == 0).all()


def test_minus_inf_counts_as_masked():
    z = torch.tensor([[0.2, float("-inf"), 0.1], [float("-inf")] * 3], requires_grad=True)
    p = sparsemax(z)
    torch.testing.assert_close(p, torch.tensor([[0.55, 0.0, 0.45], [0.0, 0.0, 0.0]]))
    p.sum().backward()
    assert torch.isfinite(z.grad).all()


def test_broadcast_mask_like_masked_softmax():
    z = torch.randn(2, 3, 4, 6)
    mask = torch.ones(4, 6, dtype=torch.bool).tril()
    p = sparsemax(z, mask)
    assert p.shape == z.shape
    assert (p[..., ~mask] == 0).all()
    torch.testing.assert_close(p.sum(-1), torch.ones(2, 3, 4))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_computed_in_float32(dtype):
    z = torch.randn(8, 33) * 3
    p = sparsemax(z.to(dtype))
    assert p.dtype == dtype
    # Only the input and output roundings differ from the float32 run.
    golden = sparsemax(z.to(dtype).double())
    assert (p.double() - golden).abs().max() <= FLOORS[dtype]


def test_any_dim():
    z = torch.randn(3, 7, 5, dtype=torch.float64)
    torch.testing.assert_close(sparsemax(z, dim=1), sparsemax(z.transpose(1, 2)).transpose(1, 2))
    torch.testing.assert_close(sparsemax(z, dim=0), sparsemax(z, dim=-3))


def test_errors_name_the_argument():
    with pytest.raises(TypeError, match="mask"):
        sparsemax(torch.randn(3), torch.ones(3))
    with pytest.raises(ValueError, match="mask"):
        sparsemax(torch.randn(2, 3), torch.ones(2, 3, 3, dtype=torch.bool))
    with pytest.raises(TypeError, match="scores"):
        sparsemax(torch.arange(3))
    with pytest.raises(ValueError, match="dim"):
        sparsemax(torch.randn(2, 3), dim=2)
