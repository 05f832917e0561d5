"""FastDropout: the drop rate and the scale (the expected output is the input), the
gradient, seeding, the identity cases, other dtypes and argument checks."""

from __future__ import annotations

import pytest
import torch

from attnkit.nn.dropout import FastDropout, fast_dropout


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_rate_and_scale(p):
    torch.manual_seed(0)
    y = fast_dropout(torch.ones(400_001), p)  # not a multiple of 4: the tail is drawn too
    kept = y > 0
    effective = round(p * 65536) / 65536
    # binomial standard deviation on 400,001 draws is at most 0.0008
    assert abs(1 - kept.double().mean().item() - effective) < 0.004
    assert torch.all(y[kept] == 1 / (1 - effective))
    assert abs(y.double().mean().item() - 1) < 0.01


def test_elements_are_independent_across_the_packed_bits():
    """Each int64 draw feeds four elements: neighbours must not be dropped together more
    often than chance."""
    torch.manual_seed(1)
    kept = fast_dropout(torch.ones(4, 100_000), 0.5) > 0
    both = (kept[:, 0::4] & kept[:, 1::4]).double().mean().item()
    assert abs(both - 0.25) < 0.01


def test_gradient_is_the_mask_times_the_scale():
    torch.manual_seed(2)
    x = torch.randn(3, 50, 7, requires_grad=True)
    y = fast_dropout(x, 0.3)
    y.sum().backward()
    scale = 1 / (1 - round(0.3 * 65536) / 65536)
    torch.testing.assert_close(x.grad, (y != 0).float() * scale)
    torch.testing.assert_close(y, x.detach() * x.grad)


def test_seeded_runs_repeat():
    x = torch.randn(1000)
    torch.manual_seed(5)
    a = fast_dropout(x, 0.2)
    torch.manual_seed(5)
    assert torch.equal(a, fast_dropout(x, 0.2))
    assert not torch.equal(a, fast_dropout(x, 0.2))


def test_identity_cases_and_module():
    x = torch.randn(10)
    assert fast_dropout(x, 0.5, training=False) is x
    assert fast_dropout(x, 0.0) is x
    assert torch.equal(fast_dropout(x, 1.0), torch.zeros(10))
    module = FastDropout(0.25)
    assert repr(module) == "FastDropout(p=0.25)" and not list(module.parameters())
    assert module.eval()(x) is x
    y = fast_dropout(x.double(), 0.5)
    assert y.dtype == torch.float64


@pytest.mark.parametrize("p,error", [(-0.1, ValueError), (1.5, ValueError), ("0.1", TypeError),
                                     (float("nan"), ValueError)])
def test_bad_p_names_itself(p, error):
    with pytest.raises(error, match="p"):
        fast_dropout(torch.ones(3), p)
    with pytest.raises(error, match="p"):
        FastDropout(p)
