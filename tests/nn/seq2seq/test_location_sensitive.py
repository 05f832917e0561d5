"""LocationSensitiveAttention: the formula on a tiny example, stepping, masks, dtypes."""

from __future__ import annotations

import math

import pytest
import torch

from attnkit.nn.seq2seq.location_sensitive import LocationSensitiveAttention


def _scalar_module(cumulative: bool) -> LocationSensitiveAttention:
    """Dq = Dk = H = 1, one filter of width 3, with hand-picked parameters."""
    attn = LocationSensitiveAttention(1, 1, 1, num_filters=1, kernel_size=3,
                                      cumulative=cumulative).double()
    kernel = torch.tensor([[[0.3, 1.0, -0.2]]], dtype=torch.float64)
    with torch.no_grad():
        attn.query_proj.weight.fill_(0.5)                                    # W
        attn.key_proj.weight.fill_(1.0)                                      # V
        attn.key_proj.bias.fill_(0.1)                                        # b
        attn.location_conv.weight.copy_(kernel)                              # F
        attn.location_proj.weight.fill_(2.0)                                 # U
        attn.energy.weight.fill_(1.5)                                        # w
    return attn


def _scalar_reference(queries, keys, cumulative):
    """e_j = w tanh(W s + V h_j + b + U f_j), f = F * alpha, in plain python floats."""
    kernel = (0.3, 1.0, -0.2)
    previous = [0.0] * len(keys)
    total = [0.0] * len(keys)
    rows = []
    for s in queries:
        seen = total if cumulative else previous
        padded = [0.0, *seen, 0.0]
        f = [sum(kernel[t] * padded[j + t] for t in range(3)) for j in range(len(keys))]
        e = [1.5 * math.tanh(0.5 * s + 1.0 * h + 0.1 + 2.0 * fj)
             for h, fj in zip(keys, f, strict=True)]
        z = sum(math.exp(x) for x in e)
        previous = [math.exp(x) / z for x in e]
        total = [a + b for a, b in zip(total, previous, strict=True)]
        rows.append(previous)
    return rows


@pytest.mark.parametrize("cumulative", [True, False])
def test_matches_hand_computed_scalar_example(cumulative):
    queries, keys = [0.4, -0.3, 0.2, 0.9], [0.0, 1.0, -1.0, 0.5, 0.25]
    attn = _scalar_module(cumulative)
    values = torch.arange(5, dtype=torch.float64).view(1, 5, 1)
    ctx, w, state = attn(torch.tensor(queries, dtype=torch.float64).view(1, 4, 1),
                         torch.tensor(keys, dtype=torch.float64).view(1, 5, 1), values)
    expected = torch.tensor(_scalar_reference(queries, keys, cumulative), dtype=torch.float64)
    torch.testing.assert_close(w[0], expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(ctx[0, :, 0], expected @ values[0, :, 0], rtol=0, atol=1e-12)
    torch.testing.assert_close(state["alignment"][0], expected[-1], rtol=0, atol=1e-12)
    torch.testing.assert_close(state["cumulative"][0], expected.sum(0), rtol=0, atol=1e-12)


def test_cumulative_only_differs_from_step_three():
    # Step 1 sees zeros either way and step 2 sees alpha_1 either way (the sum of one
    # alignment is that alignment); from step 3 on the two features differ.
    q, k = torch.randn(2, 4, 3, dtype=torch.float64), torch.randn(2, 6, 5, dtype=torch.float64)
    torch.manual_seed(1)
    cum = LocationSensitiveAttention(3, 5, 7, num_filters=4, kernel_size=3).double()
    prev = LocationSensitiveAttention(3, 5, 7, num_filters=4, kernel_size=3,
                                      cumulative=False).double()
    prev.load_state_dict(cum.state_dict())
    _, w_cum, _ = cum(q, k)
    _, w_prev, _ = prev(q, k)
    torch.testing.assert_close(w_cum[:, :2], w_prev[:, :2], rtol=0, atol=1e-14)
    assert (w_cum[:, 2:] - w_prev[:, 2:]).abs().max() > 1e-6


@pytest.mark.parametrize("cumulative", [True, False])
def test_one_call_equals_stepping(cumulative):
    B, Lq, Lk = 3, 5, 8
    attn = LocationSensitiveAttention(4, 6, 9, num_filters=5, kernel_size=5,
                                      cumulative=cumulative).double()
    q, k = torch.randn(B, Lq, 4, dtype=torch.float64), torch.randn(B, Lk, 6, dtype=torch.float64)
    v = torch.randn(B, Lk, 2, dtype=torch.float64)
    mask = torch.rand(B, Lq, Lk) > 0.3
    ctx, w, final = attn(q, k, v, mask=mask)
    state = attn.init_state(k, v)
    for i in range(Lq):
        ctx_i, w_i, state = attn(q[:, i:i + 1], k, v, mask=mask[:, i:i + 1], state=state)
        torch.testing.assert_close(w_i[:, 0], w[:, i], rtol=0, atol=1e-13)
        torch.testing.assert_close(ctx_i[:, 0], ctx[:, i], rtol=0, atol=1e-13)
    for key in ("alignment", "cumulative"):
        torch.testing.assert_close(state[key], final[key], rtol=0, atol=1e-13)


def test_init_state_precomputes_key_projection():
    attn = LocationSensitiveAttention(4, 6, 9, kernel_size=3)
    q, k = torch.randn(2, 3, 4), torch.randn(2, 7, 6)
    state = attn.init_state(k)
    torch.testing.assert_close(state["keys_proj"], attn.key_proj(k))
    assert not state["alignment"].any() and not state["cumulative"].any()
    ctx_a, w_a, _ = attn(q, k, state=state)
    ctx_b, w_b, _ = attn(q, k)
    torch.testing.assert_close(w_a, w_b)
    torch.testing.assert_close(ctx_a, ctx_b)


def test_rows_sum_to_one_and_masked_keys_get_zero():
    attn = LocationSensitiveAttention(4, 6, 9, kernel_size=3)
    lengths = torch.tensor([7, 4, 1])
    mask = torch.arange(7)[None, :] < lengths[:, None]  # (B, Lk) padding mask
    _, w, state = attn(torch.randn(3, 5, 4), torch.randn(3, 7, 6), mask=mask)
    torch.testing.assert_close(w.sum(-1), torch.ones(3, 5))
    assert (w.masked_select(~mask[:, None, :]) == 0).all()
    assert (state["cumulative"].masked_select(~mask) == 0).all()


def test_fully_masked_row_gives_zeros_and_finite_grads():
    attn = LocationSensitiveAttention(4, 6, 9, kernel_size=3)
    q = torch.randn(2, 3, 4, requires_grad=True)
    k = torch.randn(2, 5, 6, requires_grad=True)
    mask = torch.ones(2, 3, 5, dtype=torch.bool)
    mask[1, 1] = False  # batch 1, second step: nothing to attend to
    ctx, w, _ = attn(q, k, mask=mask)
    assert (w[1, 1] == 0).all() and (ctx[1, 1] == 0).all()
    torch.testing.assert_close(w[1, 2].sum(), torch.tensor(1.0))
    (ctx.square().sum() + w.sum()).backward()
    grads = [q.grad, k.grad, *(p.grad for p in attn.parameters())]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_low_precision_runs_close_to_float64(dtype):
    attn = LocationSensitiveAttention(4, 6, 9, num_filters=3, kernel_size=5)
    q, k = torch.randn(2, 4, 4), torch.randn(2, 9, 6)
    golden_ctx, golden_w, _ = attn.double()(q.double(), k.double())
    ctx, w, _ = attn.to(dtype)(q.to(dtype), k.to(dtype))
    assert ctx.dtype == dtype and w.dtype == dtype
    assert torch.isfinite(ctx).all() and torch.isfinite(w).all()
    tol = 1e-5 if dtype == torch.float32 else 5e-2
    torch.testing.assert_close(w.double(), golden_w, rtol=0, atol=tol)
    torch.testing.assert_close(ctx.double(), golden_ctx, rtol=0, atol=tol * 4)


def test_gradcheck_float64():
    attn = LocationSensitiveAttention(3, 4, 5, num_filters=2, kernel_size=3).double()
    q = torch.randn(2, 3, 3, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, 4, 4, dtype=torch.float64, requires_grad=True)
    v = torch.randn(2, 4, 2, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True, True, True, False], [True, False, True, True]])

    def run(q, k, v):
        ctx, w, _ = attn(q, k, v, mask=mask)
        return ctx, w

    assert torch.autograd.gradcheck(run, (q, k, v), fast_mode=True)


@pytest.mark.parametrize("kwargs, argument", [
    (dict(kernel_size=4), "kernel_size"),
    (dict(num_filters=0), "num_filters"),
    (dict(hidden_dim=0), "hidden_dim"),
])
def test_bad_constructor_arguments_are_named(kwargs, argument):
    base = dict(query_dim=4, key_dim=6, hidden_dim=8)
    base.update(kwargs)
    with pytest.raises(ValueError, match=argument):
        LocationSensitiveAttention(**base)


def test_bad_inputs_are_named():
    attn = LocationSensitiveAttention(4, 6, 8, kernel_size=3)
    q, k = torch.randn(2, 1, 4), torch.randn(2, 5, 6)
    with pytest.raises(ValueError, match="query"):
        attn(torch.randn(2, 1, 3), k)
    with pytest.raises(ValueError, match="keys"):
        attn.init_state(torch.randn(2, 5, 3))
    with pytest.raises(ValueError, match="mask"):
        attn(q, k, mask=torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="mask"):
        attn(q, k, mask=torch.ones(2, 5))
    state = attn.init_state(torch.randn(2, 6, 6))
    with pytest.raises(ValueError, match="state"):
        attn(q, k, state=state)
    with pytest.raises(ValueError, match="state"):
        attn(q, k, state={"alignment": torch.zeros(2, 5)})
