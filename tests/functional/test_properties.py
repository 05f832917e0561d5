"""Algebraic properties of ``attnkit.attention``, checked with hypothesis (DESIGN.md section 4).

Each property runs on the ``reference`` backend in float64 and on ``sdpa`` in
float32. hypothesis draws the shape ``(B, Hkv, group, Lq, Lk, D, Dv)``, the
permutations, cut points and boolean masks; the tensor values come from a
``torch.Generator`` seeded with a hypothesis-drawn integer, so every failure
replays exactly.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import attnkit
from attnkit import masks

# backend -> (dtype, absolute tolerance for values of order 1)
BACKENDS = {
    "reference": (torch.float64, 1e-12),
    "sdpa": (torch.float32, 2e-5),
}
backend_param = pytest.mark.parametrize("backend", list(BACKENDS))

PROPERTY_SETTINGS = settings(max_examples=30, deadline=None)


@dataclasses.dataclass(frozen=True)
class Shape:
    batch: int
    kv_heads: int
    group: int
    q_len: int
    kv_len: int
    head_dim: int
    v_dim: int
    seed: int

    @property
    def q_heads(self) -> int:
        return self.kv_heads * self.group


@st.composite
def shapes(draw, *, min_group: int = 1, square: bool = False) -> Shape:
    q_len = draw(st.integers(1, 9))
    return Shape(
        batch=draw(st.integers(1, 2)),
        kv_heads=draw(st.integers(1, 2)),
        group=draw(st.integers(min_group, 3)),
        q_len=q_len,
        kv_len=q_len if square else draw(st.integers(1, 9)),
        head_dim=draw(st.integers(1, 8)),
        v_dim=draw(st.integers(1, 6)),
        seed=draw(st.integers(0, 2**31 - 1)),
    )


def make_qkv(shape: Shape, dtype: torch.dtype):
    """``q (B, Hq, Lq, D)``, ``k (B, Hkv, Lk, D)``, ``v (B, Hkv, Lk, Dv)`` from the shape's seed."""
    gen = torch.Generator().manual_seed(shape.seed)
    B, Hkv, Hq = shape.batch, shape.kv_heads, shape.q_heads
    q = torch.randn(B, Hq, shape.q_len, shape.head_dim, generator=gen, dtype=dtype)
    k = torch.randn(B, Hkv, shape.kv_len, shape.head_dim, generator=gen, dtype=dtype)
    v = torch.randn(B, Hkv, shape.kv_len, shape.v_dim, generator=gen, dtype=dtype)
    return q, k, v


def run(backend: str, q, k, v, **kwargs) -> torch.Tensor:
    out, _ = attnkit.attention(q, k, v, backend=backend, **kwargs)
    return out


def assert_close(actual: torch.Tensor, expected: torch.Tensor, backend: str) -> None:
    tol = BACKENDS[backend][1]
    torch.testing.assert_close(actual, expected, rtol=0.0, atol=tol)


def bool_masks(shape: Shape):
    """A bool mask in one of the accepted layouts: ``(Lq, Lk)`` or 4-D with size-1 dims."""
    B, H, Lq, Lk = shape.batch, shape.q_heads, shape.q_len, shape.kv_len
    layouts = st.sampled_from([(Lq, Lk), (1, 1, Lq, Lk), (B, 1, Lq, Lk), (1, H, Lq, Lk),
                               (B, H, Lq, Lk)])
    return layouts.flatmap(lambda layout: arrays(np.bool_, layout)).map(torch.from_numpy)


def full_mask(mask: torch.Tensor, shape: Shape) -> torch.Tensor:
    """Expand a bool mask to ``(B, Hq, Lq, Lk)``."""
    return mask.expand(shape.batch, shape.q_heads, shape.q_len, shape.kv_len)


# ---------------------------------------------------------------------------
# (a) permutation equivariance in the queries


@backend_param
@PROPERTY_SETTINGS
@given(data=st.data())
def test_permuting_queries_permutes_outputs(backend, data):
    shape = data.draw(shapes(), label="shape")
    perm = torch.tensor(data.draw(st.permutations(range(shape.q_len)), label="perm"))
    q, k, v = make_qkv(shape, BACKENDS[backend][0])
    out = run(backend, q, k, v)
    permuted = run(backend, q[:, :, perm], k, v)
    assert_close(permuted, out[:, :, perm], backend)


# ---------------------------------------------------------------------------
# (b) permutation invariance in the key-value pairs


@backend_param
@PROPERTY_SETTINGS
@given(data=st.data())
def test_permuting_key_value_pairs_leaves_outputs_unchanged(backend, data):
    shape = data.draw(shapes(), label="shape")
    perm = torch.tensor(data.draw(st.permutations(range(shape.kv_len)), label="perm"))
    q, k, v = make_qkv(shape, BACKENDS[backend][0])
    out = run(backend, q, k, v)
    assert_close(run(backend, q, k[:, :, perm], v[:, :, perm]), out, backend)


# ---------------------------------------------------------------------------
# (c) causal rows do not depend on later inputs


@backend_param
@PROPERTY_SETTINGS
@given(data=st.data())
def test_causal_rows_ignore_later_positions(backend, data):
    shape = data.draw(shapes(), label="shape")
    alignment = data.draw(st.sampled_from(["upper_left", "lower_right"]), label="alignment")
    via = data.draw(st.sampled_from(["flag", "mask_mod"]), label="via")
    cut = data.draw(st.integers(0, shape.q_len - 1), label="cut")  # rows 0..cut are checked
    offset = shape.kv_len - shape.q_len if alignment == "lower_right" else 0
    dtype = BACKENDS[backend][0]
    q, k, v = make_qkv(shape, dtype)

    if via == "flag":
        kwargs = {"causal": alignment}
    else:
        kwargs = {"mask": masks.causal(alignment, q_len=shape.q_len, kv_len=shape.kv_len)}
    out = run(backend, q, k, v, **kwargs)

    # Perturb every query after the cut and every key/value that row `cut` cannot see.
    gen = torch.Generator().manual_seed(shape.seed + 1)
    first_hidden_key = max(cut + offset + 1, 0)
    q2, k2, v2 = q.clone(), k.clone(), v.clone()
    q2[:, :, cut + 1:] = 10 * torch.randn(q2[:, :, cut + 1:].shape, generator=gen, dtype=dtype)
    k2[:, :, first_hidden_key:] = 10 * torch.randn(k2[:, :, first_hidden_key:].shape,
                                                   generator=gen, dtype=dtype)
    v2[:, :, first_hidden_key:] = 10 * torch.randn(v2[:, :, first_hidden_key:].shape,
                                                   generator=gen, dtype=dtype)
    perturbed = run(backend, q2, k2, v2, **kwargs)

    assert_close(perturbed[:, :, :cut + 1], out[:, :, :cut + 1], backend)
    # Rows that see no key at all (lower-right with Lq > Lk) are exactly zero.
    empty_rows = max(-offset, 0)
    assert (out[:, :, :empty_rows] == 0).all()


# ---------------------------------------------------------------------------
# (d) outputs lie in the convex hull of the values they may attend to


def assert_in_hull(out, v, allowed, shape: Shape, backend: str) -> None:
    """``out (B, Hq, Lq, Dv)`` within per-coordinate [min, max] of the allowed values."""
    v_rep = v.repeat_interleave(shape.group, dim=1)[:, :, None]  # (B, Hq, 1, Lk, Dv)
    allowed = allowed[..., None]  # (B, Hq, Lq, Lk, 1)
    inf = torch.tensor(float("inf"), dtype=v.dtype)
    low = torch.where(allowed, v_rep, inf).amin(dim=3)  # (B, Hq, Lq, Dv)
    high = torch.where(allowed, v_rep, -inf).amax(dim=3)
    eps = BACKENDS[backend][1]
    empty = ~allowed.any(dim=3).expand_as(out)
    assert (out[empty] == 0).all()
    assert (out[~empty] >= low[~empty] - eps).all()
    assert (out[~empty] <= high[~empty] + eps).all()


@backend_param
@PROPERTY_SETTINGS
@given(data=st.data())
def test_outputs_lie_in_convex_hull_of_values(backend, data):
    shape = data.draw(shapes(), label="shape")
    q, k, v = make_qkv(shape, BACKENDS[backend][0])
    q = q * data.draw(st.sampled_from([1.0, 30.0]), label="sharpness")  # near one-hot too
    out = run(backend, q, k, v)
    allowed = torch.ones(shape.batch, shape.q_heads, shape.q_len, shape.kv_len, dtype=torch.bool)
    assert_in_hull(out, v, allowed, shape, backend)


@backend_param
@PROPERTY_SETTINGS
@given(data=st.data())
def test_masked_outputs_lie_in_convex_hull_of_allowed_values(backend, data):
    shape = data.draw(shapes(), label="shape")
    mask = data.draw(bool_masks(shape), label="mask")
    q, k, v = make_qkv(shape, BACKENDS[backend][0])
    out = run(backend, q, k, v, mask=mask)
    assert_in_hull(out, v, full_mask(mask, shape), shape, backend)


# ---------------------------------------------------------------------------
# (e) returned weights respect the mask and are normalized exactly where possible


@PROPERTY_SETTINGS
@given(data=st.data())
def test_weights_respect_random_bool_mask(data):
    shape = data.draw(shapes(), label="shape")
    mask = data.draw(bool_masks(shape), label="mask")
    q, k, v = make_qkv(shape, torch.float64)
    out, weights = attnkit.attention(q, k, v, mask=mask, backend="reference",
                                     return_weights=True)
    allowed = full_mask(mask, shape)
    assert weights.shape == allowed.shape
    assert weights.dtype == torch.float64
    assert torch.isfinite(weights).all()

    assert (weights[~allowed] == 0).all()
    assert (weights >= 0).all()
    empty = ~allowed.any(dim=-1)  # (B, Hq, Lq)
    row_sums = weights.sum(dim=-1)
    assert (weights[empty] == 0).all()
    assert (out[empty] == 0).all()
    torch.testing.assert_close(row_sums[~empty], torch.ones_like(row_sums[~empty]),
                               rtol=0.0, atol=1e-12)

    # The same mask given as a mask_mod predicate gives the same weights.
    def indexed(b, h, q_idx, kv_idx):
        return allowed[b, h, q_idx, kv_idx]

    _, weights_mod = attnkit.attention(q, k, v, mask=indexed, backend="reference",
                                       return_weights=True)
    assert torch.equal(weights_mod, weights)


# ---------------------------------------------------------------------------
# (f) grouped-query attention equals multi-head attention with K/V heads repeated


def _head_dependent(b, h, q_idx, kv_idx):
    # Query head h drops the keys congruent to h mod 3: which head index the mask
    # sees (query head, not key/value head) changes the result.
    return (kv_idx - h) % 3 != 0


@backend_param
@PROPERTY_SETTINGS
@given(data=st.data())
def test_gqa_equals_mha_with_repeated_kv_heads(backend, data):
    shape = data.draw(shapes(min_group=2), label="shape")
    masking = data.draw(st.sampled_from(["none", "causal", "head-dependent"]), label="masking")
    q, k, v = make_qkv(shape, BACKENDS[backend][0])
    kwargs = {
        "none": {},
        "causal": {"causal": "lower_right"},
        "head-dependent": {"mask": _head_dependent},
    }[masking]
    grouped = run(backend, q, k, v, **kwargs)
    k_rep = k.repeat_interleave(shape.group, dim=1)  # (B, Hq, Lk, D)
    v_rep = v.repeat_interleave(shape.group, dim=1)  # (B, Hq, Lk, Dv)
    assert_close(grouped, run(backend, q, k_rep, v_rep, **kwargs), backend)


# ---------------------------------------------------------------------------
# KV-cache step: the last queries with lower-right alignment equal the full forward


@backend_param
@PROPERTY_SETTINGS
@given(data=st.data())
def test_lower_right_step_equals_full_causal_forward(backend, data):
    shape = data.draw(shapes(square=True), label="shape")
    new = data.draw(st.integers(1, shape.q_len), label="new_queries")
    q, k, v = make_qkv(shape, BACKENDS[backend][0])
    full = run(backend, q, k, v, causal=True)
    step = run(backend, q[:, :, -new:], k, v, causal="lower_right")
    assert_close(step, full[:, :, -new:], backend)
