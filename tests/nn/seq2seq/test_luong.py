"""LuongAttention (Luong, Pham & Manning 2015), global attention with four scores."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnkit.nn.seq2seq.luong import LuongAttention
from attnkit.testing import assert_oracle_close

F64 = torch.float64
MODES = ["dot", "general", "concat", "location"]


def _softmax(logits):
    z = sum(math.exp(x) for x in logits)
    return [math.exp(x) / z for x in logits]


def _mix(weights, rows):
    """sum_j weights[j] * rows[j] for plain lists."""
    return [sum(w * row[i] for w, row in zip(weights, rows, strict=True))
            for i in range(len(rows[0]))]


def _make(query_dim, key_dim, mode, **kwargs):
    if mode == "location":
        kwargs.setdefault("max_source_len", 12)
    return LuongAttention(query_dim, key_dim, mode=mode, **kwargs)


# --- each formula by hand ------------------------------------------------------------

def test_dot_by_hand():
    attn = LuongAttention(2, 2, mode="dot")
    keys = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
    context, weights, _ = attn(torch.tensor([[[1.0, 2.0]]], dtype=F64),
                               torch.tensor([keys], dtype=F64))
    a = _softmax([1.0, 2.0, 3.0])  # h_t . h_s
    torch.testing.assert_close(weights, torch.tensor([[a]], dtype=F64))
    torch.testing.assert_close(context, torch.tensor([[_mix(a, keys)]], dtype=F64))


def test_general_by_hand():
    attn = LuongAttention(2, 3, mode="general", dtype=F64)
    with torch.no_grad():
        attn.score.weight.weight.copy_(torch.tensor([[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]]))
    keys = [[1.0, 0.0, 0.0], [0.0, 1.0, 1.0], [1.0, 1.0, 0.0]]
    # W_a h_s = (1, 0), (2, 0), (1, 1); h_t = (1, 2) -> scores 1, 2, 3
    context, weights, state = attn(torch.tensor([[[1.0, 2.0]]], dtype=F64),
                                   torch.tensor([keys], dtype=F64))
    a = _softmax([1.0, 2.0, 3.0])
    torch.testing.assert_close(weights, torch.tensor([[a]], dtype=F64))
    torch.testing.assert_close(context, torch.tensor([[_mix(a, keys)]], dtype=F64))
    torch.testing.assert_close(state["key_proj"][0, 1], torch.tensor([2.0, 0.0], dtype=F64))


def test_concat_by_hand_and_as_one_matrix_on_the_concatenation():
    attn = LuongAttention(2, 2, mode="concat", hidden_dim=2, dtype=F64)
    w_q = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=F64)
    w_k = torch.tensor([[1.0, 1.0], [0.0, -1.0]], dtype=F64)
    v_a = torch.tensor([1.0, 1.0], dtype=F64)
    with torch.no_grad():
        attn.score.query_weight.weight.copy_(w_q)
        attn.score.key_weight.weight.copy_(w_k)
        attn.score.score_vector.copy_(v_a)
    query, keys = [0.5, -0.5], [[1.0, 0.0], [0.0, 1.0], [2.0, -1.0]]
    # W_k h_s = (1, 0), (1, -1), (1, 1); W_q h_t = (0.5, -0.5)
    e = [math.tanh(1.5) + math.tanh(-0.5), math.tanh(1.5) + math.tanh(-1.5),
         math.tanh(1.5) + math.tanh(0.5)]
    context, weights, _ = attn(torch.tensor([[query]], dtype=F64), torch.tensor([keys], dtype=F64))
    a = _softmax(e)
    torch.testing.assert_close(weights, torch.tensor([[a]], dtype=F64))
    torch.testing.assert_close(context, torch.tensor([[_mix(a, keys)]], dtype=F64))
    # The paper's form: one W_a (hidden, Dq + Dk) applied to [h_t; h_s].
    w_a = torch.cat([w_q, w_k], dim=1)
    paper = [v_a @ torch.tanh(w_a @ torch.tensor(query + k, dtype=F64)) for k in keys]
    torch.testing.assert_close(weights[0, 0], torch.softmax(torch.stack(paper), 0))


def test_location_by_hand_truncated_and_masked():
    attn = LuongAttention(2, 5, mode="location", max_source_len=4, value_dim=2, dtype=F64)
    with torch.no_grad():
        attn.score.weight.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0],
                                                     [2.0, -1.0]]))
    query = torch.tensor([[[1.0, 0.5]]], dtype=F64)  # W_a h_t = (1, 0.5, 1.5, 1.5)
    keys, values = torch.randn(1, 3, 5, dtype=F64), torch.randn(1, 3, 2, dtype=F64)
    _, weights, _ = attn(query, keys, values)
    torch.testing.assert_close(weights, torch.tensor([[_softmax([1.0, 0.5, 1.5])]], dtype=F64))
    mask = torch.tensor([[True, False, True]])
    context, weights, _ = attn(query, keys, values, mask=mask)
    a = _softmax([1.0, 1.5])
    torch.testing.assert_close(weights, torch.tensor([[[a[0], 0.0, a[1]]]], dtype=F64))
    torch.testing.assert_close(context, a[0] * values[:, :1] + a[1] * values[:, 2:])


def test_scale_multiplies_dot_scores():
    attn = LuongAttention(2, 2, mode="dot", scale=True, dtype=F64)
    with torch.no_grad():
        attn.score_scale.fill_(0.5)
    _, weights, _ = attn(torch.tensor([[[1.0, 2.0]]], dtype=F64),
                         torch.tensor([[[1.0, 0.0], [0.0, 1.0]]], dtype=F64))
    torch.testing.assert_close(weights, torch.tensor([[_softmax([0.5, 1.0])]], dtype=F64))


# --- properties ----------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_weights_normalized_masked_and_zero_rows(mode):
    query = torch.randn(2, 3, 4, requires_grad=True)
    keys = torch.randn(2, 6, 4, requires_grad=True)
    values = torch.randn(2, 6, 3, requires_grad=True)
    attn = _make(4, 4, mode, value_dim=3)
    mask = torch.rand(2, 3, 6) > 0.4
    mask[0, 0] = False  # nothing to attend to
    mask[1, 2] = True
    context, weights, _ = attn(query, keys, values, mask=mask)
    assert context.shape == (2, 3, 3) and weights.shape == (2, 3, 6)
    nonempty = mask.any(-1)
    torch.testing.assert_close(weights.sum(-1), nonempty.float())
    assert (weights[~mask] == 0).all()
    assert (context[0, 0] == 0).all()
    (context.square().sum() + weights.sum()).backward()
    for t in (query.grad, keys.grad, values.grad, *(p.grad for p in attn.parameters())):
        assert t is None or torch.isfinite(t).all()


@pytest.mark.parametrize("mode", MODES)
def test_precomputed_state_and_stepping_equal_one_call(mode):
    attn = _make(4, 4, mode)
    query, keys = torch.randn(2, 4, 4), torch.randn(2, 7, 4)
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[0, 5:] = False
    context, weights, _ = attn(query, keys, mask=mask)
    state = attn.init_state(keys, mask=mask)
    for t in range(4):
        step_context, step_weights, state = attn(query[:, t:t + 1], keys, mask=mask,
                                                 state=state)
        torch.testing.assert_close(step_context, context[:, t:t + 1])
        torch.testing.assert_close(step_weights, weights[:, t:t + 1])


@pytest.mark.parametrize("mode", ["general", "concat"])
def test_gradcheck_float64(mode):
    attn = _make(3, 2, mode, dtype=F64)
    query = torch.randn(2, 2, 3, dtype=F64, requires_grad=True)
    keys = torch.randn(2, 4, 2, dtype=F64, requires_grad=True)
    mask = torch.tensor([[1, 1, 0, 1], [1, 0, 0, 0]], dtype=torch.bool)
    assert torch.autograd.gradcheck(lambda q, k: attn(q, k, mask=mask)[0], (query, keys))


@settings(max_examples=15, deadline=None)
@given(mode=st.sampled_from(["dot", "general", "concat"]), k_len=st.integers(1, 7),
       seed=st.integers(0, 2**16))
def test_key_value_permutation_invariance(mode, k_len, seed):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    attn = _make(3, 3, mode, value_dim=2, dtype=F64)
    query = torch.randn(2, 2, 3, generator=gen, dtype=F64)
    keys = torch.randn(2, k_len, 3, generator=gen, dtype=F64)
    values = torch.randn(2, k_len, 2, generator=gen, dtype=F64)
    mask = torch.rand(2, k_len, generator=gen) > 0.3
    perm = torch.randperm(k_len, generator=gen)
    context, weights, _ = attn(query, keys, values, mask=mask)
    p_context, p_weights, _ = attn(query, keys[:, perm], values[:, perm], mask=mask[:, perm])
    torch.testing.assert_close(p_context, context)
    torch.testing.assert_close(p_weights, weights[..., perm])


@pytest.mark.parametrize("mode", MODES)
def test_bfloat16_runs_and_stays_close(mode):
    golden_module = _make(8, 8, mode, dtype=F64)
    query, keys = torch.randn(2, 3, 8, dtype=F64), torch.randn(2, 9, 8, dtype=F64)
    low = _make(8, 8, mode, dtype=torch.bfloat16)
    low.load_state_dict({k: v.to(torch.bfloat16) for k, v in golden_module.state_dict().items()})
    args = (query.to(torch.bfloat16).requires_grad_(), keys.to(torch.bfloat16))
    context, weights, _ = low(*args)
    assert context.dtype == weights.dtype == torch.bfloat16
    # The reference is the float64 module fed bf16-rounded inputs and weights,
    # i.e. the error that bf16 storage alone causes.
    reference_module = _make(8, 8, mode, dtype=F64)
    reference_module.load_state_dict({k: v.to(F64) for k, v in low.state_dict().items()})
    reference = reference_module(*(a.detach().to(F64) for a in args))[0].to(torch.bfloat16)
    assert_oracle_close(context, reference, golden_module(query, keys)[0], what="bf16 context")
    context.float().sum().backward()
    assert torch.isfinite(args[0].grad).all()
    assert all(torch.isfinite(p.grad).all() for p in low.parameters())


# --- errors --------------------------------------------------------------------------

def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="query_dim == key_dim"):
        LuongAttention(4, 5, mode="dot")
    with pytest.raises(ValueError, match="mode"):
        LuongAttention(4, 4, mode="bilinear")
    with pytest.raises(ValueError, match="max_source_len"):
        LuongAttention(4, 4, mode="location")
    with pytest.raises(ValueError, match="scale"):
        LuongAttention(4, 4, mode="concat", scale=True)
    with pytest.raises(ValueError, match="hidden_dim"):
        LuongAttention(4, 4, mode="concat", hidden_dim=0)
    location = LuongAttention(4, 4, mode="location", max_source_len=3)
    with pytest.raises(ValueError, match="max_source_len=3"):
        location(torch.randn(1, 1, 4), torch.randn(1, 5, 4))
    general = LuongAttention(4, 6, mode="general")
    with pytest.raises(ValueError, match="query"):
        general(torch.randn(1, 1, 6), torch.randn(1, 5, 6))
    with pytest.raises(ValueError, match="keys"):
        general(torch.randn(1, 1, 4), torch.randn(1, 5, 4))
    with pytest.raises(ValueError, match="key_proj"):
        general(torch.randn(1, 1, 4), torch.randn(1, 5, 6),
                state={"key_proj": torch.randn(1, 4, 4)})
    with pytest.raises(TypeError, match="mask"):
        general(torch.randn(1, 1, 4), torch.randn(1, 5, 6), mask=torch.ones(1, 5))


# --- Keras 3 parity ----------------------------------------------------------------------

def _keras():
    keras = pytest.importorskip("keras")  # in the dev extra; conftest selects torch
    assert keras.backend.backend() == "torch", "keras must run on its torch backend here"
    return keras


@pytest.mark.parametrize("use_scale", [False, True])
def test_dot_matches_keras_attention(use_scale):
    keras = _keras()
    query, keys, values = torch.randn(2, 4, 5), torch.randn(2, 6, 5), torch.randn(2, 6, 3)
    query_mask = torch.tensor([[1, 0, 1, 1], [1, 1, 1, 1]], dtype=torch.bool)
    value_mask = torch.tensor([[1, 1, 0, 1, 0, 1], [0, 1, 1, 1, 1, 1]], dtype=torch.bool)
    layer = keras.layers.Attention(use_scale=use_scale, score_mode="dot")
    layer.build([tuple(query.shape), tuple(values.shape), tuple(keys.shape)])
    attn = LuongAttention(5, 5, mode="dot", value_dim=3, scale=use_scale)
    if use_scale:  # Keras's scalar starts at 1 like ours; move both so the test means something
        layer.scale.assign(0.7)
        with torch.no_grad():
            attn.score_scale.fill_(0.7)
    out, scores = layer([query, values, keys], mask=[query_mask, value_mask],
                        return_attention_scores=True)
    # Keras zeroes the output of masked queries; an attnkit row with nothing allowed
    # has a zero context, so the query mask goes into the (B, Lq, Lk) mask.
    mask = query_mask[:, :, None] & value_mask[:, None, :]
    context, weights, _ = attn(query, keys, values, mask=mask)
    torch.testing.assert_close(context, torch.as_tensor(out).cpu(), rtol=1e-5, atol=1e-6)
    rows = query_mask[:, :, None].expand_as(weights)
    torch.testing.assert_close(weights[rows], torch.as_tensor(scores).cpu()[rows],
                               rtol=1e-5, atol=1e-6)
    assert (weights[~rows] == 0).all()
