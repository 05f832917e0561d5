"""LocalAttention (Luong, Pham & Manning 2015, section 3.2): local-m and local-p."""

from __future__ import annotations

import math

import pytest
import torch

from attnkit.nn.seq2seq.local import LocalAttention

F64 = torch.float64
MODES = ["monotonic", "predictive"]
SCORES = ["dot", "general", "concat"]


def _softmax(logits):
    z = sum(math.exp(x) for x in logits)
    return [math.exp(x) / z for x in logits]


def _set_position_net(attn, weight, vector):
    with torch.no_grad():
        attn.position_proj.weight.copy_(torch.tensor(weight, dtype=F64))
        attn.position_vector.copy_(torch.tensor(vector, dtype=F64))


# --- the formulas by hand ------------------------------------------------------------

def test_monotonic_by_hand():
    attn = LocalAttention(1, 1, window=1, mode="monotonic", score="dot")
    keys = [1.0, 2.0, -1.0, 0.5, 3.0]
    query = torch.tensor([[[0.5]]], dtype=F64)
    state = {"step": torch.tensor([2])}  # p_t = 2: window {1, 2, 3}
    context, weights, state = attn(query, torch.tensor([keys], dtype=F64)[..., None],
                                   state=state)
    a = _softmax([0.5 * k for k in keys[1:4]])
    torch.testing.assert_close(weights, torch.tensor([[[0.0, *a, 0.0]]], dtype=F64))
    mixed = sum(w * k for w, k in zip(a, keys[1:4], strict=True))
    torch.testing.assert_close(context, torch.tensor([[[mixed]]], dtype=F64))
    assert state["step"].tolist() == [3]


def test_predictive_by_hand_centre_of_source():
    attn = LocalAttention(2, 2, window=2, mode="predictive", score="dot", dtype=F64)
    _set_position_net(attn, [[0.0, 0.0], [0.0, 0.0]], [1.0, 1.0])  # sigmoid(0) = 1/2
    keys = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.5], [2.0, 0.0], [0.5, 0.5]]
    query = [1.0, -1.0]
    scores = [query[0] * k[0] + query[1] * k[1] for k in keys]
    # S = 6 -> p_t = 3, sigma = D / 2 = 1, window s in 1..5: softmax there, times
    # the Gaussian, not renormalized.
    align = _softmax(scores[1:6])
    expected = [0.0] + [a * math.exp(-((s - 3) ** 2) / 2)
                        for a, s in zip(align, range(1, 6), strict=True)]
    _, weights, _ = attn(torch.tensor([[query]], dtype=F64), torch.tensor([keys], dtype=F64))
    torch.testing.assert_close(weights, torch.tensor([[expected]], dtype=F64))
    assert weights.sum() < 1

    # A padding mask: S = 4 valid keys -> p_t = 2, window 0..4 cut to the valid 0..3.
    mask = torch.tensor([[True] * 4 + [False] * 2])
    context, weights, _ = attn(torch.tensor([[query]], dtype=F64),
                               torch.tensor([keys], dtype=F64), mask=mask)
    align = _softmax(scores[:4])
    expected = [a * math.exp(-((s - 2) ** 2) / 2) for s, a in enumerate(align)] + [0.0, 0.0]
    torch.testing.assert_close(weights, torch.tensor([[expected]], dtype=F64))
    torch.testing.assert_close(context[0, 0], torch.tensor(
        [sum(w * k[i] for w, k in zip(expected, keys, strict=True)) for i in range(2)], dtype=F64))


def test_predictive_by_hand_learned_position():
    attn = LocalAttention(2, 2, window=2, mode="predictive", score="dot", dtype=F64)
    _set_position_net(attn, [[1.0, 0.0], [0.0, 0.0]], [2.0, 0.0])
    query, keys = [0.5, 3.0], torch.randn(1, 6, 2, dtype=F64)
    p = 6 / (1 + math.exp(-2 * math.tanh(0.5)))  # S * sigmoid(v_p^T tanh(W_p h_t)) = 4.295
    window = [s for s in range(6) if abs(s - p) <= 2]
    assert window == [3, 4, 5]
    scores = (keys[0] @ torch.tensor(query, dtype=F64)).tolist()
    align = _softmax([scores[s] for s in window])
    expected = [0.0] * 6
    for a, s in zip(align, window, strict=True):
        expected[s] = a * math.exp(-((s - p) ** 2) / 2)
    q = torch.tensor([[query]], dtype=F64)
    _, weights, _ = attn(q, keys)
    torch.testing.assert_close(weights, torch.tensor([[expected]], dtype=F64))
    torch.testing.assert_close(attn.aligned_positions(q, keys), torch.tensor([[p]], dtype=F64))


# --- properties ----------------------------------------------------------------------

@pytest.mark.parametrize("score", SCORES)
def test_predictive_weights_vanish_outside_window_and_are_not_renormalized(score):
    attn = LocalAttention(6, 6, window=3, mode="predictive", score=score)
    query, keys = torch.randn(3, 5, 6) * 3, torch.randn(3, 20, 6)
    mask = torch.ones(3, 20, dtype=torch.bool)
    mask[1, 12:] = False
    _, weights, _ = attn(query, keys, mask=mask)
    centres = attn.aligned_positions(query, keys, mask=mask)  # (B, Lq)
    assert ((centres >= 0) & (centres <= mask.sum(-1, keepdim=True))).all()
    distance = torch.arange(20) - centres[..., None]
    outside = (distance.abs() > 3) | ~mask[:, None, :]
    assert (weights[outside] == 0).all()
    assert (weights[~outside] > 0).all()
    assert (weights.sum(-1) < 1).all()
    # Undo the Gaussian: what is left is a softmax over the window, summing to 1.
    align = weights / torch.exp(-distance.square() / (2 * 1.5**2))
    torch.testing.assert_close(align.sum(-1), torch.ones(3, 5))


@pytest.mark.parametrize("score", SCORES)
def test_monotonic_window_and_normalization(score):
    attn = LocalAttention(4, 4, window=2, mode="monotonic", score=score)
    query, keys = torch.randn(2, 6, 4), torch.randn(2, 9, 4)
    _, weights, state = attn(query, keys)
    for t in range(6):
        inside = (torch.arange(9) - t).abs() <= 2
        assert (weights[:, t, ~inside] == 0).all()
        assert (weights[:, t, inside] > 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 6))
    assert state["step"].tolist() == [6, 6]


@pytest.mark.parametrize("mode", MODES)
def test_stepping_with_state_equals_one_call(mode):
    attn = LocalAttention(4, 4, window=2, mode=mode, score="general")
    query, keys = torch.randn(2, 7, 4), torch.randn(2, 6, 4)
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[1, 4:] = False
    # Seven steps over six keys: local-m's last windows run past the source end.
    context, weights, final = attn(query, keys, mask=mask, state=attn.init_state(keys))
    state = attn.init_state(keys, mask=mask)
    for t in range(7):
        step_context, step_weights, state = attn(query[:, t:t + 1], keys, mask=mask,
                                                 state=state)
        torch.testing.assert_close(step_context, context[:, t:t + 1])
        torch.testing.assert_close(step_weights, weights[:, t:t + 1])
    if mode == "monotonic":
        assert state["step"].tolist() == final["step"].tolist() == [7, 7]
        # Row 1 has 4 keys: from t = 6 the window [t-2, t+2] holds none of them.
        assert (weights[1, 6] == 0).all() and (context[1, 6] == 0).all()


def test_monotonic_step_per_row_and_offset():
    attn = LocalAttention(3, 3, window=1, mode="monotonic", score="dot")
    query, keys = torch.randn(2, 2, 3), torch.randn(2, 8, 3)
    _, full_weights, _ = attn(torch.cat([torch.randn(2, 4, 3), query], 1), keys)
    state = {"step": torch.tensor([4, 0])}
    _, weights, state = attn(query, keys, state=state)
    torch.testing.assert_close(weights[0], full_weights[0, 4:])  # steps 4 and 5
    assert (weights[1, 0, 2:] == 0).all() and (weights[1, 1, 3:] == 0).all()
    assert state["step"].tolist() == [6, 2]


@pytest.mark.parametrize("mode", MODES)
def test_precomputed_state_equals_fresh_path(mode):
    attn = LocalAttention(4, 5, window=2, mode=mode, score="concat", hidden_dim=3)
    query, keys = torch.randn(2, 3, 4), torch.randn(2, 7, 5)
    fresh = attn(query, keys)
    state = attn.init_state(keys)
    reused = attn(query, keys, state=state)
    for got, want in zip(reused[:2], fresh[:2], strict=True):
        torch.testing.assert_close(got, want)
    assert reused[2]["key_proj"] is state["key_proj"]


@pytest.mark.parametrize("mode", MODES)
def test_fully_masked_rows_give_zeros_and_finite_grads(mode):
    attn = LocalAttention(3, 3, window=1, mode=mode, score="general")
    query = torch.randn(2, 3, 3, requires_grad=True)
    keys = torch.randn(2, 5, 3, requires_grad=True)
    mask = torch.ones(2, 3, 5, dtype=torch.bool)
    mask[0, 1] = False
    mask[1] = False
    context, weights, _ = attn(query, keys, mask=mask)
    assert (weights[0, 1] == 0).all() and (context[0, 1] == 0).all()
    assert (weights[1] == 0).all() and (context[1] == 0).all()
    (context.square().sum() + weights.sum()).backward()
    for t in (query.grad, keys.grad, *(p.grad for p in attn.parameters())):
        assert torch.isfinite(t).all()


def test_predictive_gradient_reaches_position_network():
    attn = LocalAttention(4, 4, window=2, mode="predictive", score="dot", dtype=F64)
    query = torch.randn(2, 3, 4, dtype=F64, requires_grad=True)
    keys = torch.randn(2, 9, 4, dtype=F64, requires_grad=True)
    context, _, _ = attn(query, keys)
    context.sum().backward()
    assert attn.position_proj.weight.grad.abs().sum() > 0
    assert attn.position_vector.grad.abs().sum() > 0
    # Away from the window edges the map is smooth: gradcheck through p_t.
    assert torch.autograd.gradcheck(lambda q, k: attn(q, k)[0], (query, keys))


@pytest.mark.parametrize("mode", MODES)
def test_bfloat16_runs(mode):
    golden = LocalAttention(8, 8, window=3, mode=mode, score="general", dtype=F64)
    low = LocalAttention(8, 8, window=3, mode=mode, score="general", dtype=torch.bfloat16)
    low.load_state_dict({k: v.to(torch.bfloat16) for k, v in golden.state_dict().items()})
    query, keys = torch.randn(2, 4, 8, dtype=F64), torch.randn(2, 11, 8, dtype=F64)
    context, weights, _ = low(query.to(torch.bfloat16), keys.to(torch.bfloat16))
    assert context.dtype == weights.dtype == torch.bfloat16
    want_context, want_weights, _ = golden(query, keys)
    # Loose: bf16 keeps ~3 significant digits and local-p's window edge may move.
    assert (context.double() - want_context).abs().max() < 0.15
    assert (weights.double() - want_weights).abs().mean() < 0.02
    context.float().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in low.parameters())


# --- errors --------------------------------------------------------------------------

def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="window"):
        LocalAttention(4, 4, window=0)
    with pytest.raises(ValueError, match="mode"):
        LocalAttention(4, 4, mode="local-q")
    with pytest.raises(ValueError, match="score"):
        LocalAttention(4, 4, score="location")
    with pytest.raises(ValueError, match="query_dim == key_dim"):
        LocalAttention(4, 5, score="dot")
    with pytest.raises(ValueError, match="predict_dim"):
        LocalAttention(4, 4, predict_dim=-2)
    monotonic = LocalAttention(4, 4, mode="monotonic")
    query, keys = torch.randn(2, 1, 4), torch.randn(2, 5, 4)
    with pytest.raises(ValueError, match="step"):
        monotonic(query, keys, state={"step": torch.zeros(3, dtype=torch.long)})
    with pytest.raises(ValueError, match="step"):
        monotonic(query, keys, state={"step": torch.zeros(2)})
    with pytest.raises(ValueError, match="query"):
        monotonic(torch.randn(2, 1, 3), keys)
    with pytest.raises(ValueError, match="key_proj"):
        monotonic(query, keys, state={"key_proj": torch.randn(2, 4, 4)})
    with pytest.raises(ValueError, match="mask"):
        monotonic(query, keys, mask=torch.ones(2, 4, dtype=torch.bool))
