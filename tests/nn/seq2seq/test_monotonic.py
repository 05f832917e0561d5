"""MonotonicAttention: parallel expected alignment vs the paper's recursion, hard scan vs a
python loop, energy on a hand example, masks, stepping, dtypes, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from attnkit.nn.seq2seq.monotonic import MonotonicAttention, expected_alignment, hard_alignment


def recursive_alignment(p: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """Eqs. 13-14 of Raffel et al. 2017, one memory entry at a time:
    q_j = (1 - p_{j-1}) q_{j-1} + alpha_prev_j (q_{-1} = p_{-1} = 0), alpha_j = p_j q_j."""
    out = torch.zeros_like(p)
    for b in range(p.shape[0]):
        q_prev, p_prev = 0.0, 0.0
        for j in range(p.shape[1]):
            q_j = (1 - p_prev) * q_prev + previous[b, j].item()
            out[b, j] = p[b, j].item() * q_j
            q_prev, p_prev = q_j, p[b, j].item()
    return out


def scan_alignment(p: torch.Tensor, start: list[int | None]) -> tuple[torch.Tensor, list]:
    """Section 2.2 at test time: from t_{i-1}, stop at the first p >= 0.5, else attend to
    nothing (and stay there)."""
    out = torch.zeros_like(p)
    stops = []
    for b in range(p.shape[0]):
        stop = None
        if start[b] is not None:
            for j in range(start[b], p.shape[1]):
                if p[b, j] >= 0.5:
                    stop = j
                    out[b, j] = 1.0
                    break
        stops.append(stop)
    return out, stops


def _one_hot_start(batch: int, length: int) -> torch.Tensor:
    start = torch.zeros(batch, length, dtype=torch.float64)
    start[:, 0] = 1.0
    return start


def test_hand_computed_constant_half():
    p = torch.full((1, 3), 0.5, dtype=torch.float64)
    alpha_1 = expected_alignment(p, _one_hot_start(1, 3))
    torch.testing.assert_close(alpha_1, torch.tensor([[0.5, 0.25, 0.125]], dtype=torch.float64))
    # q = (0.5, 0.5 * 0.5 + 0.25, 0.5 * 0.5 + 0.125), alpha = p * q
    alpha_2 = expected_alignment(p, alpha_1)
    torch.testing.assert_close(alpha_2, torch.tensor([[0.25, 0.25, 0.1875]], dtype=torch.float64))


def test_parallel_expected_alignment_equals_recursion_float64():
    gen = torch.Generator().manual_seed(3)
    B, Lk, steps = 4, 11, 5
    previous = _one_hot_start(B, Lk)
    for _ in range(steps):
        # p <= 0.9 keeps cumprod(1 - p) >= 0.1^10, above the clamp floor: exact regime.
        p = 0.9 * torch.rand(B, Lk, dtype=torch.float64, generator=gen)
        parallel = expected_alignment(p, previous)
        torch.testing.assert_close(parallel, recursive_alignment(p, previous), rtol=0, atol=1e-13)
        assert (parallel.sum(-1) <= previous.sum(-1) + 1e-12).all()
        previous = parallel


def test_module_expected_alignment_equals_recursion_float64():
    B, Lq, Lk = 3, 4, 9
    attn = MonotonicAttention(5, 6, 7, sigmoid_noise=0.0, score_bias_init=0.0).double().train()
    q, k = torch.randn(B, Lq, 5, dtype=torch.float64), torch.randn(B, Lk, 6, dtype=torch.float64)
    v = torch.randn(B, Lk, 3, dtype=torch.float64)
    mask = torch.rand(B, Lk) > 0.25
    ctx, w, state = attn(q, k, v, mask=mask)
    p = torch.sigmoid(attn.energy(q, attn.key_proj(k))).masked_fill(~mask[:, None], 0.0).detach()
    previous = _one_hot_start(B, Lk)
    for i in range(Lq):
        previous = recursive_alignment(p[:, i], previous)
        torch.testing.assert_close(w[:, i].detach(), previous, rtol=0, atol=1e-13)
    torch.testing.assert_close(ctx.detach(), torch.bmm(w.detach(), v), rtol=0, atol=1e-13)
    torch.testing.assert_close(state["alignment"].detach(), previous, rtol=0, atol=1e-13)


def test_energy_hand_computed():
    attn = MonotonicAttention(1, 1, 2, score_bias_init=-0.5).double()
    with torch.no_grad():
        f64 = dict(dtype=torch.float64)
        attn.query_proj.weight.copy_(torch.tensor([[1.0], [-2.0]], **f64))
        attn.key_proj.weight.copy_(torch.tensor([[0.5], [1.0]], **f64))
        attn.key_proj.bias.copy_(torch.tensor([0.1, 0.0], **f64))
        attn.direction.copy_(torch.tensor([3.0, 4.0], **f64))  # ||v|| = 5
        attn.gain.fill_(2.0)
    s, h = 0.3, -0.7
    expected = 2.0 * (0.6 * math.tanh(0.3 + 0.5 * h + 0.1)
                      + 0.8 * math.tanh(-0.6 + 1.0 * h)) - 0.5
    energy = attn.energy(torch.tensor([[[s]]], dtype=torch.float64),
                         attn.key_proj(torch.tensor([[[h]]], dtype=torch.float64)))
    assert energy.shape == (1, 1, 1)
    assert abs(energy.item() - expected) < 1e-14


def test_hard_alignment_matches_python_scan_and_is_monotonic():
    gen = torch.Generator().manual_seed(5)
    B, Lk, steps = 6, 10, 7
    previous = _one_hot_start(B, Lk)
    start: list[int | None] = [0] * B
    positions = []
    for _ in range(steps):
        p = torch.rand(B, Lk, dtype=torch.float64, generator=gen) ** 2  # mostly < 0.5
        out = hard_alignment(p, previous)
        expected, start = scan_alignment(p, start)
        torch.testing.assert_close(out, expected, rtol=0, atol=0)
        positions.append(start)
        previous = out
    for b in range(B):
        seen = [row[b] for row in positions]
        attended = [t for t in seen if t is not None]
        assert attended == sorted(attended)
        if None in seen:  # once the scan ran off the end, nothing is attended again
            assert all(t is None for t in seen[seen.index(None):])


@pytest.mark.parametrize("mode, training", [("hard", True), ("expected", False)])
def test_module_hard_mode_matches_scan(mode, training):
    B, Lq, Lk = 4, 6, 12
    attn = MonotonicAttention(5, 6, 7, mode=mode, score_bias_init=0.5).double().train(training)
    q, k = torch.randn(B, Lq, 5, dtype=torch.float64), torch.randn(B, Lk, 6, dtype=torch.float64)
    v = torch.randn(B, Lk, 3, dtype=torch.float64)
    mask = torch.rand(B, Lk) > 0.2
    ctx, w, _ = attn(q, k, v, mask=mask)
    p = torch.sigmoid(attn.energy(q, attn.key_proj(k))).masked_fill(~mask[:, None], 0.0)
    start: list[int | None] = [0] * B
    for i in range(Lq):
        expected, start = scan_alignment(p[:, i].detach(), start)
        torch.testing.assert_close(w[:, i].detach(), expected, rtol=0, atol=0)
    assert (w.masked_select(~mask[:, None]) == 0).all()
    torch.testing.assert_close(ctx.detach(), torch.bmm(w.detach(), v), rtol=0, atol=0)


def test_hard_attends_nothing_gives_zero_context_from_then_on():
    attn = MonotonicAttention(3, 3, 4, mode="hard", score_bias_init=-100.0)
    ctx, w, state = attn(torch.randn(2, 3, 3), torch.randn(2, 5, 3))
    assert (w == 0).all() and (ctx == 0).all() and (state["alignment"] == 0).all()
    with torch.no_grad():
        attn.score_bias.fill_(100.0)  # would stop everywhere, but the scan has ended
    ctx, w, _ = attn(torch.randn(2, 1, 3), torch.randn(2, 5, 3), state=state)
    assert (w == 0).all() and (ctx == 0).all()


@pytest.mark.parametrize("mode", ["expected", "hard"])
def test_one_call_equals_stepping(mode):
    B, Lq, Lk = 3, 5, 8
    attn = MonotonicAttention(4, 6, 9, mode=mode, sigmoid_noise=0.0, score_bias_init=0.0).double()
    q, k = torch.randn(B, Lq, 4, dtype=torch.float64), torch.randn(B, Lk, 6, dtype=torch.float64)
    mask = torch.rand(B, Lq, Lk) > 0.3
    ctx, w, final = attn(q, k, mask=mask)
    state = attn.init_state(k)
    for i in range(Lq):
        ctx_i, w_i, state = attn(q[:, i:i + 1], k, mask=mask[:, i:i + 1], state=state)
        torch.testing.assert_close(w_i[:, 0], w[:, i], rtol=0, atol=1e-14)
        torch.testing.assert_close(ctx_i[:, 0], ctx[:, i], rtol=0, atol=1e-14)
    torch.testing.assert_close(state["alignment"], final["alignment"], rtol=0, atol=1e-14)


def test_masked_keys_get_zero_and_mass_is_at_most_one():
    attn = MonotonicAttention(4, 6, 9, sigmoid_noise=0.0, score_bias_init=1.0)
    mask = torch.arange(7)[None, :] < torch.tensor([7, 4, 2])[:, None]
    _, w, _ = attn(torch.randn(3, 5, 4), torch.randn(3, 7, 6), mask=mask)
    assert (w.masked_select(~mask[:, None]) == 0).all()
    assert (w >= 0).all() and (w.sum(-1) <= 1 + 1e-6).all()


@pytest.mark.parametrize("mode", ["expected", "hard"])
def test_fully_masked_row_gives_zeros_and_finite_grads(mode):
    attn = MonotonicAttention(4, 6, 9, mode=mode, sigmoid_noise=0.0, score_bias_init=0.0)
    q = torch.randn(2, 3, 4, requires_grad=True)
    k = torch.randn(2, 5, 6, requires_grad=True)
    v = torch.randn(2, 5, 2, requires_grad=True)
    mask = torch.ones(2, 3, 5, dtype=torch.bool)
    mask[0] = False
    ctx, w, _ = attn(q, k, v, mask=mask)
    assert (w[0] == 0).all() and (ctx[0] == 0).all()
    (ctx.square().sum() + w.sum()).backward()
    assert v.grad is not None and torch.isfinite(v.grad).all()
    assert (v.grad[0] == 0).all()
    # Hard choices are not differentiable: only the expected mode reaches the scores.
    others = [q.grad, k.grad, *(p.grad for p in attn.parameters())]
    if mode == "expected":
        assert all(g is not None and torch.isfinite(g).all() for g in others)
    else:
        assert all(g is None for g in others)


def test_cumprod_clamp_keeps_results_finite_and_never_overestimates():
    # p = 1 at position 2 zeroes cumprod(1 - p) after it: mass that was already past
    # position 2 is underestimated by the parallel form (documented), never NaN/inf.
    p = torch.tensor([[0.2, 0.3, 1.0, 0.4, 0.5, 0.6]], dtype=torch.float64, requires_grad=True)
    previous = torch.tensor([[0.5, 0.0, 0.0, 0.0, 0.5, 0.0]], dtype=torch.float64)
    parallel = expected_alignment(p, previous)
    exact = recursive_alignment(p.detach(), previous)
    assert torch.isfinite(parallel).all()
    assert (parallel <= exact + 1e-15).all()
    torch.testing.assert_close(parallel[:, :3], exact[:, :3], rtol=0, atol=1e-15)
    parallel.sum().backward()
    assert torch.isfinite(p.grad).all()


def test_gradcheck_expected_alignment_float64():
    gen = torch.Generator().manual_seed(7)
    p = (0.05 + 0.85 * torch.rand(2, 6, dtype=torch.float64, generator=gen)).requires_grad_()
    previous = torch.softmax(torch.randn(2, 6, dtype=torch.float64, generator=gen), -1)
    assert torch.autograd.gradcheck(expected_alignment, (p, previous.requires_grad_()))


def test_gradcheck_module_float64():
    attn = MonotonicAttention(3, 4, 5, sigmoid_noise=0.0, score_bias_init=0.0).double()
    q = torch.randn(2, 3, 3, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, 4, 4, dtype=torch.float64, requires_grad=True)

    def run(q, k):
        ctx, w, _ = attn(q, k)
        return ctx, w

    assert torch.autograd.gradcheck(run, (q, k), fast_mode=True)


def test_noise_only_in_training_expected_mode():
    attn = MonotonicAttention(4, 6, 9, sigmoid_noise=1.0, score_bias_init=0.0)
    q, k = torch.randn(2, 3, 4), torch.randn(2, 7, 6)
    _, w1, _ = attn(q, k)
    _, w2, _ = attn(q, k)
    assert (w1 - w2).abs().max() > 1e-4
    attn.eval()
    _, w3, _ = attn(q, k)
    _, w4, _ = attn(q, k)
    assert torch.equal(w3, w4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("mode", ["expected", "hard"])
def test_low_precision_runs(dtype, mode):
    attn = MonotonicAttention(4, 6, 9, mode=mode, sigmoid_noise=0.0, score_bias_init=0.0)
    q, k = torch.randn(2, 4, 4), torch.randn(2, 9, 6)
    golden_ctx, golden_w, _ = attn.double()(q.double(), k.double())
    ctx, w, state = attn.to(dtype)(q.to(dtype), k.to(dtype))
    assert ctx.dtype == dtype and w.dtype == dtype and state["alignment"].dtype == torch.float32
    assert torch.isfinite(ctx).all() and torch.isfinite(w).all()
    if mode == "expected":  # hard choices can flip on rounding; compare the soft path only
        tol = 1e-5 if dtype == torch.float32 else 5e-2
        torch.testing.assert_close(w.double(), golden_w, rtol=0, atol=tol)
        torch.testing.assert_close(ctx.double(), golden_ctx, rtol=0, atol=tol * 4)


@pytest.mark.parametrize("kwargs, argument", [
    (dict(mode="soft"), "mode"),
    (dict(sigmoid_noise=-1.0), "sigmoid_noise"),
    (dict(hidden_dim=0), "hidden_dim"),
])
def test_bad_constructor_arguments_are_named(kwargs, argument):
    base = dict(query_dim=4, key_dim=6, hidden_dim=8)
    base.update(kwargs)
    with pytest.raises(ValueError, match=argument):
        MonotonicAttention(**base)


def test_bad_inputs_are_named():
    attn = MonotonicAttention(4, 6, 8)
    q, k = torch.randn(2, 1, 4), torch.randn(2, 5, 6)
    with pytest.raises(ValueError, match="query"):
        attn(torch.randn(2, 1, 5), k)
    with pytest.raises(ValueError, match="keys"):
        attn.init_state(torch.randn(2, 5, 5))
    with pytest.raises(ValueError, match="state"):
        attn(q, k, state=attn.init_state(torch.randn(3, 5, 6)))
    with pytest.raises(ValueError, match="state"):
        attn(q, k, state={})
