"""The entry-point contract of :func:`attnkit.attention`, fuzzed across every backend here.

hypothesis draws small problems (empty batches included), scales (zero, negative,
NaN, inf, wrong types), causal flags, masks (bool tensors with empty rows, key padding
with zero lengths, wrong dtypes and shapes, misbehaving mask_mods) and score mods
(built-ins, plain callables, and ones that return None, ints, the wrong shape or NaN,
or raise). Every call must either match the float64 oracle under the rule of
``tests/conftest.py`` or raise ``ValueError``/``TypeError`` naming the faulty argument
(or, for a named backend, its refusal). Triton is left out: its interpreter is too
slow for a fuzz loop, and tests/kernels/test_triton.py covers it.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import attnkit
from attnkit import masks, score_mods
from attnkit.functional import attention_weights, masked_softmax
from attnkit.testing import assert_oracle_close

BACKENDS = ["auto", "reference", "sdpa", "tiled"]


@dataclasses.dataclass
class Draw:
    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    kwargs: dict
    faults: list[str]  # arguments that are wrong, in the order attention() checks them
    grad: bool  # also compare dq, dk, dv


def _raise(*args):
    raise RuntimeError("a bug inside the user's callable")


def _score_mods(heads: int):
    good = {
        "none": None,
        "softcap": score_mods.softcap(2.0),
        "alibi": score_mods.alibi(score_mods.alibi_slopes(heads)),
        "halve": lambda s, b, h, q_idx, kv_idx: s * 0.5,
        "half-dtype": lambda s, b, h, q_idx, kv_idx: s.half(),
        "mask-by-inf": lambda s, b, h, q_idx, kv_idx: s.masked_fill(kv_idx > q_idx, float("-inf")),
    }
    bad = {
        "returns-none": lambda s, b, h, q_idx, kv_idx: None,
        "returns-int": lambda s, b, h, q_idx, kv_idx: s.long(),
        "wrong-shape": lambda s, b, h, q_idx, kv_idx: s[..., None],
        "returns-nan": lambda s, b, h, q_idx, kv_idx: s * float("nan"),
        "raises": _raise,
        "wrong-arity": lambda s: s,
    }
    return good, bad


GOOD_MASKS = ["none", "bool", "bool-4d", "key_padding", "causal-mask_mod"]
BAD_MASKS = ["int-dtype", "wrong-shape", "mask_mod-int", "mask_mod-raises"]
# At most one argument is wrong per call; about half the calls are valid.
FAULTS = ["none"] * 5 + ["causal", "mask", "scale", "score_mod"]


@st.composite
def draws(draw) -> Draw:
    fault = draw(st.sampled_from(FAULTS), label="fault")
    batch = draw(st.integers(0, 2), label="batch")
    kv_heads = draw(st.integers(1, 2), label="kv_heads")
    heads = kv_heads * draw(st.integers(1, 2), label="group")
    q_len = draw(st.integers(1, 6), label="q_len")
    # causal=True is ambiguous (a fault) exactly when Lq != Lk.
    kv_len = draw(st.integers(1, 5).map(lambda n: n if n < q_len else n + 1)
                  if fault == "causal" else st.integers(1, 6), label="kv_len")
    head_dim, v_dim = draw(st.integers(1, 5), label="D"), draw(st.integers(1, 5), label="Dv")
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**16), label="seed"))

    def rand(*shape):
        return torch.randn(*shape, generator=gen)

    q = rand(batch, heads, q_len, head_dim)
    k, v = rand(batch, kv_heads, kv_len, head_dim), rand(batch, kv_heads, kv_len, v_dim)

    causal = draw(st.sampled_from([None, "upper_left", "lower_right"]
                                  + ([True] if q_len == kv_len or fault == "causal" else [])),
                  label="causal")
    if fault == "causal":
        causal = True

    mask_kind = draw(st.sampled_from(BAD_MASKS if fault == "mask" else GOOD_MASKS),
                     label="mask")
    mask = None
    if mask_kind in ("bool", "bool-4d"):
        shape = (q_len, kv_len) if mask_kind == "bool" else (max(batch, 1), 1, q_len, kv_len)
        mask = torch.rand(*shape, generator=gen) < 0.6
        mask[..., draw(st.integers(0, q_len - 1), label="empty_row"), :] = False
    elif mask_kind == "key_padding":
        lengths = draw(st.lists(st.integers(0, kv_len), min_size=batch, max_size=batch))
        mask = masks.key_padding(torch.tensor(lengths, dtype=torch.long))
    elif mask_kind == "causal-mask_mod":
        mask = lambda b, h, q_idx, kv_idx: kv_idx <= q_idx  # noqa: E731
    elif mask_kind == "int-dtype":
        mask = torch.ones(q_len, kv_len, dtype=torch.int32)
    elif mask_kind == "wrong-shape":
        mask = torch.ones(q_len, kv_len + 1, dtype=torch.bool)
    elif mask_kind == "mask_mod-int":
        mask = lambda b, h, q_idx, kv_idx: (kv_idx <= q_idx).int()  # noqa: E731
    elif mask_kind == "mask_mod-raises":
        mask = _raise

    bad_scales = {"nan": float("nan"), "inf": float("-inf"), "str": "0.5", "bool": True}
    scale = draw(st.sampled_from(sorted(bad_scales)) if fault == "scale" else
                 st.one_of(st.none(), st.sampled_from([0.0, -0.0, 1.0, -1.0, 4.0]),
                           st.floats(-3.0, 3.0)), label="scale")
    scale = bad_scales.get(scale, scale)

    good, bad = _score_mods(heads)
    name = draw(st.sampled_from(sorted(bad if fault == "score_mod" else good)),
                label="score_mod")
    score_mod = good.get(name, bad.get(name))
    faults = [] if fault == "none" else [fault]

    kwargs = dict(mask=mask, causal=causal, scale=scale, score_mod=score_mod,
                  return_weights=draw(st.booleans(), label="return_weights"),
                  backend=draw(st.sampled_from(BACKENDS), label="backend"))
    # Gradients only at moderate scales: with |scale| >= 1 on tiny problems, torch's SDPA
    # float32 backward alone exceeds 3x the reference's error (up to ~5x, a few ulps of
    # the logits), which is torch's kernel, not attnkit's; forward outputs are checked at
    # every scale.
    moderate = scale is None or (isinstance(scale, float) and abs(scale) <= 0.5)
    return Draw(q, k, v, kwargs, faults, moderate and draw(st.booleans(), label="grad"))


def _run(d: Draw, dtype: torch.dtype, **overrides):
    """``(out, weights, [dq, dk, dv] or None)``; gradients of ``sum(out * g)`` with a fixed
    random ``g`` when the draw asks for them."""
    leaves = [t.to(dtype).requires_grad_(d.grad) for t in (d.q, d.k, d.v)]
    out, weights = attnkit.attention(*leaves, **dict(d.kwargs, **overrides))
    if not d.grad:
        return out, weights, None
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return out, weights, list(torch.autograd.grad(out, leaves, g.to(out.dtype)))


def _oracle(d: Draw, dtype: torch.dtype):
    return _run(d, dtype, backend="reference", return_weights=True)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(draws())
def test_attention_matches_the_oracle_or_names_the_bad_argument(d):
    try:
        out, weights, grads = _run(d, torch.float32)
    except (TypeError, ValueError) as exc:
        message = str(exc)
        if "cannot run this call" in message:
            # A named backend refusing is a documented answer; auto never refuses.
            assert d.kwargs["backend"] != "auto", message
            assert message.startswith(f"backend={d.kwargs['backend']!r}"), message
            event("refused")
            return
        assert d.faults, f"a valid call raised: {message}"
        assert d.faults[0] in message, (d.faults, message)
        event(f"raised naming {d.faults[0]}")
        return
    if d.faults:
        # A bad score_mod goes unnoticed only where no logit is computed (an empty batch,
        # or the tiled backend skipping every tile of a mask that allows nothing): every
        # row then has nothing to attend to, and the output is all zeros, as specified.
        assert d.faults == ["score_mod"] and not out.any(), (d.faults, out)
        event("bad score_mod never called")
        return
    golden, golden_weights, golden_grads = _oracle(d, torch.float64)
    same, same_weights, same_grads = _oracle(d, torch.float32)
    event(f"matched the oracle (grad={d.grad}, empty batch={d.q.shape[0] == 0})")
    assert_oracle_close(out, same, golden, what=f"out ({d.kwargs['backend']})")
    assert (weights is not None) == d.kwargs["return_weights"]
    if weights is not None:
        assert_oracle_close(weights, same_weights, golden_weights, what="weights")
    if grads is not None:
        for name, *three in zip(("dq", "dk", "dv"), grads, same_grads, golden_grads,
                                strict=True):
            assert_oracle_close(*three, kind="backward", what=name)


@pytest.mark.parametrize("backend", ["reference", "sdpa", "tiled"])
@pytest.mark.parametrize("scale", [0.0, -0.0, -1.5])
def test_zero_and_negative_scales_match_the_oracle(backend, scale):
    # Issue 10: causal=True, scale=0.0 returned NaN on SDPA.
    q, k, v = torch.randn(3, 2, 2, 5, 4).unbind(0)
    out, _ = attnkit.attention(q, k, v, causal=True, scale=scale, backend=backend)
    golden, _ = attnkit.attention(q.double(), k.double(), v.double(), causal=True, scale=scale,
                                  backend="reference")
    same, _ = attnkit.attention(q, k, v, causal=True, scale=scale, backend="reference")
    assert_oracle_close(out, same, golden)


@pytest.mark.parametrize("backend", ["reference", "sdpa", "tiled"])
def test_an_empty_batch_gives_an_empty_result_and_gradients(backend):
    q = torch.randn(0, 2, 5, 4, requires_grad=True)
    out, _ = attnkit.attention(q, q, q, causal=True, backend=backend,
                               mask=masks.key_padding(torch.zeros(0, dtype=torch.long)))
    out.sum().backward()
    assert out.shape == (0, 2, 5, 4) and q.grad.shape == q.shape


@pytest.mark.parametrize("name", ["returns-none", "returns-int", "wrong-shape", "returns-nan",
                                  "raises", "wrong-arity"])
@pytest.mark.parametrize("backend", ["reference", "tiled"])
def test_a_misbehaving_score_mod_raises_naming_it(backend, name):
    # Issue 10: the tiled backend crashed deep in torch on a wrong shape or None.
    q = torch.randn(1, 2, 5, 4)
    score_mod = _score_mods(2)[1][name]
    with pytest.raises((TypeError, ValueError), match="score_mod"):
        attnkit.attention(q, q, q, score_mod=score_mod, backend=backend)


def test_masked_softmax_with_no_keys_and_a_mismatched_mask():
    assert masked_softmax(torch.randn(2, 0)).shape == (2, 0)
    with pytest.raises(ValueError, match=r"mask shape \(4,\) does not broadcast"):
        masked_softmax(torch.randn(2, 3), torch.ones(4, dtype=torch.bool))
    with pytest.raises(TypeError, match="scores must be a floating-point tensor"):
        masked_softmax(torch.ones(2, 3, dtype=torch.long))


@pytest.mark.parametrize("lse,error", [
    (torch.full((1, 2, 5), float("nan")), ValueError),
    (torch.full((1, 2, 5), float("inf")), ValueError),
    (torch.zeros(1, 2, 5, dtype=torch.long), TypeError),
], ids=["nan", "inf", "int"])
def test_attention_weights_refuses_a_broken_lse(lse, error):
    q = torch.randn(1, 2, 5, 4)
    with pytest.raises(error, match="lse must"):
        attention_weights(q, q, lse=lse)
