"""Attention rollout (Abnar & Zuidema 2020) on hand-made attention matrices."""

import pytest
import torch

from attnkit.interp.rollout import attention_rollout


def _random_weights(layers, batch, heads, length, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.softmax(torch.randn(batch, heads, length, length, generator=gen), -1)
            for _ in range(layers)]


def test_identity_attention_gives_identity_rollout():
    eye = torch.eye(5).expand(2, 3, 5, 5)
    for residual in (0.0, 0.5, 1.0):
        out = attention_rollout([eye, eye, eye], residual=residual)
        assert out.shape == (2, 5, 5)
        torch.testing.assert_close(out, torch.eye(5).expand(2, 5, 5))


def test_rows_sum_to_one_and_entries_nonnegative():
    out = attention_rollout(_random_weights(4, 3, 2, 7))
    assert (out >= 0).all()
    torch.testing.assert_close(out.sum(-1), torch.ones(3, 7))


def test_single_layer_matches_the_formula_by_hand():
    # two heads on two tokens; mean fusion then 0.5 A + 0.5 I (rows already sum to 1)
    head0 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    head1 = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    weights = torch.stack([head0, head1])[None]  # (1, 2, 2, 2)
    out = attention_rollout([weights])
    expected = torch.tensor([[0.75, 0.25], [0.25, 0.75]])
    torch.testing.assert_close(out[0], expected)


def test_no_residual_is_the_plain_product_in_forward_order():
    a, b = _random_weights(2, 1, 1, 4, seed=3)
    out = attention_rollout([a, b], residual=0.0)
    torch.testing.assert_close(out[0], b[0, 0] @ a[0, 0])
    assert not torch.allclose(out[0], a[0, 0] @ b[0, 0])


def test_residual_one_ignores_attention():
    out = attention_rollout(_random_weights(3, 2, 2, 4), residual=1.0)
    torch.testing.assert_close(out, torch.eye(4).expand(2, 4, 4))


def test_stacked_tensor_equals_sequence_and_float64_kept():
    layers = [w.double() for w in _random_weights(3, 2, 2, 5)]
    out = attention_rollout(torch.stack(layers))
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, attention_rollout(layers))


def test_head_fusion_max_min_differ_from_mean():
    layers = _random_weights(2, 1, 4, 5)
    mean = attention_rollout(layers)
    for fusion in ("max", "min"):
        out = attention_rollout(layers, head_fusion=fusion)
        torch.testing.assert_close(out.sum(-1), torch.ones(1, 5))
        assert not torch.allclose(out, mean)


def test_all_masked_row_becomes_identity_row():
    weights = torch.softmax(torch.randn(1, 1, 3, 3), -1)
    weights[0, 0, 1] = 0.0  # a query row with nothing to attend to
    out = attention_rollout([weights])
    torch.testing.assert_close(out[0, 1], torch.tensor([0.0, 1.0, 0.0]))
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("bad, error", [
    ([], ValueError),
    ("x", TypeError),
    ([torch.ones(2, 3, 3)], ValueError),
    ([torch.ones(1, 1, 3, 4)], ValueError),
    ([torch.ones(1, 1, 3, 3, dtype=torch.long)], TypeError),
    ([torch.ones(1, 1, 3, 3), torch.ones(2, 1, 3, 3)], ValueError),
])
def test_bad_weights_raise(bad, error):
    with pytest.raises(error, match="weights"):
        attention_rollout(bad)


def test_bad_options_name_the_argument():
    eye = [torch.eye(2).expand(1, 1, 2, 2)]
    with pytest.raises(ValueError, match="residual"):
        attention_rollout(eye, residual=1.5)
    with pytest.raises(ValueError, match="head_fusion"):
        attention_rollout(eye, head_fusion="sum")
