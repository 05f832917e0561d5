"""AdditiveAttention (Bahdanau et al. 2014) and the chunked additive score kernel."""

from __future__ import annotations

import math

import pytest
import torch

from attnkit.functional.additive import (
    additive_scores,
    additive_scores_broadcast,
    additive_scores_chunked,
)
from attnkit.nn.seq2seq.additive import AdditiveAttention
from attnkit.testing import assert_oracle_close

PATHS = {"chunked": 0, "broadcast": None}  # chunk_threshold for each score path


def _module(query_dim, key_dim, hidden_dim, path, **kwargs):
    return AdditiveAttention(query_dim, key_dim, hidden_dim, chunk_threshold=PATHS[path],
                             **kwargs)


# --- the formula by hand -------------------------------------------------------------

@pytest.mark.parametrize("path", PATHS)
def test_hand_computed_example(path):
    attn = _module(2, 2, 2, path, dtype=torch.float64)
    with torch.no_grad():
        attn.query_proj.weight.copy_(torch.tensor([[1.0, 2.0], [0.0, 1.0]]))  # W_a
        attn.key_proj.weight.copy_(torch.tensor([[0.5, 0.0], [1.0, -1.0]]))  # U_a
        attn.score_vector.copy_(torch.tensor([1.0, -2.0]))  # v_a
    query = torch.tensor([[[1.0, -1.0]]], dtype=torch.float64)  # W q = (-1, -1)
    keys = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [-1.0, 1.0]]], dtype=torch.float64)
    # U k_j = (0.5, 1), (0, -2), (-0.5, -2); e_j = tanh(-1 + Uk_j0) - 2 tanh(-1 + Uk_j1)
    e = [math.tanh(-0.5) - 2 * math.tanh(0.0),
         math.tanh(-1.0) - 2 * math.tanh(-3.0),
         math.tanh(-1.5) - 2 * math.tanh(-3.0)]
    z = sum(math.exp(x) for x in e)
    a = [math.exp(x) / z for x in e]
    context_expected = [a[0] * 1 + a[1] * 0 + a[2] * -1, a[0] * 0 + a[1] * 2 + a[2] * 1]

    context, weights, state = attn(query, keys)
    torch.testing.assert_close(weights, torch.tensor([[a]], dtype=torch.float64))
    torch.testing.assert_close(context, torch.tensor([[context_expected]], dtype=torch.float64))
    torch.testing.assert_close(state["key_proj"][0, 1], torch.tensor([0.0, -2.0],
                                                                       dtype=torch.float64))


def test_bias_adds_inside_tanh():
    attn = _module(1, 1, 1, "broadcast", bias=True, dtype=torch.float64)
    with torch.no_grad():
        attn.query_proj.weight.fill_(1.0)
        attn.key_proj.weight.fill_(1.0)
        attn.key_proj.bias.fill_(0.5)
        attn.score_vector.fill_(2.0)
    query = torch.tensor([[[0.25]]], dtype=torch.float64)
    keys = torch.tensor([[[1.0], [-1.0]]], dtype=torch.float64)
    e = [2 * math.tanh(0.25 + 1.0 + 0.5), 2 * math.tanh(0.25 - 1.0 + 0.5)]
    w0 = 1 / (1 + math.exp(e[1] - e[0]))
    _, weights, _ = attn(query, keys)
    torch.testing.assert_close(weights, torch.tensor([[[w0, 1 - w0]]], dtype=torch.float64))


# --- the chunked kernel --------------------------------------------------------------

def _score_inputs(batch, q_len, k_len, dim, dtype=torch.float64, grad=True):
    make = lambda *s: torch.randn(*s, dtype=dtype, requires_grad=grad)  # noqa: E731
    return make(batch, q_len, dim), make(batch, k_len, dim), make(dim)


# B=3, Lq=3, Lk=4, d=3: a (batch, query) row holds Lk * d = 12 activations.
# 1: one row per block; 24: two rows, so Lq splits 2 + 1; 72: six rows = two whole
# batch entries per block, the last block partial; 10**6: a single block.
@pytest.mark.parametrize("chunk_elements", [1, 24, 72, 10**6])
def test_chunked_gradcheck_float64(chunk_elements):
    inputs = _score_inputs(3, 3, 4, 3)
    fn = lambda wq, uk, v: additive_scores_chunked(wq, uk, v,  # noqa: E731
                                                   chunk_elements=chunk_elements)
    assert torch.autograd.gradcheck(fn, inputs)


@pytest.mark.parametrize("needs", [(True, False, False), (False, True, False),
                                   (False, False, True)])
def test_chunked_gradcheck_partial_requires_grad(needs):
    inputs = [t.detach().requires_grad_(n)
              for t, n in zip(_score_inputs(2, 3, 4, 3), needs, strict=True)]
    fn = lambda wq, uk, v: additive_scores_chunked(wq, uk, v, chunk_elements=12)  # noqa: E731
    assert torch.autograd.gradcheck(fn, inputs)


@pytest.mark.parametrize("chunk_elements", [1, 59, 1000, 10**6])
def test_chunked_equals_broadcast_float32(chunk_elements):
    wq, uk, v = _score_inputs(3, 6, 11, 13, dtype=torch.float32)
    grad_out = torch.randn(3, 6, 11)
    results = []
    for fn in (additive_scores_broadcast,
               lambda *x: additive_scores_chunked(*x, chunk_elements=chunk_elements)):
        scores = fn(wq, uk, v)
        grads = torch.autograd.grad(scores, (wq, uk, v), grad_out)
        results.append((scores, *grads))
    for got, want in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_additive_scores_dispatch_by_threshold():
    wq, uk, v = _score_inputs(1, 2, 3, 4, grad=False)
    expected = additive_scores_broadcast(wq, uk, v)
    for threshold in (0, 23, 24, None):  # 1 * 2 * 3 * 4 = 24 activations
        torch.testing.assert_close(additive_scores(wq, uk, v, chunk_threshold=threshold),
                                   expected)
    with torch.enable_grad():
        wq.requires_grad_()
        assert "Chunked" in type(additive_scores(wq, uk, v, chunk_threshold=23).grad_fn).__name__
        assert "Chunked" not in type(additive_scores(wq, uk, v, chunk_threshold=24)
                                     .grad_fn).__name__


def test_chunked_bfloat16_close_to_float64():
    wq, uk, v = _score_inputs(2, 5, 9, 16, dtype=torch.float64, grad=False)
    golden = additive_scores_broadcast(wq, uk, v)
    low = [t.to(torch.bfloat16) for t in (wq, uk, v)]
    reference = additive_scores_broadcast(*low)
    candidate = additive_scores_chunked(*low, chunk_elements=100)
    assert candidate.dtype == torch.bfloat16
    assert_oracle_close(candidate, reference, golden, what="bf16 scores")


# --- module properties -----------------------------------------------------------------

@pytest.mark.parametrize("path", PATHS)
def test_weights_normalized_and_masked(path):
    attn = _module(5, 3, 4, path, value_dim=2)
    query, keys, values = torch.randn(2, 4, 5), torch.randn(2, 6, 3), torch.randn(2, 6, 2)
    mask = torch.tensor([[1, 1, 0, 1, 0, 1], [1, 1, 1, 1, 0, 0]], dtype=torch.bool)
    context, weights, _ = attn(query, keys, values, mask=mask)
    assert context.shape == (2, 4, 2) and weights.shape == (2, 4, 6)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4))
    assert (weights.masked_select(~mask[:, None, :].expand_as(weights)) == 0).all()
    torch.testing.assert_close(context, weights @ values)


@pytest.mark.parametrize("path", PATHS)
def test_fully_masked_row_gives_zeros_and_finite_grads(path):
    attn = _module(3, 3, 4, path)
    query = torch.randn(2, 3, 3, requires_grad=True)
    keys = torch.randn(2, 5, 3, requires_grad=True)
    mask = torch.ones(2, 3, 5, dtype=torch.bool)
    mask[0, 1] = False  # query row 1 of batch 0 may attend to nothing
    mask[1] = False  # the whole of batch 1 too
    context, weights, _ = attn(query, keys, mask=mask)
    assert (weights[0, 1] == 0).all() and (context[0, 1] == 0).all()
    assert (weights[1] == 0).all() and (context[1] == 0).all()
    (context.square().sum() + weights.sum()).backward()
    for t in (query.grad, keys.grad, *(p.grad for p in attn.parameters())):
        assert torch.isfinite(t).all()


def test_precomputed_state_equals_fresh_path():
    attn = _module(4, 6, 5, "broadcast")
    query, keys = torch.randn(2, 3, 4), torch.randn(2, 7, 6)
    mask = torch.rand(2, 7) > 0.3
    fresh = attn(query, keys, mask=mask)
    state = attn.init_state(keys, mask=mask)
    reused = attn(query, keys, mask=mask, state=state)
    for got, want in zip(reused[:2], fresh[:2], strict=True):
        torch.testing.assert_close(got, want)
    assert reused[2]["key_proj"] is state["key_proj"]


def test_forward_reuses_state_projection():
    attn = _module(2, 2, 3, "broadcast")
    query, keys = torch.randn(1, 1, 2), torch.randn(1, 4, 2)
    state = {"key_proj": torch.zeros(1, 4, 3)}  # U k = 0: scores no longer depend on the keys
    _, weights, _ = attn(query, keys, state=state)
    _, weights_other_keys, _ = attn(query, torch.randn(1, 4, 2), state=state)
    torch.testing.assert_close(weights, torch.full((1, 1, 4), 0.25))
    torch.testing.assert_close(weights_other_keys, weights)


@pytest.mark.parametrize("path", PATHS)
def test_stepping_with_state_equals_one_call(path):
    attn = _module(4, 4, 6, path)
    query, keys = torch.randn(2, 5, 4), torch.randn(2, 8, 4)
    mask = torch.ones(2, 8, dtype=torch.bool)
    mask[1, 5:] = False
    context, weights, _ = attn(query, keys, mask=mask)
    state = attn.init_state(keys, mask=mask)
    for t in range(5):
        step_context, step_weights, state = attn(query[:, t:t + 1], keys, mask=mask,
                                                 state=state)
        torch.testing.assert_close(step_context, context[:, t:t + 1])
        torch.testing.assert_close(step_weights, weights[:, t:t + 1])


def test_module_paths_agree_in_float64_and_gradcheck():
    torch.manual_seed(1)
    chunked = _module(3, 4, 5, "chunked", dtype=torch.float64)
    broadcast = _module(3, 4, 5, "broadcast", dtype=torch.float64)
    broadcast.load_state_dict(chunked.state_dict())
    query = torch.randn(2, 3, 3, dtype=torch.float64, requires_grad=True)
    keys = torch.randn(2, 4, 4, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 0], [0, 0, 0, 0]], dtype=torch.bool)
    for got, want in zip(chunked(query, keys, mask=mask)[:2],
                         broadcast(query, keys, mask=mask)[:2], strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-14)
    assert torch.autograd.gradcheck(lambda q, k: chunked(q, k, mask=mask)[0], (query, keys))


@pytest.mark.parametrize("path", PATHS)
def test_bfloat16_runs_and_stays_close(path):
    golden_module = _module(8, 8, 16, "broadcast", dtype=torch.float64)
    query, keys = torch.randn(2, 3, 8, dtype=torch.float64), torch.randn(2, 9, 8,
                                                                         dtype=torch.float64)
    low = _module(8, 8, 16, path, dtype=torch.bfloat16)
    low.load_state_dict({k: v.to(torch.bfloat16) for k, v in golden_module.state_dict().items()})
    reference = _module(8, 8, 16, "broadcast", dtype=torch.bfloat16)
    reference.load_state_dict(low.state_dict())
    golden = golden_module(query, keys)[0]
    args = (query.to(torch.bfloat16), keys.to(torch.bfloat16))
    candidate = low(*args)[0]
    assert candidate.dtype == torch.bfloat16
    assert_oracle_close(candidate, reference(*args)[0], golden, what="bf16 context")
    candidate.float().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in low.parameters())


# --- errors --------------------------------------------------------------------------

def test_bad_inputs_name_the_argument():
    attn = AdditiveAttention(3, 4, 5, value_dim=2)
    query, keys, values = torch.randn(2, 1, 3), torch.randn(2, 6, 4), torch.randn(2, 6, 2)
    with pytest.raises(ValueError, match="query"):
        attn(torch.randn(2, 1, 4), keys, values)
    with pytest.raises(ValueError, match="keys"):
        attn(query, torch.randn(2, 6, 3), values)
    with pytest.raises(ValueError, match="values"):
        attn(query, keys)  # values default to keys, whose size 4 != value_dim 2
    with pytest.raises(TypeError, match="mask"):
        attn(query, keys, values, mask=torch.ones(2, 6))
    with pytest.raises(ValueError, match="mask"):
        attn(query, keys, values, mask=torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="key_proj"):
        attn(query, keys, values, state={"key_proj": torch.randn(2, 5, 5)})
    with pytest.raises(ValueError, match="keys"):
        attn.init_state(torch.randn(2, 6, 3))
    with pytest.raises(ValueError, match="hidden_dim"):
        AdditiveAttention(3, 4, 0)
    with pytest.raises(ValueError, match="chunk_threshold"):
        AdditiveAttention(3, 4, 5, chunk_threshold=-1)


def test_functional_bad_inputs_name_the_argument():
    wq, uk, v = _score_inputs(2, 3, 4, 5, grad=False)
    with pytest.raises(ValueError, match="v"):
        additive_scores(wq, uk, torch.randn(4, dtype=torch.float64))
    with pytest.raises(ValueError, match="uk"):
        additive_scores(wq, uk[0], v)
    with pytest.raises(TypeError, match="dtype"):
        additive_scores(wq, uk.float(), v)
    with pytest.raises(ValueError, match="chunk_elements"):
        additive_scores_chunked(wq, uk, v, chunk_elements=0)
    with pytest.raises(ValueError, match="chunk_threshold"):
        additive_scores(wq, uk, v, chunk_threshold=1.5)


# --- Keras 3 parity ----------------------------------------------------------------------

def _keras():
    keras = pytest.importorskip("keras")  # in the dev extra; conftest selects torch
    assert keras.backend.backend() == "torch", "keras must run on its torch backend here"
    return keras


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("use_scale", [True, False])
def test_matches_keras_additive_attention(path, use_scale):
    keras = _keras()
    batch, q_len, k_len, dim = 2, 4, 6, 5
    query, keys, values = (torch.randn(batch, q_len, dim), torch.randn(batch, k_len, dim),
                           torch.randn(batch, k_len, 3))
    query_mask = torch.tensor([[1, 1, 0, 1], [1, 1, 1, 1]], dtype=torch.bool)
    value_mask = torch.tensor([[1, 0, 1, 1, 0, 1], [1, 1, 1, 1, 1, 0]], dtype=torch.bool)

    layer = keras.layers.AdditiveAttention(use_scale=use_scale)
    out, scores = layer([query, values, keys], mask=[query_mask, value_mask],
                        return_attention_scores=True)
    # Keras scores sum_d scale_d * tanh(q_d + k_d): no W or U. attnkit's W_a and U_a
    # are set to the identity (hidden_dim = dim, no bias) and v_a to Keras's scale
    # vector (all ones when use_scale=False), which makes the formulas the same.
    attn = _module(dim, dim, dim, path, value_dim=3)
    with torch.no_grad():
        attn.query_proj.weight.copy_(torch.eye(dim))
        attn.key_proj.weight.copy_(torch.eye(dim))
        scale = layer.scale.value if use_scale else torch.ones(dim)
        attn.score_vector.copy_(torch.as_tensor(scale).detach().cpu())
    # Keras zeroes the output of masked queries; an attnkit mask row with nothing
    # allowed gives a zero context, so the query mask goes into the (B, Lq, Lk) mask.
    mask = query_mask[:, :, None] & value_mask[:, None, :]
    context, weights, _ = attn(query, keys, values, mask=mask)
    torch.testing.assert_close(context, torch.as_tensor(out).cpu(), rtol=1e-5, atol=1e-6)
    # Keras still reports weights for masked queries; attnkit reports zeros there.
    rows = query_mask[:, :, None].expand_as(weights)
    torch.testing.assert_close(weights[rows], torch.as_tensor(scores).cpu()[rows],
                               rtol=1e-5, atol=1e-6)
    assert (weights[~rows] == 0).all()


# --- benchmark smoke run -------------------------------------------------------------------

def test_benchmark_quick_run(tmp_path):
    from attnkit.bench.classic_additive import run

    rows = run(quick=True, out_dir=tmp_path)
    assert {row["impl"] for row in rows} == {"chunked", "broadcast"}
    assert all(row["status"] == "ok" and row["median_s"] > 0 for row in rows)
    assert all(row["peak_extra_mib"] is not None for row in rows)
    assert (tmp_path / "classic_additive.json").exists()
    assert (tmp_path / "classic_additive.md").exists()
