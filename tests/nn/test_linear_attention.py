"""LinearAttention module: shapes, parallel vs recurrent decoding, masks, dtypes, errors;
and a smoke run of the decoding-latency benchmark."""

from __future__ import annotations

import json

import pytest
import torch

from attnkit.functional.linear import FavorFeatures, LinearState, elu_plus_one
from attnkit.nn.linear_attention import LinearAttention
from attnkit.testing import FLOORS


def make(feature_map="elu", causal=True, **kwargs):
    torch.manual_seed(0)
    return LinearAttention(24, 3, feature_map=feature_map, causal=causal, chunk_size=5,
                           seed=0, **kwargs).double()


@pytest.mark.parametrize("feature_map", ["elu", "favor", "identity"])
@pytest.mark.parametrize("causal", [False, True])
def test_shapes_and_state(feature_map, causal):
    module = make(feature_map, causal, normalize=feature_map != "identity")
    out, state = module(torch.randn(2, 11, 24, dtype=torch.float64))
    assert out.shape == (2, 11, 24)
    if causal:
        M = module.feature_map.num_features if feature_map == "favor" else 8
        assert state.fast_weights.shape == (2, 3, 8, M) and state.normalizer.shape == (2, 3, M)
    else:
        assert state is None


@pytest.mark.parametrize("feature_map", ["elu", "favor"])
def test_recurrent_decoding_equals_parallel_forward(feature_map):
    module = make(feature_map)
    x = torch.randn(2, 17, 24, dtype=torch.float64)
    full, full_state = module(x)
    # Prefill 6 tokens in parallel, then decode the rest one token at a time.
    prefix_out, state = module(x[:, :6])
    outs = [prefix_out]
    for t in range(6, 17):
        out, state = module(x[:, t:t + 1], state=state)
        outs.append(out)
    torch.testing.assert_close(torch.cat(outs, dim=1), full, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(state.fast_weights, full_state.fast_weights)
    # Decoding from scratch (an all-zero state) gives the same as no state at all.
    B, H, hd = 2, 3, 8
    M = full_state.normalizer.shape[-1]
    zero = LinearState(torch.zeros(B, H, hd, M, dtype=torch.float64),
                       torch.zeros(B, H, M, dtype=torch.float64))
    first, _ = module(x[:, :1], state=zero)
    torch.testing.assert_close(first, full[:, :1])


def test_non_causal_matches_functional_and_ignores_padding():
    module = make(causal=False)
    x = torch.randn(2, 9, 24, dtype=torch.float64)
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[1, 6:] = False
    out, _ = module(x, mask=mask)
    x2 = x.clone()
    x2[1, 6:] = torch.randn(3, 24, dtype=torch.float64) * 100
    out2, _ = module(x2, mask=mask)
    torch.testing.assert_close(out2[:, :6], out[:, :6], atol=0, rtol=0)
    torch.testing.assert_close(out2[0], out[0], atol=0, rtol=0)
    # Every non-causal query sees the same keys: batch row 1 equals running it alone,
    # truncated to its real tokens.
    alone, _ = module(x[1:, :6])
    torch.testing.assert_close(out[1:, :6], alone)


def test_causal_outputs_independent_of_later_tokens():
    module = make()
    x = torch.randn(1, 14, 24, dtype=torch.float64)
    out, _ = module(x)
    x2 = x.clone()
    x2[:, 8:] += torch.randn(1, 6, 24, dtype=torch.float64)
    out2, _ = module(x2)
    torch.testing.assert_close(out2[:, :8], out[:, :8], atol=0, rtol=0)


def test_chunk_size_does_not_change_module_output():
    x = torch.randn(2, 23, 24, dtype=torch.float64)
    module = make()
    base, _ = module(x)
    for chunk in (1, 4, 64):
        module.chunk_size = chunk
        torch.testing.assert_close(module(x)[0], base, atol=1e-12, rtol=1e-12)


def test_callable_feature_map_and_favor_state_dict_round_trip():
    module = LinearAttention(16, 2, feature_map=elu_plus_one, causal=True)
    assert module(torch.randn(1, 4, 16))[0].shape == (1, 4, 16)
    a = LinearAttention(16, 2, feature_map="favor", num_features=32, seed=1)
    b = LinearAttention(16, 2, feature_map="favor", num_features=32, seed=2)
    assert isinstance(a.feature_map, FavorFeatures) and a.feature_map.num_features == 32
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 5, 16)
    torch.testing.assert_close(b(x)[0], a(x)[0], atol=0, rtol=0)


def test_gradients_flow_through_decoding():
    module = make()
    x = torch.randn(2, 5, 24, dtype=torch.float64, requires_grad=True)
    _, state = module(x[:, :4])
    out, _ = module(x[:, 4:], state=state)
    out.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad[:, :4].abs().sum() > 0
    assert all(torch.isfinite(p.grad).all() for p in module.parameters())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_module(dtype):
    torch.manual_seed(0)
    module = LinearAttention(32, 4, causal=True, chunk_size=8)
    x = torch.randn(2, 20, 32)
    expected, _ = module(x)
    out, state = module.to(dtype)(x.to(dtype))
    assert out.dtype == dtype and state.fast_weights.dtype == torch.float32
    # Outputs are of order 1 and the attention core runs in float32, so the rounding of
    # inputs, weights and projections stays within the 2-ulp floor of the dtype.
    assert (out.float() - expected).abs().max() <= FLOORS[dtype]


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="divisible"):
        LinearAttention(10, 3)
    with pytest.raises(ValueError, match="feature_map"):
        LinearAttention(8, 2, feature_map="relu")
    with pytest.raises(TypeError, match="feature_map"):
        LinearAttention(8, 2, feature_map=3)
    with pytest.raises(ValueError, match="num_heads"):
        LinearAttention(8, 0)
    module = LinearAttention(8, 2, causal=False)
    with pytest.raises(ValueError, match="embed_dim"):
        module(torch.randn(2, 3, 7))
    with pytest.raises(ValueError, match="x must be"):
        module(torch.randn(3, 8))
    with pytest.raises(ValueError, match="causal"):
        module(torch.randn(2, 1, 8), state=LinearState(torch.zeros(2, 2, 4, 4),
                                                        torch.zeros(2, 2, 4)))
    causal = LinearAttention(8, 2, causal=True)
    _, state = causal(torch.randn(2, 3, 8))
    with pytest.raises(ValueError, match="mask"):
        causal(torch.randn(2, 1, 8), state=state, mask=torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="state"):
        causal(torch.randn(1, 1, 8), state=state)


def test_decoding_benchmark_smoke(tmp_path):
    # The benchmark's numbers are not checked (no timed assertions); only that it runs
    # and reports every (mechanism, step) pair.
    from attnkit.bench.classic_linear import run, softmax_decode_step

    rows = run(quick=True, out_dir=tmp_path)
    assert {(r["mechanism"], r["step"]) for r in rows} == {
        (m, s) for m in ("softmax_kv_cache", "linear_elu", "linear_favor") for s in (10, 200)}
    assert all(r["median_us"] > 0 for r in rows)
    report = json.loads((tmp_path / "classic_linear.json").read_text())
    assert len(report["rows"]) == 6 and (tmp_path / "classic_linear.md").exists()
    # The minimal KV-cache decoder is itself right: its step equals full causal attention.
    import attnkit

    q, k, v = (torch.randn(1, 2, 6, 4, dtype=torch.float64) for _ in range(3))
    cache_k, cache_v = torch.zeros(1, 2, 8, 4, dtype=torch.float64), \
        torch.zeros(1, 2, 8, 4, dtype=torch.float64)
    steps = [softmax_decode_step(cache_k, cache_v, t, q[:, :, t], k[:, :, t], v[:, :, t])
             for t in range(6)]
    full, _ = attnkit.attention(q, k, v, causal=True)
    torch.testing.assert_close(torch.stack(steps, dim=2), full)
