"""``attention_weights``: exact weights for chosen heads and rows (DESIGN.md section 3).

The weights it rebuilds, with or without the log-sum-exp a tiled forward saved,
must equal the reference backend's returned weights restricted to those heads and
rows: exactly (to float64 round-off) in float64, and three ways
(``conftest.assert_oracle_close``) in float32 and bfloat16.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

import attnkit
from attnkit import masks, score_mods
from attnkit.functional._plan import CallPlan
from attnkit.kernels.tiled import tiled_attention
from attnkit.testing import assert_oracle_close


def _dtype_id(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    q_heads: int
    kv_heads: int
    q_len: int
    kv_len: int
    mask: str = "none"  # a key of MASKS
    causal: bool | str | None = None
    score: str = "none"  # a key of SCORES
    batch: int = 2
    head_dim: int = 16


def _dense(c: Case) -> torch.Tensor:
    mask = torch.rand(c.batch, c.q_heads, c.q_len, c.kv_len) < 0.6  # (B, Hq, Lq, Lk)
    mask[:, :, 2] = False
    return mask


def _per_head(c: Case) -> torch.Tensor:
    mask = torch.rand(1, c.q_heads, c.q_len, c.kv_len) < 0.7  # (1, Hq, Lq, Lk)
    mask[0, 1, 4] = False
    return mask


def _key_padding_bool(c: Case) -> torch.Tensor:
    lengths = torch.tensor([c.kv_len - 3, 0])[: c.batch]
    return (torch.arange(c.kv_len) < lengths[:, None])[:, None, None, :]  # (B, 1, 1, Lk)


MASKS = {
    "none": lambda c: None,
    "dense": _dense,
    "2d": lambda c: torch.rand(c.q_len, c.kv_len) < 0.5,  # (Lq, Lk)
    "per-head": _per_head,
    "keypad-bool": _key_padding_bool,
    "sliding": lambda c: masks.sliding_window(4, causal=False),
    "keypad-zero": lambda c: masks.key_padding(torch.tensor([0, c.kv_len - 2])),
    "document": lambda c: masks.document(torch.arange(c.q_len) // 4),
    "lambda": lambda c: (lambda b, h, q_idx, kv_idx: (q_idx + kv_idx + h) % 3 != 0),
}


def _relative_bias(c: Case):
    table = torch.linspace(-1.5, 1.5, c.q_heads * 7, dtype=torch.float64).view(c.q_heads, 7)
    return score_mods.relative_bias(table)  # (Hq, 2M+1), M = 3


def _head_and_batch_lambda(c: Case):
    bias = torch.arange(c.q_heads, dtype=torch.float64) / c.q_heads  # (Hq,)
    return lambda s, b, h, q_idx, kv_idx: s + bias.to(s.dtype)[h] * (kv_idx - q_idx) + 0.5 * b


SCORES = {
    "none": lambda c: None,
    "alibi": lambda c: score_mods.alibi(score_mods.alibi_slopes(c.q_heads)),
    "softcap": lambda c: score_mods.softcap(1.0),
    "relative_bias": _relative_bias,
    "lambda": _head_and_batch_lambda,
}

CASES = [
    Case("plain-mha", 4, 4, 13, 11),
    Case("gqa2-dense-mask", 4, 2, 13, 11, "dense"),
    Case("gqa4-2d-mask-upper_left", 4, 1, 13, 17, "2d", "upper_left"),
    Case("gqa2-lower_right-Lq<Lk", 4, 2, 9, 17, causal="lower_right"),
    Case("mqa-lower_right-Lq>Lk-empty-rows", 4, 1, 17, 9, causal="lower_right"),
    Case("per-head-mask-alibi", 4, 2, 13, 13, "per-head", score="alibi"),
    Case("keypad-bool-softcap", 4, 4, 13, 11, "keypad-bool", score="softcap"),
    Case("sliding-relative_bias-gqa2", 4, 2, 13, 13, "sliding", score="relative_bias"),
    Case("keypad-zero-lambda-score", 4, 2, 9, 11, "keypad-zero", score="lambda"),
    Case("document-causal-gqa4", 8, 2, 16, 16, "document", True),
    Case("lambda-mask-upper_left", 4, 4, 9, 13, "lambda", "upper_left", "relative_bias"),
]

SELECTIONS = {
    "all": (None, None),
    "int-int": (1, 3),
    "list-list": ([3, 0], [0, 2, 5, 8]),
    "tensor-tensor": (torch.tensor([2, 1]), torch.tensor([8, 7, 1])),
    "int-list-dup": (3, [4, 4]),
    "0d-tensor-tuple": (torch.tensor(2), (4, 1)),
}


def _as_index(selection, size: int) -> torch.Tensor:
    if selection is None:
        return torch.arange(size)
    return torch.as_tensor(selection).reshape(-1)


def _inputs(c: Case, dtype: torch.dtype):
    q = torch.randn(c.batch, c.q_heads, c.q_len, c.head_dim).to(dtype)
    k = torch.randn(c.batch, c.kv_heads, c.kv_len, c.head_dim).to(dtype)
    v = torch.randn(c.batch, c.kv_heads, c.kv_len, c.head_dim).to(dtype)
    return q, k, v


def _reference_weights(q, k, v, kwargs, heads, rows) -> torch.Tensor:
    _, weights = attnkit.attention(q, k, v, return_weights=True, backend="reference", **kwargs)
    h = _as_index(heads, q.shape[1])
    r = _as_index(rows, q.shape[2])
    return weights[:, h][:, :, r]  # (B, h, r, Lk)


def _tiled_lse(q, k, v, kwargs) -> torch.Tensor:
    """The lse of a tiled forward with small tiles (many tiles, some skipped)."""
    causal = kwargs["causal"]
    alignment = "upper_left" if causal is True else causal
    plan = CallPlan.build(q, k.shape[2], kwargs["mask"], alignment, kwargs["score_mod"])
    _, lse = tiled_attention(q, k, v, scale=1 / math.sqrt(q.shape[-1]),
                             fns=plan.tile_fns(4, 8), block_q=4, block_k=8)
    return lse  # (B, Hq, Lq)


def _check_weights(case: Case, dtype: torch.dtype, heads, rows, with_lse: bool) -> None:
    q, k, v = _inputs(case, dtype)
    kwargs = dict(mask=MASKS[case.mask](case), causal=case.causal,
                  score_mod=SCORES[case.score](case))
    lse = _tiled_lse(q, k, v, kwargs) if with_lse else None

    weights = attnkit.attention_weights(q, k, heads=heads, rows=rows, lse=lse, **kwargs)

    reference = _reference_weights(q, k, v, kwargs, heads, rows)
    assert weights.dtype == dtype and weights.shape == reference.shape
    if dtype == torch.float64:
        torch.testing.assert_close(weights, reference, rtol=0, atol=1e-12)
    else:
        golden = _reference_weights(q.double(), k.double(), v.double(), kwargs, heads, rows)
        assert_oracle_close(weights, reference, golden, what="weights")


@pytest.mark.parametrize("with_lse", [False, True], ids=["softmax", "from-tiled-lse"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16], ids=_dtype_id)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_weights_equal_reference_weights_for_selected_heads_and_rows(case, dtype, with_lse):
    heads, rows = SELECTIONS["list-list"]
    _check_weights(case, dtype, heads, rows, with_lse)


@pytest.mark.parametrize("with_lse", [False, True], ids=["softmax", "from-tiled-lse"])
@pytest.mark.parametrize("selection", list(SELECTIONS))
@pytest.mark.parametrize("case", [c for c in CASES if c.name in (
    "per-head-mask-alibi", "keypad-zero-lambda-score")], ids=lambda c: c.name)
def test_heads_and_rows_as_int_list_or_tensor(case, selection, with_lse):
    heads, rows = SELECTIONS[selection]
    _check_weights(case, torch.float64, heads, rows, with_lse)


@pytest.mark.parametrize("with_lse", [False, True], ids=["softmax", "from-tiled-lse"])
@pytest.mark.parametrize("causal,mask", [("lower_right", "none"), (None, "keypad-zero"),
                                         (None, "dense")],
                         ids=["lower_right-Lq>Lk", "key_padding-zero-length", "dense-mask"])
def test_empty_rows_give_zero_weights(causal, mask, with_lse):
    case = Case("empty", 4, 2, 11, 7, mask, causal)
    q, k, v = _inputs(case, torch.float32)
    kwargs = dict(mask=MASKS[mask](case), causal=causal, score_mod=None)
    lse = _tiled_lse(q, k, v, kwargs) if with_lse else None
    reference = _reference_weights(q, k, v, kwargs, None, None)
    empty = reference.sum(dim=-1) == 0  # (B, Hq, Lq)
    assert empty.any() and (~empty).any()

    weights = attnkit.attention_weights(q, k, lse=lse, **kwargs)

    assert torch.isfinite(weights).all()
    assert (weights[empty] == 0).all()
    torch.testing.assert_close(weights.sum(-1)[~empty], torch.ones(int((~empty).sum())))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=_dtype_id)
@pytest.mark.parametrize("case", [
    Case("causal-gqa2", 4, 2, 13, 13, causal=True),
    Case("lower_right-Lq>Lk-dense", 4, 1, 17, 9, "dense", "lower_right"),
    Case("sliding-relative_bias", 4, 2, 13, 13, "sliding", score="relative_bias"),
    Case("keypad-zero-lambda-score", 4, 2, 9, 11, "keypad-zero", score="lambda"),
], ids=lambda c: c.name)
def test_tiled_return_weights_equal_reference(case, dtype):
    q, k, v = _inputs(case, dtype)
    kwargs = dict(mask=MASKS[case.mask](case), causal=case.causal,
                  score_mod=SCORES[case.score](case))

    out, weights = attnkit.attention(q, k, v, return_weights=True, backend="tiled", **kwargs)

    ref_out, ref_weights = attnkit.attention(q, k, v, return_weights=True,
                                             backend="reference", **kwargs)
    gold_out, gold_weights = attnkit.attention(q.double(), k.double(), v.double(),
                                               return_weights=True, backend="reference",
                                               **kwargs)
    assert weights is not None and weights.dtype == dtype
    assert_oracle_close(weights, ref_weights, gold_weights, what="weights [tiled]")
    assert_oracle_close(out, ref_out, gold_out, what="out [tiled]")


def test_weights_use_the_kv_head_of_each_query_head():
    # Query head h reads kv head h // 4; make the kv heads very different.
    q = torch.randn(1, 8, 5, 4, dtype=torch.float64)
    k = torch.randn(1, 2, 6, 4, dtype=torch.float64) * torch.tensor([0.1, 10.0]).view(1, 2, 1, 1)
    got = attnkit.attention_weights(q, k, heads=[6, 1])
    want = torch.softmax(q[:, [6, 1]] @ k[:, [1, 0]].transpose(-2, -1) / 2.0, dim=-1)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------
# errors


def _small():
    q = torch.randn(2, 4, 5, 8)
    k = torch.randn(2, 2, 6, 8)
    return q, k


@pytest.mark.parametrize("kwargs,match", [
    (dict(rows=5), r"rows must hold indices in \[0, 5\)"),
    (dict(rows=[0, -1]), r"rows must hold indices in \[0, 5\)"),
    (dict(heads=4), r"heads must hold indices in \[0, 4\)"),
    (dict(heads=torch.tensor([1, 7])), r"heads must hold indices in \[0, 4\)"),
    (dict(heads=[]), "heads"),
    (dict(lse=torch.zeros(2, 4, 4)), r"lse must have shape \(B, Hq, Lq\) = \(2, 4, 5\)"),
    (dict(lse=torch.zeros(2, 2, 5)), r"lse must have shape .*got \(2, 2, 5\)"),
    (dict(lse=[0.0] * 5), r"lse must have shape .*got list"),
], ids=["row-too-large", "row-negative", "head-too-large", "head-tensor-too-large",
        "heads-empty", "lse-short-rows", "lse-kv-heads", "lse-not-a-tensor"])
def test_bad_selection_or_lse_raises_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        attnkit.attention_weights(*_small(), **kwargs)


@pytest.mark.parametrize("heads", [1.0, "x", [0.5], torch.tensor([1.0]), "01", [True], True,
                                   torch.tensor([True, False])],
                         ids=["float", "letter-string", "list-of-float", "float-tensor",
                              "digit-string", "list-of-bool", "bool", "bool-tensor"])
def test_non_int_heads_raise_type_error(heads):
    with pytest.raises(TypeError, match="^heads must"):
        attnkit.attention_weights(*_small(), heads=heads)


def test_non_int_rows_raise_type_error():
    with pytest.raises(TypeError, match="^rows must"):
        attnkit.attention_weights(*_small(), rows=[1, 2.5])


@pytest.mark.parametrize("keys", [1, 33])
def test_weights_rebuilt_from_a_fused_lse_meet_the_oracle_tolerance(keys):
    # The tiled backend's lse and the rebuilt scores round differently; before the
    # rebuild divided each row by its sum, ALiBi logits of this size put the weights
    # at 24x the same-dtype reference's error, and a single key got 1 - 7.6e-6.
    slopes = torch.tensor([0.5, 0.25, 0.125, 0.0625])
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        q = torch.randn(2, 4, 7, 8, generator=g) * 3
        k = torch.randn(2, 4, keys, 8, generator=g) * 3
        v = torch.randn(2, 4, keys, 8, generator=g)
        _, weights = attnkit.attention(q, k, v, score_mod=score_mods.alibi(slopes),
                                       return_weights=True, backend="tiled")
        if keys == 1:
            assert torch.equal(weights, torch.ones_like(weights))
            continue
        _, golden = attnkit.attention(q.double(), k.double(), v.double(),
                                      score_mod=score_mods.alibi(slopes.double()),
                                      return_weights=True, backend="reference")
        _, same = attnkit.attention(q, k, v, score_mod=score_mods.alibi(slopes),
                                    return_weights=True, backend="reference")
        assert_oracle_close(weights, same, golden, what=f"weights (seed {seed})")
