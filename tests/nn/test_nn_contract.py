"""The entry-point contract of the modules: every bad constructor argument or input raises
ValueError/TypeError naming the argument (never a RuntimeError or IndexError from inside
torch, never accepted silently); empty batches work."""

from __future__ import annotations

import math

import pytest
import torch

import attnkit.nn as N
from attnkit.functional.linear import LinearState
from attnkit.nn.seq2seq import ATTENTION_KINDS, build_attention

NAN, INF = math.nan, math.inf

# name -> (factory(**overrides), {argument: bad values}); every bad value must be refused
# with an error naming the argument.
CONSTRUCTORS = {
    "MultiHeadAttention": (lambda **o: N.MultiHeadAttention(**{"embed_dim": 8, "num_heads": 2,
                                                                **o}),
                           {"embed_dim": [0, -1, 8.0, True], "num_heads": [0, "2"],
                            "num_kv_heads": [0, 3], "kdim": [0], "dropout": [NAN, INF, 1.0, -0.1],
                            "bias": [1, None], "qk_norm": ["yes"], "batch_first": [0]}),
    "LinearAttention": (lambda **o: N.LinearAttention(**{"embed_dim": 8, "num_heads": 2, **o}),
                        {"embed_dim": [0, True], "chunk_size": [0, 2.5], "causal": [1, None],
                         "bias": ["x"], "normalize": [0], "eps": [0, NAN, INF, -1, "x"],
                         "num_features": [0, 2.5], "seed": [-1, 1.5]}),
    "AdditiveAttention": (lambda **o: N.AdditiveAttention(**{"query_dim": 4, "key_dim": 4,
                                                              "hidden_dim": 4, **o}),
                          {"query_dim": [0, True, 4.0], "hidden_dim": [-1], "value_dim": [0],
                           "bias": [1], "chunk_threshold": [-1, 1.5]}),
    "LuongAttention": (lambda **o: N.LuongAttention(**{"query_dim": 4, "key_dim": 4, **o}),
                       {"query_dim": [0, True], "mode": ["bilinear"], "scale": [1, "x"],
                        "max_source_len": [0, 2.5], "hidden_dim": [0]}),
    "LocalAttention": (lambda **o: N.LocalAttention(**{"query_dim": 4, "key_dim": 4, **o}),
                       {"window": [0, 1.5, True], "mode": ["global"], "score": ["location"],
                        "predict_dim": [0]}),
    "LocationSensitiveAttention": (
        lambda **o: N.LocationSensitiveAttention(**{"query_dim": 4, "key_dim": 4,
                                                    "hidden_dim": 4, **o}),
        {"query_dim": [True, 0], "kernel_size": [True, 4, 0], "num_filters": [0],
         "cumulative": [1, None]}),
    "MonotonicAttention": (lambda **o: N.MonotonicAttention(**{"query_dim": 4, "key_dim": 4,
                                                                "hidden_dim": 4, **o}),
                           {"key_dim": [True, 0], "mode": ["soft"],
                            "sigmoid_noise": [-1, NAN, INF, True],
                            "score_bias_init": [NAN, INF, "x"]}),
    "HardAttention": (lambda **o: N.HardAttention(**{"query_dim": 4, "key_dim": 4, **o}),
                      {"key_dim": [True, 0], "hidden_dim": [0, 2.5], "estimator": ["argmax"],
                       "temperature": [0, -1, NAN, INF, True], "baseline_decay": [1, NAN, -0.1]}),
    "PositionalAttention": (lambda **o: N.PositionalAttention(**{"max_query_len": 4,
                                                                 "max_key_len": 4, **o}),
                            {"max_key_len": [True, 0], "rank": [True, 0], "content": [3]}),
    "SqueezeExcitation": (lambda **o: N.SqueezeExcitation(**{"channels": 8, **o}),
                          {"channels": [0, True], "reduction": [0, 2.0],
                           "hidden_channels": [0], "bias": [1]}),
    "ChannelAttention": (lambda **o: N.ChannelAttention(**{"channels": 8, **o}),
                         {"channels": [-1], "bias": ["x"]}),
    "SpatialAttention": (lambda **o: N.SpatialAttention(**o),
                         {"kernel_size": [0, 4, True, 3.0], "bias": [None]}),
    "CBAM": (lambda **o: N.CBAM(**{"channels": 8, **o}),
             {"channels": [0], "kernel_size": [2]}),
    "RotaryEmbedding": (lambda **o: N.RotaryEmbedding(**{"head_dim": 8, **o}),
                        {"head_dim": [0, 7, True], "base": [1.0, NAN, INF, "x"]}),
    "SinusoidalPositionalEncoding": (
        lambda **o: N.SinusoidalPositionalEncoding(**{"dim": 8, "max_len": 4, **o}),
        {"dim": [0], "max_len": [0, 4.0], "base": [0.5, NAN]}),
}
CONSTRUCTOR_CASES = [(name, argument, value) for name, (_, table) in CONSTRUCTORS.items()
                     for argument, values in table.items() for value in values]


@pytest.mark.parametrize("name, argument, value", CONSTRUCTOR_CASES)
def test_bad_constructor_argument_is_refused_by_name(name, argument, value):
    build = CONSTRUCTORS[name][0]
    build()  # the defaults are valid
    with pytest.raises((TypeError, ValueError), match=argument):
        build(**{argument: value})


# --------------------------------------------------------------------------- dtypes


QUERY, KEYS = torch.randn(2, 3, 4), torch.randn(2, 5, 4)
MECHANISMS = {
    "additive": lambda: N.AdditiveAttention(4, 4, 4),
    "luong": lambda: N.LuongAttention(4, 4),
    "local": lambda: N.LocalAttention(4, 4, window=2),
    "location": lambda: N.LocationSensitiveAttention(4, 4, 4, kernel_size=3),
    "monotonic": lambda: N.MonotonicAttention(4, 4, 4),
    "hard": lambda: N.HardAttention(4, 4),
    "positional": lambda: N.PositionalAttention(4, 6),
}


@pytest.mark.parametrize("kind", sorted(MECHANISMS))
@pytest.mark.parametrize("argument", ["query", "keys", "values"])
def test_seq2seq_dtype_mismatch_names_the_argument_and_both_dtypes(kind, argument):
    inputs = {"query": QUERY, "keys": KEYS, "values": KEYS.clone()}
    inputs[argument] = inputs[argument].double()
    with pytest.raises(TypeError, match=rf"{argument} has dtype torch.float64 .* torch.float32"):
        MECHANISMS[kind]()(inputs["query"], inputs["keys"], inputs["values"])


@pytest.mark.parametrize("kind", sorted(MECHANISMS))
def test_seq2seq_init_state_checks_keys(kind):
    module = MECHANISMS[kind]()
    with pytest.raises(TypeError, match="keys has dtype torch.float64"):
        module.init_state(KEYS.double())
    with pytest.raises(TypeError, match="keys must be a tensor"):
        module.init_state(KEYS.tolist())
    with pytest.raises(ValueError, match="keys must be"):
        module.init_state(KEYS[:, :0])


@pytest.mark.parametrize("argument", ["query", "key", "value"])
def test_multihead_dtype_mismatch(argument):
    mha = N.MultiHeadAttention(8, 2)
    inputs = {name: torch.randn(2, 3, 8) for name in ("query", "key", "value")}
    inputs[argument] = inputs[argument].double()
    with pytest.raises(TypeError, match=rf"{argument} has dtype torch.float64 .* torch.float32"):
        mha(**inputs)


def test_multihead_integer_input_is_a_type_error():
    with pytest.raises(TypeError, match="query has dtype torch.int64"):
        N.MultiHeadAttention(8, 2)(torch.ones(2, 3, 8, dtype=torch.long))


def test_dtype_check_leaves_autocast_alone():
    mha = N.MultiHeadAttention(8, 2)
    x = torch.randn(2, 3, 8, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = mha(x)
    assert out.shape == (2, 3, 8)


@pytest.mark.parametrize("module, shape", [
    (lambda: N.LinearAttention(8, 2), (2, 3, 8)),
    (lambda: N.SqueezeExcitation(8, 2), (2, 8, 3, 3)),
    (lambda: N.CBAM(8, 2, 3), (2, 8, 3, 3)),
    (lambda: N.SpatialAttention(3), (2, 8, 3, 3)),
])
def test_other_modules_name_x_and_both_dtypes(module, shape):
    with pytest.raises(TypeError, match=r"x has dtype torch.float64 .* torch.float32"):
        module()(torch.randn(shape, dtype=torch.float64))


# --------------------------------------------------------------------------- states


@pytest.mark.parametrize("kind", sorted(MECHANISMS))
@pytest.mark.parametrize("state, words", [
    ([1, 2], "state must be None or the dict"),
    ("key_proj", "state must be None or the dict"),
    ({"key_proj": 1.0}, r"state\['key_proj'\] must be a tensor"),
])
def test_seq2seq_state_of_another_type_is_refused(kind, state, words):
    with pytest.raises(TypeError, match=words):
        MECHANISMS[kind]()(QUERY, KEYS, state=state)


@pytest.mark.parametrize("state", [{}, [1], (torch.zeros(1), torch.zeros(1)), "state"])
def test_linear_attention_state_must_be_a_linear_state(state):
    module = N.LinearAttention(8, 2, causal=True)
    with pytest.raises(TypeError, match="state must be None or the LinearState"):
        module(torch.randn(2, 3, 8), state=state)


def test_linear_attention_state_round_trip_still_works():
    module = N.LinearAttention(8, 2, causal=True)
    x = torch.randn(2, 4, 8)
    full, _ = module(x)
    _, state = module(x[:, :3])
    assert isinstance(state, LinearState)
    step, _ = module(x[:, 3:], state=state)
    torch.testing.assert_close(step, full[:, 3:], rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("kind", sorted(MECHANISMS))
@pytest.mark.parametrize("query, keys, error, words", [
    (QUERY, KEYS[:, :0], ValueError, "keys must be 3-D"),
    (QUERY[:, :0], KEYS, ValueError, "query must be 3-D"),
    (QUERY[0], KEYS, ValueError, "query must be 3-D"),
    (QUERY.tolist(), KEYS, TypeError, "query must be a tensor"),
])
def test_seq2seq_bad_shapes(kind, query, keys, error, words):
    with pytest.raises(error, match=words):
        MECHANISMS[kind]()(query, keys)


@pytest.mark.parametrize("kind", sorted(MECHANISMS))
def test_seq2seq_empty_batch_gives_empty_outputs(kind):
    context, weights, _ = MECHANISMS[kind]().eval()(QUERY[:0], KEYS[:0])
    assert context.shape == (0, 3, 4) and weights.shape == (0, 3, 5)


@pytest.mark.parametrize("module, x", [
    (lambda: N.MultiHeadAttention(8, 2), torch.randn(0, 3, 8)),
    (lambda: N.LinearAttention(8, 2), torch.randn(0, 3, 8)),
    (lambda: N.CBAM(8, 2, 3), torch.randn(0, 8, 3, 3)),
])
def test_empty_batch_works(module, x):
    out = module()(x)
    out = out[0] if isinstance(out, tuple) else out
    assert out.shape == x.shape


@pytest.mark.parametrize("module, x, words", [
    (lambda: N.LinearAttention(8, 2), torch.randn(2, 0, 8), "x must be"),
    (lambda: N.LinearAttention(8, 2), [[0.0] * 8], "x must be a torch.Tensor"),
    (lambda: N.SqueezeExcitation(8, 2), torch.randn(2, 8, 0, 3), "H, W >= 1"),
    (lambda: N.SpatialAttention(3), torch.randn(2, 8, 3, 0), "H, W >= 1"),
    (lambda: N.CBAM(8, 2, 3), torch.randn(8, 3, 3), "x must be 4-D"),
])
def test_empty_or_wrong_rank_inputs_are_refused(module, x, words):
    with pytest.raises((TypeError, ValueError), match=words):
        module()(x)


def test_multihead_return_weights_must_be_a_bool():
    with pytest.raises(TypeError, match="return_weights"):
        N.MultiHeadAttention(8, 2)(torch.randn(2, 3, 8), return_weights=1)


# --------------------------------------------------------------------------- registry


def test_registry_builds_every_mechanism_for_a_width():
    for name in ATTENTION_KINDS:
        options = {"max_source_len": 9} if name == "luong-location" else {}
        module = build_attention(name, 8, **options)
        if name == "none":
            assert module is None
            continue
        assert isinstance(module, N.Seq2SeqAttention)
        expected = "luong" if name.startswith(("luong", "local")) else "bahdanau"
        assert module.decoder_style == expected


def test_registry_refuses_unknown_names_listing_the_choices():
    with pytest.raises(ValueError, match=r"attention must be one of .*'bahdanau'"):
        build_attention("transformer", 8)
