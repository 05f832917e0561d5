"""Positional encodings: sinusoidal table, learned embedding, rotary embedding."""

from __future__ import annotations

import math

import pytest
import torch

from attnkit.functional import score_mods
from attnkit.nn.positional import (
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    alibi_slopes,
    sinusoidal_encoding,
)
from attnkit.testing import assert_oracle_close

# --------------------------------------------------------------------------- sinusoidal


@pytest.mark.parametrize("dim", [1, 6, 7, 16])
def test_sinusoidal_matches_paper_formula(dim):
    length = 13
    table = sinusoidal_encoding(length, dim, dtype=torch.float64)
    assert table.shape == (length, dim)
    for pos in range(length):
        for col in range(dim):
            i2 = col - col % 2  # 2i
            angle = pos / 10000.0 ** (i2 / dim)
            expected = math.sin(angle) if col % 2 == 0 else math.cos(angle)
            assert table[pos, col].item() == pytest.approx(expected, abs=1e-12)


def test_sinusoidal_tensor_positions_and_dtype():
    positions = torch.tensor([[0, 5, 2], [9, 1, 3]])
    table = sinusoidal_encoding(positions, 8)  # float32 by default
    assert table.shape == (2, 3, 8) and table.dtype == torch.float32
    full = sinusoidal_encoding(10, 8, dtype=torch.float64)
    torch.testing.assert_close(table.double(), full[positions], atol=1e-7, rtol=0)
    # Fractional positions interpolate the same formula, base is honoured.
    half = sinusoidal_encoding(torch.tensor([0.5]), 4, base=100.0, dtype=torch.float64)
    expected = torch.tensor([math.sin(0.5), math.cos(0.5), math.sin(0.05), math.cos(0.05)],
                            dtype=torch.float64)
    torch.testing.assert_close(half[0], expected)


def test_sinusoidal_large_positions_are_accurate_in_float32():
    # Computed in float64 and rounded once: position 50000 still matches math.sin.
    table = sinusoidal_encoding(torch.tensor([50_000]), 4)
    assert table[0, 0].item() == pytest.approx(math.sin(50_000.0), abs=1e-6)


@pytest.mark.parametrize("args, error, word", [
    ((5, 0), ValueError, "dim"),
    ((5, 2.0), TypeError, "dim"),
    ((-1, 4), ValueError, "positions"),
    ((torch.tensor([True]), 4), TypeError, "positions"),
])
def test_sinusoidal_rejects_bad_arguments(args, error, word):
    with pytest.raises(error, match=word):
        sinusoidal_encoding(*args)


def test_sinusoidal_rejects_bad_base():
    with pytest.raises(ValueError, match="base"):
        sinusoidal_encoding(4, 4, base=1.0)


def test_sinusoidal_module_adds_a_buffer_not_a_parameter():
    module = SinusoidalPositionalEncoding(6, max_len=20)
    assert list(module.parameters()) == []
    assert "table" in dict(module.named_buffers())
    assert "table" not in module.state_dict()
    x = torch.randn(2, 5, 6)
    expected = x + sinusoidal_encoding(20, 6)[3:8]
    torch.testing.assert_close(module(x, offset=3), expected, atol=0, rtol=0)
    half = module(x.bfloat16())
    assert half.dtype == torch.bfloat16


def test_sinusoidal_module_errors():
    module = SinusoidalPositionalEncoding(6, max_len=8)
    module(torch.randn(1, 8, 6))  # exactly max_len positions is fine
    with pytest.raises(ValueError, match="max_len"):
        module(torch.randn(1, 9, 6))
    with pytest.raises(ValueError, match="max_len"):
        module(torch.randn(1, 4, 6), offset=5)
    with pytest.raises(ValueError, match="6 features"):
        module(torch.randn(1, 4, 5))
    with pytest.raises(ValueError, match="offset"):
        module(torch.randn(1, 4, 6), offset=-1)
    with pytest.raises(ValueError, match="max_len"):
        SinusoidalPositionalEncoding(6, max_len=0)


# --------------------------------------------------------------------------- learned


def test_learned_embedding_adds_rows_and_trains():
    module = LearnedPositionalEmbedding(10, 4)
    assert module.weight.shape == (10, 4)
    assert [name for name, _ in module.named_parameters()] == ["weight"]
    x = torch.randn(3, 4, 4)
    out = module(x, offset=2)
    torch.testing.assert_close(out, x + module.weight[2:6], atol=0, rtol=0)
    out.sum().backward()
    used = module.weight.grad.abs().sum(dim=1) > 0
    assert used.tolist() == [False, False, True, True, True, True, False, False, False, False]


def test_learned_embedding_errors_beyond_max_len():
    module = LearnedPositionalEmbedding(6, 4)
    module(torch.randn(1, 6, 4))
    with pytest.raises(ValueError, match=r"max_len=6"):
        module(torch.randn(1, 7, 4))
    with pytest.raises(ValueError, match=r"positions 5\.\.6"):
        module(torch.randn(1, 2, 4), offset=5)
    with pytest.raises(ValueError, match="4 features"):
        module(torch.randn(1, 2, 3))
    with pytest.raises(TypeError, match="max_len"):
        LearnedPositionalEmbedding(6.0, 4)
    with pytest.raises(ValueError, match="dim"):
        LearnedPositionalEmbedding(6, 0)


# --------------------------------------------------------------------------- rotary


def _rotate_as_complex(x: torch.Tensor, positions: torch.Tensor, base: float) -> torch.Tensor:
    """Independent RoPE: feature i pairs with i + D/2 as one complex number, times e^{i m theta}."""
    half = x.shape[-1] // 2
    theta = base ** (-torch.arange(half, dtype=torch.float64) * 2 / x.shape[-1])  # (D/2,)
    z = torch.complex(x[..., :half].double(), x[..., half:].double())  # (..., L, D/2)
    z = z * torch.exp(1j * positions.double()[:, None] * theta)  # rotate by m * theta_i
    return torch.cat([z.real, z.imag], dim=-1)


@pytest.mark.parametrize("head_dim, base", [(8, 10000.0), (6, 500.0)])
def test_rotary_matches_complex_rotation(head_dim, base):
    rope = RotaryEmbedding(head_dim, base=base)
    x = torch.randn(2, 3, 5, head_dim, dtype=torch.float64)
    out = rope(x, offset=4)
    expected = _rotate_as_complex(x, torch.arange(4, 9), base)
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=0)
    # float32 uses the cached float32 tables and agrees to float32 precision.
    out32 = rope(x.float(), offset=4)
    assert out32.dtype == torch.float32
    torch.testing.assert_close(out32.double(), expected, atol=1e-6, rtol=0)


def test_rotary_position_zero_is_identity_and_norm_is_kept():
    rope = RotaryEmbedding(16)
    x = torch.randn(2, 4, 50, 16, dtype=torch.float64)
    torch.testing.assert_close(rope(x[:, :, :1]), x[:, :, :1], atol=0, rtol=0)
    out = rope(x, offset=7)
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1), atol=1e-12, rtol=0)
    assert not torch.allclose(out[:, :, 1:], x[:, :, 1:])


@pytest.mark.parametrize("dtype, atol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
def test_rotary_dot_product_depends_only_on_relative_position(dtype, atol):
    rope = RotaryEmbedding(32)
    q = torch.randn(1, 1, 1, 32, dtype=dtype)
    k = torch.randn(1, 1, 1, 32, dtype=dtype)

    def score(m: int, n: int) -> float:
        return (rope(q, offset=m) * rope(k, offset=n)).sum().item()

    for m, n in [(0, 0), (5, 2), (2, 5), (17, 3)]:
        for shift in (1, 40, 999):
            assert score(m + shift, n + shift) == pytest.approx(score(m, n), abs=atol)
    # ... and does depend on the relative position.
    assert abs(score(5, 2) - score(2, 5)) > 1e-3


def test_rotary_offset_equals_slice_of_longer_sequence():
    rope = RotaryEmbedding(8)
    x = torch.randn(2, 2, 10, 8)
    full = rope(x)
    torch.testing.assert_close(rope(x[:, :, 6:], offset=6), full[:, :, 6:], atol=0, rtol=0)


def test_rotary_cache_grows_and_is_not_state():
    rope = RotaryEmbedding(8)
    assert rope.state_dict() == {} and list(rope.parameters()) == []
    x = torch.randn(1, 1, 3, 8)
    rope(x)
    assert rope.cos_cached.shape == (4, 8)  # next power of two >= 3
    assert rope.cos_cached.dtype == torch.float32
    far = rope(x, offset=3000)
    assert rope.cos_cached.shape == (4096, 8)
    expected = _rotate_as_complex(x, torch.arange(3000, 3003), 10000.0)
    torch.testing.assert_close(far.double(), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_rotary_low_precision_is_rounded_once(dtype):
    rope = RotaryEmbedding(64)
    x = torch.randn(2, 4, 33, 64).to(dtype)
    golden = rope(x.double(), offset=1000)
    # The best a low-precision result can be is the rounded golden result.
    assert_oracle_close(rope(x, offset=1000), golden.to(dtype), golden)


@pytest.mark.parametrize("kwargs, error, word", [
    ({"head_dim": 7}, ValueError, "head_dim"),
    ({"head_dim": 0}, ValueError, "head_dim"),
    ({"head_dim": 8.0}, TypeError, "head_dim"),
    ({"head_dim": 8, "base": 0.5}, ValueError, "base"),
])
def test_rotary_constructor_errors(kwargs, error, word):
    with pytest.raises(error, match=word):
        RotaryEmbedding(**kwargs)


def test_rotary_forward_errors():
    rope = RotaryEmbedding(8)
    with pytest.raises(ValueError, match="8"):
        rope(torch.randn(1, 1, 3, 6))
    with pytest.raises(ValueError, match="offset"):
        rope(torch.randn(1, 1, 3, 8), offset=-2)
    with pytest.raises(TypeError, match="floating"):
        rope(torch.ones(1, 1, 3, 8, dtype=torch.int64))


def test_alibi_slopes_is_reexported():
    assert alibi_slopes is score_mods.alibi_slopes
    torch.testing.assert_close(alibi_slopes(8), 2.0 ** -torch.arange(1, 9, dtype=torch.float32))
