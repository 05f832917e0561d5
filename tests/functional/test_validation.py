"""Bad input to ``attnkit.attention`` / ``attnkit.explain`` raises ``ValueError`` or
``TypeError`` whose message names the argument (DESIGN.md section 2)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest
import torch

import attnkit
from attnkit import masks, score_mods

B, HQ, HKV, L, D = 2, 4, 2, 7, 8


def _qkv(**overrides):
    """Valid ``q (2, 4, 7, 8)``, ``k, v (2, 2, 7, 8)``, with some replaced."""
    args = dict(q=torch.randn(B, HQ, L, D), k=torch.randn(B, HKV, L, D),
                v=torch.randn(B, HKV, L, D))
    args.update(overrides)
    return args


@dataclasses.dataclass(frozen=True)
class Bad:
    name: str
    make: Callable[[], dict]  # all arguments of the call
    error: type[Exception]
    match: str
    # Errors found only when predicates/score_mods are evaluated: explain() need
    # not evaluate them, so these cases are checked on attention() alone.
    at_compute_time: bool = False


def _with(**kwargs):
    return lambda: {**_qkv(), **kwargs}


def _with_qkv(**tensors):
    return lambda: _qkv(**{name: make() for name, make in tensors.items()})


BAD_INPUTS = [
    # q, k, v
    Bad("q-rank-3", _with_qkv(q=lambda: torch.randn(HQ, L, D)),
        ValueError, r"q must have 4 dims.*\(4, 7, 8\)"),
    Bad("v-rank-5", _with_qkv(v=lambda: torch.randn(B, HKV, L, D, 1)),
        ValueError, r"v must have 4 dims"),
    Bad("k-not-a-tensor", _with_qkv(k=lambda: np.zeros((B, HKV, L, D), dtype=np.float32)),
        TypeError, r"k must be a torch.Tensor, got ndarray"),
    Bad("q-list", _with_qkv(q=lambda: [[1.0]]), TypeError, r"q must be a torch.Tensor"),
    Bad("q-int-dtype", _with_qkv(q=lambda: torch.ones(B, HQ, L, D, dtype=torch.int64)),
        TypeError, r"q must be .*float.*torch.int64"),
    Bad("v-complex-dtype", _with_qkv(v=lambda: torch.randn(B, HKV, L, D, dtype=torch.cfloat)),
        TypeError, r"v must be float16"),
    Bad("k-dtype-differs-from-q", _with_qkv(k=lambda: torch.randn(B, HKV, L, D).half()),
        TypeError, r"k.dtype torch.float16 .*q.dtype torch.float32"),
    Bad("v-dtype-differs-from-q", _with_qkv(v=lambda: torch.randn(B, HKV, L, D).double()),
        TypeError, r"v.dtype torch.float64 differs from q.dtype"),
    Bad("k-on-another-device", _with_qkv(k=lambda: torch.randn(B, HKV, L, D, device="meta")),
        ValueError, r"k is on meta.*q is on cpu"),
    Bad("batch-mismatch", _with_qkv(k=lambda: torch.randn(3, HKV, L, D),
                                    v=lambda: torch.randn(3, HKV, L, D)),
        ValueError, r"batch.*q 2, k 3"),
    Bad("k-v-head-mismatch", _with_qkv(v=lambda: torch.randn(B, 1, L, D)),
        ValueError, r"k has 2 heads.*v has 1"),
    Bad("Hq-not-multiple-of-Hkv", _with_qkv(k=lambda: torch.randn(B, 3, L, D),
                                            v=lambda: torch.randn(B, 3, L, D)),
        ValueError, r"q heads \(4\).*multiple of k/v heads \(3\)"),
    Bad("zero-kv-heads", _with_qkv(k=lambda: torch.randn(B, 0, L, D),
                                   v=lambda: torch.randn(B, 0, L, D)),
        ValueError, r"need at least one head each"),
    Bad("k-v-length-mismatch", _with_qkv(v=lambda: torch.randn(B, HKV, L + 1, D)),
        ValueError, r"k and v .*same length Lk.*v \(2, 2, 8, 8\)"),
    Bad("q-k-head-dim-mismatch", _with_qkv(k=lambda: torch.randn(B, HKV, L, D + 1)),
        ValueError, r"q and k .*same head dim D.*k \(2, 2, 7, 9\)"),
    Bad("empty-query-length", _with_qkv(q=lambda: torch.randn(B, HQ, 0, D)),
        ValueError, r"empty dimension: q \(2, 4, 0, 8\)"),
    # mask
    Bad("mask-float", _with(mask=torch.ones(L, L)),
        TypeError, r"mask must be a bool tensor.*torch.float32"),
    Bad("mask-int", _with(mask=torch.ones(L, L, dtype=torch.int64)),
        TypeError, r"mask must be a bool tensor.*mask.bool\(\)"),
    Bad("mask-3d", _with(mask=torch.ones(B, L, L, dtype=torch.bool)),
        ValueError, r"mask must be 2-D \(Lq, Lk\) or 4-D.*\(2, 7, 7\)"),
    Bad("mask-1d-key-padding", _with(mask=torch.ones(L, dtype=torch.bool)),
        ValueError, r"mask must be 2-D.*mask\[:, None, None, :\]"),
    Bad("mask-2d-wrong-Lk", _with(mask=torch.ones(L, L + 1, dtype=torch.bool)),
        ValueError, r"mask shape \(7, 8\).*Lk dim is 8"),
    Bad("mask-4d-wrong-batch", _with(mask=torch.ones(3, 1, 1, L, dtype=torch.bool)),
        ValueError, r"mask shape \(3, 1, 1, 7\).*B dim is 3"),
    Bad("mask-4d-kv-heads-not-q-heads", _with(mask=torch.ones(1, HKV, L, L, dtype=torch.bool)),
        ValueError, r"mask shape \(1, 2, 7, 7\).*H dim is 2"),
    Bad("mask-4d-wrong-Lq", _with(mask=torch.ones(1, 1, L + 2, L, dtype=torch.bool)),
        ValueError, r"mask shape \(1, 1, 9, 7\).*Lq dim is 9"),
    Bad("mask-on-another-device", _with(mask=torch.ones(L, L, dtype=torch.bool, device="meta")),
        ValueError, r"mask is on meta"),
    Bad("mask-a-string", _with(mask="causal"),
        TypeError, r"mask must be None, a bool tensor or a mask_mod.*str"),
    Bad("mask_mod-returns-int", _with(mask=lambda b, h, q_idx, kv_idx: (kv_idx <= q_idx).int()),
        TypeError, r"mask_mod must return a bool tensor.*torch.int32", True),
    Bad("mask_mod-returns-python-bool", _with(mask=lambda b, h, q_idx, kv_idx: True),
        TypeError, r"mask_mod must return a bool tensor.*bool", True),
    Bad("mask_mod-wrong-shape",
        _with(mask=lambda b, h, q_idx, kv_idx: torch.ones(3, 3, dtype=torch.bool)),
        ValueError, r"mask_mod returned shape \(3, 3\)", True),
    Bad("key_padding-lengths-shorter-than-batch", _with(mask=masks.key_padding(torch.tensor([3]))),
        ValueError, r"key_padding\(lengths\) holds 1 batch rows.*batch size 2",
        True),
    Bad("document-ids-shorter-than-L", _with(mask=masks.document(torch.tensor([0, 0, 1, 1, 1]))),
        ValueError, r"doc_ids", True),
    Bad("document-ids-longer-than-L",
        _with(mask=masks.document(torch.zeros(L + 2, dtype=torch.int64))),
        ValueError, r"doc_ids", True),
    # causal
    Bad("causal-unknown-string", _with(causal="lower-right"),
        ValueError, r"causal must be .*'lower_right'.*got 'lower-right'"),
    Bad("causal-true-with-Lq!=Lk",
        lambda: {**_qkv(q=torch.randn(B, HQ, 3, D)), "causal": True},
        ValueError, r"causal=True is ambiguous when Lq \(3\) != Lk \(7\).*lower_right"),
    Bad("causal-int", _with(causal=1), TypeError, r"causal must be .*got int"),
    Bad("causal-mask-tensor", _with(causal=torch.ones(L, L, dtype=torch.bool)),
        TypeError, r"causal must be .*got Tensor"),
    # dropout_p
    Bad("dropout-negative", _with(dropout_p=-0.1), ValueError, r"dropout_p must be in \[0, 1\)"),
    Bad("dropout-one", _with(dropout_p=1.0), ValueError, r"dropout_p must be in \[0, 1\), got 1"),
    Bad("dropout-nan", _with(dropout_p=float("nan")), ValueError, r"dropout_p must be a finite"),
    Bad("dropout-string", _with(dropout_p="0.1"), TypeError, r"dropout_p must be .*str"),
    Bad("dropout-bool", _with(dropout_p=True), TypeError, r"dropout_p must be .*bool"),
    Bad("dropout-none", _with(dropout_p=None), TypeError, r"dropout_p must be .*NoneType"),
    # scale
    Bad("scale-string", _with(scale="0.5"), TypeError, r"scale must be .*str"),
    Bad("scale-tensor", _with(scale=torch.tensor(0.5)),
        TypeError, r"scale must be .*Tensor"),
    Bad("scale-bool", _with(scale=True), TypeError, r"scale must be .*bool"),
    Bad("scale-inf", _with(scale=float("inf")), ValueError, r"scale must be a finite number.*inf"),
    Bad("scale-nan", _with(scale=float("nan")), ValueError, r"scale must be a finite number.*nan"),
    # return_weights
    Bad("return_weights-int", _with(return_weights=1),
        TypeError, r"return_weights must be a bool.*int"),
    Bad("return_weights-none", _with(return_weights=None),
        TypeError, r"return_weights must be a bool.*NoneType"),
    # backend
    Bad("backend-unknown", _with(backend="flash"),
        ValueError, r"backend must be 'auto' or one of .*got 'flash'"),
    Bad("backend-not-a-string", _with(backend=None),
        TypeError, r"backend must be a string.*NoneType"),
    # score_mod
    Bad("score_mod-not-callable", _with(score_mod=2.0),
        TypeError, r"score_mod must be a callable.*float"),
    Bad("score_mod-wrong-shape",
        _with(score_mod=lambda score, b, h, q_idx, kv_idx: score[..., :1]),
        ValueError, r"score_mod must return a tensor of shape \(2, 4, 7, 7\).*\(2, 4, 7, 1\)",
        True),
    Bad("alibi-fewer-slopes-than-heads", _with(score_mod=score_mods.alibi(torch.ones(HKV))),
        ValueError, r"alibi holds 2 slopes.*4 query heads", True),
    Bad("relative_bias-fewer-heads-than-q-heads",
        _with(score_mod=score_mods.relative_bias(torch.zeros(HKV, 5))),
        ValueError, r"relative_bias table has 2 heads.*4 query heads", True),
]


def _explain_cases():
    return [bad for bad in BAD_INPUTS if not bad.at_compute_time]


@pytest.mark.parametrize("bad", BAD_INPUTS, ids=lambda bad: bad.name)
def test_attention_rejects_bad_input(bad):
    args = bad.make()
    with pytest.raises(bad.error, match=bad.match):
        attnkit.attention(args.pop("q"), args.pop("k"), args.pop("v"), **args)


@pytest.mark.parametrize("bad", _explain_cases(), ids=lambda bad: bad.name)
def test_explain_rejects_bad_input_like_attention(bad):
    args = bad.make()
    with pytest.raises(bad.error, match=bad.match):
        attnkit.explain(args.pop("q"), args.pop("k"), args.pop("v"), **args)


def test_score_mod_returning_a_non_tensor_is_rejected():
    with pytest.raises((TypeError, ValueError), match=r"score_mod must return a floating tensor"):
        attnkit.attention(**_qkv(), score_mod=lambda score, b, h, q_idx, kv_idx: 1.0)


@pytest.mark.parametrize("kwargs", [
    dict(causal=False), dict(causal=None), dict(dropout_p=0), dict(scale=1), dict(scale=-0.5),
    dict(mask=torch.ones(1, 1, 1, L, dtype=torch.bool)),
    dict(mask=masks.key_padding(torch.tensor([7, 0]))),
], ids=["causal-False", "causal-None", "dropout-int-0", "scale-int", "scale-negative",
        "mask-11-1Lk", "key_padding-with-zero"])
def test_valid_edge_values_are_accepted(kwargs):
    out, _ = attnkit.attention(**_qkv(), **kwargs)
    assert out.shape == (B, HQ, L, D)
