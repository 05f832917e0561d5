"""``masked_softmax``: softmax restricted to allowed positions, empty rows -> 0."""

from __future__ import annotations

import pytest
import torch

from attnkit.functional.normalizers import compute_dtype, masked_softmax

# Rows: ordinary, a single allowed key, empty, everything allowed.
MASK = torch.tensor([
    [True, False, True, True, False],
    [False, False, False, True, False],
    [False, False, False, False, False],
    [True, True, True, True, True],
])


def softmax_of_allowed(row: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Softmax over the allowed entries of one row, zeros elsewhere (all zeros if none)."""
    out = torch.zeros_like(row)
    if allowed.any():
        out[allowed] = torch.softmax(row[allowed], dim=0)
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("dim", [-1, 0, 1], ids=["dim-last", "dim0", "dim1"])
def test_without_mask_matches_torch_softmax(dtype, dim):
    scores = torch.randn(3, 4, 7, dtype=dtype) * 5
    got = masked_softmax(scores, dim=dim)
    assert got.dtype == dtype
    torch.testing.assert_close(got, torch.softmax(scores, dim=dim), rtol=0, atol=0)


def test_with_mask_matches_row_by_row_softmax():
    scores = torch.randn(2, 4, 5, dtype=torch.float64)
    got = masked_softmax(scores, MASK)
    for b in range(2):
        for i in range(4):
            torch.testing.assert_close(got[b, i], softmax_of_allowed(scores[b, i], MASK[i]))


def test_masked_positions_are_exactly_zero_and_rows_sum_to_one():
    scores = torch.randn(3, 4, 5) * 100
    weights = masked_softmax(scores, MASK)
    assert (weights[:, ~MASK] == 0).all()
    assert (weights[:, 2] == 0).all()  # the empty row
    assert weights[:, 1, 3].eq(1).all()  # the single allowed key takes all the weight
    sums = weights.sum(-1)
    torch.testing.assert_close(sums[:, [0, 1, 3]], torch.ones(3, 3))


def test_mask_broadcasts_over_leading_dims_and_keys_mask():
    scores = torch.randn(2, 3, 4, 5)
    key_mask = torch.tensor([True, True, False, True, False])  # (Lk,)
    got = masked_softmax(scores, key_mask)
    expected = masked_softmax(scores, key_mask.expand(2, 3, 4, 5))
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert (got[..., ~key_mask] == 0).all()


def test_minus_inf_scores_count_as_masked():
    scores = torch.tensor([[0.0, float("-inf"), 1.0], [float("-inf")] * 3])
    got = masked_softmax(scores)
    assert torch.isfinite(got).all()
    assert got[1].tolist() == [0.0, 0.0, 0.0]
    assert got[0, 1] == 0
    torch.testing.assert_close(got[0], softmax_of_allowed(scores[0], torch.tensor([1, 0, 1]) > 0))


def test_fully_masked_rows_have_zero_output_and_finite_gradients():
    scores = torch.randn(2, 4, 5, requires_grad=True)
    weights = masked_softmax(scores, MASK)
    assert (weights[:, 2] == 0).all()
    (weights * torch.randn_like(weights)).sum().backward()
    assert torch.isfinite(scores.grad).all()
    assert (scores.grad[:, 2] == 0).all()  # nothing depends on an empty row
    assert (scores.grad[:, ~MASK] == 0).all()  # nor on masked scores
    assert (scores.grad[:, 0, MASK[0]] != 0).any()


def test_all_minus_inf_row_has_finite_gradient():
    scores = torch.full((2, 3), float("-inf"))
    scores[0] = torch.tensor([0.5, -1.0, 2.0])
    scores.requires_grad_()
    weights = masked_softmax(scores)
    weights.sum().backward()
    assert torch.isfinite(scores.grad).all()
    assert (weights[1] == 0).all()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bfloat16", "float16"])
def test_half_precision_is_computed_in_float32_and_cast_back(dtype):
    scores = (torch.randn(3, 4, 5) * 8).to(dtype)
    got = masked_softmax(scores, MASK)
    assert got.dtype == dtype
    expected = masked_softmax(scores.float(), MASK).to(dtype)
    assert torch.equal(got, expected)
    # Exactly the float32 softmax rounded once, not a softmax accumulated in dtype.
    expected_row = torch.softmax(scores[:, 3].float(), dim=-1).to(dtype)
    assert torch.equal(got[:, 3], expected_row)


def test_compute_dtype():
    assert compute_dtype(torch.float64) == torch.float64
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        assert compute_dtype(dtype) == torch.float32


def test_gradcheck_float64():
    scores = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda s: masked_softmax(s, MASK), (scores,))


@pytest.mark.parametrize("mask_dtype", [torch.uint8, torch.int64, torch.float32],
                         ids=["uint8", "int64", "float32"])
def test_non_bool_mask_raises(mask_dtype):
    with pytest.raises(TypeError, match="mask must be a bool tensor"):
        masked_softmax(torch.randn(4, 5), MASK.to(mask_dtype))
