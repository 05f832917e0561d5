"""attention()'s cache of validated unmasked calls: a repeated call skips validation,
yet every argument that would fail validation still fails, with the same message, after
a valid call of the same shapes has been cached."""

from __future__ import annotations

import dataclasses
import os
import sys

import pytest
import torch

import attnkit
import attnkit.functional.attention  # noqa: F401  (the module, not the function)
from attnkit.kernels import BACKENDS, Backend, Bid, dispatch

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
    problems = [entry.problem for entry in attention_module._fast_cache.values()]
    assert sorted(p.requires_grad for p in problems) == [False, True]
    reference, _ = attnkit.attention(q, k, v, causal=True, backend="reference")
    torch.testing.assert_close(second, reference, atol=1e-5, rtol=0)


def test_tensor_subclasses_and_masked_calls_take_the_validated_path():
    q, k, v = _qkv()
    attention_module._fast_cache.clear()
    attnkit.attention(torch.nn.Parameter(q), k, v, causal=True)
    attnkit.attention(q, k, v, mask=torch.ones(6, 6, dtype=torch.bool))
    assert not attention_module._fast_cache


def _sevens(q, k, v, call):
    return torch.full((q.shape[0], q.shape[1], q.shape[2], v.shape[3]), 7.0), None


def test_cached_calls_follow_registry_changes(monkeypatch):
    """A cached call keeps dispatch's answer only while the registry is unchanged: an added
    entry that outbids the others runs at once, and removing it brings the old one back."""
    q, k, v = _qkv()
    attention_module._fast_cache.clear()
    first, _ = attnkit.attention(q, k, v, causal=True)
    attnkit.attention(q, k, v, causal=True)  # from the cache
    entry = Backend(name="sevens", summary="test-only", refusal=lambda p: None, run=_sevens,
                    bid=lambda p: Bid(99, "always wins"))
    monkeypatch.setitem(BACKENDS, entry.name, entry)
    assert torch.equal(attnkit.attention(q, k, v, causal=True)[0], torch.full_like(q, 7.0))
    monkeypatch.setitem(BACKENDS, entry.name, dataclasses.replace(entry, refusal=lambda p: "no"))
    assert torch.equal(attnkit.attention(q, k, v, causal=True)[0], first)
    assert len(attention_module._fast_cache) == 1  # one key throughout


def test_cached_calls_follow_cuda_availability_and_the_environment(monkeypatch):
    """An entry whose availability reads torch.cuda.is_available() and an environment switch
    in dispatch.AVAILABILITY_ENV: flipping either re-asks dispatch for a cached call."""
    switch = dispatch.AVAILABILITY_ENV[0]

    def refusal(p):
        if torch.cuda.is_available() or os.environ.get(switch) == "1":
            return None
        return "needs CUDA or the switch"

    entry = Backend(name="sevens", summary="test-only", refusal=refusal, run=_sevens,
                    bid=lambda p: Bid(99, "always wins"))
    monkeypatch.setitem(BACKENDS, entry.name, entry)
    monkeypatch.delenv(switch, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    q, k, v = _qkv()
    sevens = torch.full_like(q, 7.0)
    assert not torch.equal(attnkit.attention(q, k, v)[0], sevens)
    assert not torch.equal(attnkit.attention(q, k, v)[0], sevens)  # cached
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert torch.equal(attnkit.attention(q, k, v)[0], sevens)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert not torch.equal(attnkit.attention(q, k, v)[0], sevens)
    monkeypatch.setenv(switch, "1")
    assert torch.equal(attnkit.attention(q, k, v)[0], sevens)
    monkeypatch.delenv(switch)
    assert not torch.equal(attnkit.attention(q, k, v)[0], sevens)


def test_dispatch_state_reads_the_environment_as_it_is_now(monkeypatch):
    switch = dispatch.AVAILABILITY_ENV[0]
    monkeypatch.delenv(switch, raising=False)
    before = dispatch.state()
    monkeypatch.setenv(switch, "1")
    assert dispatch.state() != before
    monkeypatch.delenv(switch)
    assert dispatch.state() == before


def test_a_cached_call_makes_few_python_calls_in_attnkit():
    """Overhead guard: a cached unmasked call (the decoder layers of a training loop) runs
    attention(), its cache key, the backend decision (dispatch's state check) and the
    backend, nothing more (counted as Python frames of attnkit's own files, so torch's
    internals do not matter)."""
    q, k, v = _qkv(grad=True)
    attnkit.attention(q, k, v, causal=True)  # validated and cached
    frames = []

    def profile(frame, event, arg):
        if event == "call" and "attnkit" in frame.f_code.co_filename:
            frames.append(frame.f_code.co_name)

    sys.setprofile(profile)
    try:
        attnkit.attention(q, k, v, causal=True)
    finally:
        sys.setprofile(None)
    assert frames == ["attention", "_fast_key", "_decided", "state", "_run"], frames
