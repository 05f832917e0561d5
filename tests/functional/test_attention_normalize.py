"""attention(normalize=...): sparsemax as the normalizer of the functional core."""

from __future__ import annotations

import pytest
import torch

import attnkit
from attnkit.functional import masks, sparsemax


def test_sparsemax_weights_are_sparsemax_of_the_logits():
    q, k, v = (torch.randn(2, 3, 9, 16, dtype=torch.float64) for _ in range(3))
    mask = masks.sliding_window(4)
    out, weights = attnkit.attention(q, k, v, mask=mask, normalize="sparsemax",
                                     return_weights=True)
    logits = q @ k.transpose(-2, -1) / 4.0
    allowed = masks.materialize(mask, 2, 3, 9, 9)
    expected = sparsemax(logits, allowed)
    torch.testing.assert_close(weights, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(out, expected @ v, rtol=0, atol=1e-12)
    assert (weights == 0).any(), "sparsemax should zero some allowed keys here"
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 9, dtype=torch.float64))


def test_sparsemax_empty_rows_and_gradients():
    q, k, v = (torch.randn(1, 2, 6, 8, requires_grad=True) for _ in range(3))
    mask = torch.ones(6, 6, dtype=torch.bool)
    mask[2] = False
    out, weights = attnkit.attention(q, k, v, mask=mask, normalize="sparsemax",
                                     return_weights=True)
    assert torch.equal(out[:, :, 2], torch.zeros_like(out[:, :, 2]))
    assert torch.equal(weights[:, :, 2], torch.zeros_like(weights[:, :, 2]))
    out.sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))


def test_sparsemax_runs_on_reference_and_fused_backends_refuse():
    q = torch.randn(1, 1, 4, 8)
    decision = attnkit.explain(q, q, q, normalize="sparsemax")
    assert decision.backend == "reference"
    assert "softmax" in decision.refused["sdpa"] and "softmax" in decision.refused["tiled"]
    with pytest.raises(ValueError, match="normalize"):
        attnkit.attention(q, q, q, normalize="sparsemax", backend="tiled")


@pytest.mark.parametrize("bad", ["entmax", None, 3])
def test_unknown_normalizer_is_rejected(bad):
    q = torch.randn(1, 1, 4, 8)
    with pytest.raises(ValueError, match="normalize must be one of"):
        attnkit.attention(q, q, q, normalize=bad)
