"""attention()'s cache of validated unmasked calls: a repeated call skips validation,
yet every argument that would fail validation still fails, with the same message, after
a valid call of the same shapes has been cached."""

from __future__ import annotations

import sys

import pytest
import torch

import attnkit
import attnkit.functional.attention  # noqa: F401  (the module, not the function)

attention_module = sys.modules["attnkit.functional.attention"]


def _qkv(grad: bool = False):
    g = torch.Generator().manual_seed(0)
    return tuple(torch.randn(2, 4, 6, 8, generator=g).requires_grad_(grad) for _ in range(3))


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(causal=1), TypeError, "causal must be None, a bool"),
    (dict(causal="lower-right"), ValueError, "causal must be None, True"),
    (dict(scale=float("nan")), ValueError, "scale must be a finite number"),
    (dict(scale=True), TypeError, "scale must be a number"),
    (dict(dropout_p=1.0), ValueError, "dropout_p must be in"),
    (dict(dropout_p=0), None, None),  # an int is a valid dropout_p, cached separately
    (dict(return_weights=1), TypeError, "return_weights must be a bool"),
    (dict(backend="flash"), ValueError, "backend must be 'auto' or one of"),
    (dict(normalize="max"), ValueError, "normalize"),
])
def test_cached_calls_still_validate_every_argument(kwargs, error, match):
    q, k, v = _qkv()
    attnkit.attention(q, k, v, causal=True, scale=0.5, dropout_p=0.0)  # cached
    attnkit.attention(q, k, v, causal=True, scale=0.5, dropout_p=0.0)  # from the cache
    call = dict(causal=True, scale=0.5, dropout_p=0.0) | kwargs
    if error is None:
        attnkit.attention(q, k, v, **call)
        return
    with pytest.raises(error, match=match):
        attnkit.attention(q, k, v, **call)


def test_cached_calls_check_shapes_dtypes_and_devices_of_new_tensors():
    q, k, v = _qkv()
    attnkit.attention(q, k, v, causal=True)
    with pytest.raises(ValueError, match="k and v must have the same length"):
        attnkit.attention(q, k, v[:, :, :5], causal=True)
    with pytest.raises(TypeError, match="v.dtype"):
        attnkit.attention(q, k, v.double(), causal=True)
    with pytest.raises(ValueError, match="causal=True is ambiguous"):
        attnkit.attention(q, k[:, :, :5], v[:, :, :5], causal=True)


def test_cached_and_uncached_calls_give_the_same_result_and_decision():
    q, k, v = _qkv(grad=True)
    attention_module._fast_cache.clear()
    first, _ = attnkit.attention(q, k, v, causal=True)
    assert len(attention_module._fast_cache) == 1
    second, _ = attnkit.attention(q, k, v, causal=True)
    assert torch.equal(first, second)
    assert attnkit.explain(q, k, v, causal=True).backend == "sdpa"
    # Grad mode is part of the key: the problem under no_grad does not require grad.
    with torch.no_grad():
        attnkit.attention(q, k, v, causal=True)
    problems = [value[3] for value in attention_module._fast_cache.values()]
    assert sorted(p.requires_grad for p in problems) == [False, True]
    reference, _ = attnkit.attention(q, k, v, causal=True, backend="reference")
    torch.testing.assert_close(second, reference, atol=1e-5, rtol=0)


def test_tensor_subclasses_and_masked_calls_take_the_validated_path():
    q, k, v = _qkv()
    attention_module._fast_cache.clear()
    attnkit.attention(torch.nn.Parameter(q), k, v, causal=True)
    attnkit.attention(q, k, v, mask=torch.ones(6, 6, dtype=torch.bool))
    assert not attention_module._fast_cache
