"""Squeeze-and-Excitation and CBAM: hand-computed gates with set weights, shapes,
errors and bfloat16 runs."""

from __future__ import annotations

import pytest
import torch

from attnkit.nn.vision.cbam import CBAM, ChannelAttention, SpatialAttention
from attnkit.nn.vision.squeeze_excitation import SqueezeExcitation


def sig(x: float) -> float:
    return float(torch.sigmoid(torch.tensor(x, dtype=torch.float64)))


@torch.no_grad()
def set_linear(layer: torch.nn.Linear, weight, bias=None) -> None:
    layer.weight.copy_(torch.tensor(weight))
    if layer.bias is not None:
        layer.bias.copy_(torch.tensor(bias if bias is not None else [0.0] * len(weight)))


def two_channel_image() -> torch.Tensor:
    # Channel 0: [[0, 2], [0, 2]] (mean 1, max 2); channel 1: all 3 (mean 3, max 3).
    return torch.tensor([[[[0.0, 2.0], [0.0, 2.0]], [[3.0, 3.0], [3.0, 3.0]]]],
                        dtype=torch.float64)


def test_squeeze_excitation_by_hand():
    se = SqueezeExcitation(2, reduction=2).double()  # hidden width 1
    set_linear(se.fc1, [[1.0, 1.0]], [-1.0])
    set_linear(se.fc2, [[1.0], [-1.0]], [0.0, 0.5])
    x = two_channel_image()
    # squeeze: means [1, 3]; fc1: 1 + 3 - 1 = 3; relu 3; fc2: [3, -3 + .5].
    gates = torch.tensor([sig(3.0), sig(-2.5)], dtype=torch.float64)
    torch.testing.assert_close(se.gate(x).flatten(), gates)
    torch.testing.assert_close(se(x), x * gates[None, :, None, None])


def test_squeeze_excitation_relu_cuts_negative_hidden():
    se = SqueezeExcitation(2, hidden_channels=1).double()
    set_linear(se.fc1, [[-1.0, -1.0]], [0.0])  # hidden = relu(-4) = 0
    set_linear(se.fc2, [[5.0], [5.0]], [0.0, 1.0])
    torch.testing.assert_close(se.gate(two_channel_image()).flatten(),
                               torch.tensor([0.5, sig(1.0)], dtype=torch.float64))


def test_channel_attention_sums_the_shared_mlp_over_avg_and_max():
    ca = ChannelAttention(2, hidden_channels=1).double()
    set_linear(ca.fc1, [[1.0, 0.0]], [0.0])  # reads channel 0 only
    set_linear(ca.fc2, [[1.0], [2.0]], [0.0, -1.0])
    x = two_channel_image()
    # avg [1, 3] -> hidden 1 -> [1, 2 - 1]; max [2, 3] -> hidden 2 -> [2, 4 - 1];
    # sum [3, 4] (the output bias counts twice, as in the paper's two MLP passes).
    gates = torch.tensor([sig(3.0), sig(4.0)], dtype=torch.float64)
    torch.testing.assert_close(ca.gate(x).flatten(), gates)
    torch.testing.assert_close(ca(x), x * gates[None, :, None, None])


def test_spatial_attention_one_by_one_kernel_by_hand():
    sa = SpatialAttention(kernel_size=1).double()
    with torch.no_grad():
        sa.conv.weight.copy_(torch.tensor([[[[0.5]], [[-1.0]]]]))  # 0.5 mean - 1 max
        sa.conv.bias.fill_(0.25)
    x = two_channel_image()
    # Per pixel: channel mean and max of (0, 3) and (2, 3).
    mean = torch.tensor([[1.5, 2.5], [1.5, 2.5]], dtype=torch.float64)
    peak = torch.tensor([[3.0, 3.0], [3.0, 3.0]], dtype=torch.float64)
    gate = torch.sigmoid(0.5 * mean - peak + 0.25)
    torch.testing.assert_close(sa.gate(x)[0, 0], gate)
    torch.testing.assert_close(sa(x), x * gate)


def test_spatial_attention_pads_with_zeros():
    # A 3x3 kernel whose only tap reads the channel mean one row above: the top row
    # sees the zero padding, so its gate is sigmoid(0) = 0.5.
    sa = SpatialAttention(kernel_size=3, bias=False).double()
    with torch.no_grad():
        sa.conv.weight.zero_()
        sa.conv.weight[0, 0, 0, 1] = 1.0
    x = torch.arange(12, dtype=torch.float64).reshape(1, 1, 3, 4)
    gate = sa.gate(x)[0, 0]
    torch.testing.assert_close(gate[0], torch.full((4,), 0.5, dtype=torch.float64))
    torch.testing.assert_close(gate[1:], torch.sigmoid(x[0, 0, :-1]))


def test_cbam_is_channel_then_spatial():
    torch.manual_seed(0)
    cbam = CBAM(8, reduction=4, kernel_size=3).double()
    x = torch.randn(2, 8, 5, 6, dtype=torch.float64)
    refined = x * cbam.channel.gate(x)
    expected = refined * cbam.spatial.gate(refined)
    torch.testing.assert_close(cbam(x), expected)
    # The other order differs, so the test above does pin the order down.
    swapped = x * cbam.spatial.gate(x)
    assert not torch.allclose(swapped * cbam.channel.gate(swapped), expected)


@pytest.mark.parametrize("module", [
    SqueezeExcitation(32, reduction=16), ChannelAttention(32, reduction=8),
    SpatialAttention(7), CBAM(32, reduction=16, kernel_size=7)])
@pytest.mark.parametrize("hw", [(1, 1), (7, 5)])
def test_shapes_and_gate_range(module, hw):
    x = torch.randn(3, 32, *hw)
    out = module(x)
    assert out.shape == x.shape
    if hasattr(module, "gate"):
        gate = module.gate(x)
        assert ((gate > 0) & (gate < 1)).all()
    # A gate in (0, 1) only shrinks: |out| <= |x| elementwise.
    assert (out.abs() <= x.abs() + 1e-6).all()


def test_hidden_width():
    assert SqueezeExcitation(64, reduction=16).fc1.out_features == 4
    assert SqueezeExcitation(8, reduction=16).fc1.out_features == 1
    assert ChannelAttention(64, reduction=4).fc1.out_features == 16


def test_errors_name_the_argument():
    se, cbam = SqueezeExcitation(8, reduction=2), CBAM(8, reduction=2)
    for module in (se, cbam, SpatialAttention()):
        with pytest.raises(ValueError, match=r"4-D \(B, C, H, W\)"):
            module(torch.randn(8, 5, 5))
    for module in (se, cbam, ChannelAttention(8, 2)):
        with pytest.raises(ValueError, match="channels=8"):
            module(torch.randn(1, 4, 5, 5))
    with pytest.raises(TypeError, match="floating"):
        se(torch.ones(1, 8, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="kernel_size"):
        SpatialAttention(4)
    with pytest.raises(ValueError, match="reduction"):
        SqueezeExcitation(8, reduction=0)
    with pytest.raises(ValueError, match="channels"):
        CBAM(0)
    with pytest.raises(ValueError, match="hidden_channels"):
        ChannelAttention(8, hidden_channels=0)


@pytest.mark.parametrize("make", [lambda: SqueezeExcitation(16, reduction=4),
                                  lambda: CBAM(16, reduction=4, kernel_size=7)])
def test_bfloat16_runs_close_to_float32(make):
    torch.manual_seed(0)
    module = make()
    x = torch.randn(2, 16, 9, 9)
    expected = module(x)
    out = module.to(torch.bfloat16)(x.to(torch.bfloat16))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    # Gates in (0, 1) times inputs of order 1: bfloat16 keeps 8 bits, so a relative
    # error of a few 2^-8 on each factor.
    assert ((out.float() - expected).abs() <= 0.02 * expected.abs() + 0.02).all()
    out.float().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in module.parameters())
