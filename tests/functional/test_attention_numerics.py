"""Numerics of ``attnkit.attention`` (DESIGN.md sections 2 and 4).

Every candidate backend is checked three ways against the float64 golden run of
the reference backend (``conftest.assert_oracle_close``); the reference itself is
checked against hand-written float64 formulas, against
``torch.nn.functional.scaled_dot_product_attention`` and with ``gradcheck``.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention.bias import causal_lower_right

import attnkit
from attnkit import masks, score_mods
from attnkit.testing import DTYPES, assert_oracle_close

# ---------------------------------------------------------------------------
# helpers


def _dtype_id(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _run(q, k, v, dout, **kwargs):
    """Forward and backward on fresh leaves: ``(out, weights, (dq, dk, dv))``."""
    q, k, v = (t.detach().clone().requires_grad_(True) for t in (q, k, v))
    out, weights = attnkit.attention(q, k, v, **kwargs)
    grads = torch.autograd.grad(out, (q, k, v), dout)
    return out.detach(), weights, grads


def _allowed(batch, heads, q_len, kv_len, mask=None, causal=None) -> torch.Tensor:
    """The dense ``(B, H, Lq, Lk)`` "may attend" matrix, built without the library."""
    allowed = torch.ones(batch, heads, q_len, kv_len, dtype=torch.bool)
    if isinstance(mask, torch.Tensor):
        allowed = allowed & mask
    i = torch.arange(q_len)[:, None]
    j = torch.arange(kv_len)[None, :]
    if causal in (True, "upper_left"):
        allowed = allowed & (j <= i)
    elif causal == "lower_right":
        allowed = allowed & (j <= i + kv_len - q_len)
    return allowed


# ---------------------------------------------------------------------------
# 1-3. sdpa and auto against the reference, three ways, on awkward shapes and masks


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    batch: int
    q_heads: int
    kv_heads: int
    q_len: int
    kv_len: int
    head_dim: int
    v_dim: int
    mask: str = "none"  # a key of MASKS
    causal: bool | str | None = None


def _dense_with_empty_rows(c: Case):
    mask = torch.rand(c.batch, c.q_heads, c.q_len, c.kv_len) < 0.6  # (B, Hq, Lq, Lk)
    mask[:, :, ::5] = False
    return mask


def _two_d_with_empty_rows(c: Case):
    mask = torch.rand(c.q_len, c.kv_len) < 0.5  # (Lq, Lk)
    mask[1::7] = False
    return mask


def _key_padding_bool(c: Case):
    lengths = torch.tensor([c.kv_len, c.kv_len // 2, 0][: c.batch])
    return (torch.arange(c.kv_len) < lengths[:, None])[:, None, None, :]  # (B, 1, 1, Lk)


def _per_head(c: Case):
    mask = torch.rand(1, c.q_heads, c.q_len, c.kv_len) < 0.7  # (1, Hq, Lq, Lk)
    mask[0, 0, 3] = False
    return mask


def _document(c: Case):
    pos = torch.arange(c.q_len)
    return masks.document(torch.stack([pos // 13, pos // 40])[: c.batch])  # ids (B, L)


MASKS = {
    "none": lambda c: None,
    "dense": _dense_with_empty_rows,
    "2d": _two_d_with_empty_rows,
    "keypad-bool": _key_padding_bool,
    "per-head": _per_head,
    "sliding": lambda c: masks.sliding_window(16),
    "keypad-mod": lambda c: masks.key_padding(torch.tensor([0, c.kv_len - 5])[: c.batch]),
    "document": _document,
}

CASES = [
    # name                                B  Hq Hkv Lq    Lk    D    Dv   mask     causal
    Case("mha-d64-L97",                   2, 4, 4,  97,   97,   64,  64),
    Case("gqa2-d59-L97-causal",           2, 4, 2,  97,   97,   59,  59,  "none",  True),
    Case("gqa4-d111-Lq<Lk-upper_left",    1, 8, 2,  33,   97,   111, 111, "none",  "upper_left"),
    Case("gqa8-Lq33<Lk97-lower_right",    1, 8, 1,  33,   97,   64,  64,  "none",  "lower_right"),
    Case("d59-Lq97>Lk33-upper_left",      2, 2, 2,  97,   33,   59,  59,  "none",  "upper_left"),
    Case("gqa2-Lq97>Lk33-lower_right",    2, 4, 2,  97,   33,   64,  64,  "none",  "lower_right"),
    Case("gqa4-Lq1-dv59",                 2, 8, 2,  1,    97,   64,  59),
    Case("mqa-Lq1-lower_right-d111-dv64", 2, 4, 1,  1,    97,   111, 64,  "none",  "lower_right"),
    Case("gqa2-Lk1-d59-dv111",            2, 2, 1,  17,   1,    59,  111),
    Case("Lq1-Lk1",                       1, 2, 2,  1,    1,    64,  64),
    Case("dense-empty-rows-gqa2-dv111",   2, 4, 2,  33,   97,   59,  111, "dense"),
    Case("dense-and-lower_right",         2, 2, 2,  47,   97,   64,  64,  "dense", "lower_right"),
    Case("2d-mask-empty-rows-d111",       1, 2, 2,  97,   40,   111, 64,  "2d"),
    Case("keypad-bool-B11Lk",             3, 4, 4,  33,   97,   64,  64,  "keypad-bool"),
    Case("per-head-1HLqLk-gqa2",          2, 4, 2,  33,   47,   59,  59,  "per-head"),
    Case("sliding-window-gqa2",           1, 4, 2,  97,   97,   64,  64,  "sliding"),
    Case("key_padding-zero-length",       2, 4, 4,  33,   97,   59,  64,  "keypad-mod"),
    Case("document-causal-gqa2",          2, 2, 1,  97,   97,   64,  64,  "document", True),
    Case("long-L1025-causal-gqa2",        1, 2, 1,  1025, 1025, 64,  64,  "none",  True),
    Case("long-Lq97-Lk1025-keypad",       2, 2, 2,  97,   1025, 59,  59,  "keypad-mod"),
]


def _inputs(c: Case, dtype: torch.dtype):
    q = torch.randn(c.batch, c.q_heads, c.q_len, c.head_dim).to(dtype)
    k = torch.randn(c.batch, c.kv_heads, c.kv_len, c.head_dim).to(dtype)
    v = torch.randn(c.batch, c.kv_heads, c.kv_len, c.v_dim).to(dtype)
    dout = torch.randn(c.batch, c.q_heads, c.q_len, c.v_dim).to(dtype)
    return q, k, v, dout


@functools.lru_cache(maxsize=1)  # the candidates of one (case, dtype) run back to back
def _golden_and_reference(case: Case, dtype: torch.dtype):
    """Inputs, the float64 golden run and the same-dtype reference run of one case."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        q, k, v, dout = _inputs(case, dtype)
        kwargs = dict(mask=MASKS[case.mask](case), causal=case.causal)
    golden = _run(q.double(), k.double(), v.double(), dout.double(), backend="reference",
                  **kwargs)
    reference = _run(q, k, v, dout, backend="reference", **kwargs)
    return (q, k, v, dout), kwargs, golden, reference


@pytest.mark.parametrize("backend", ["sdpa", "auto"])
@pytest.mark.parametrize("dtype", DTYPES, ids=_dtype_id)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_candidate_matches_reference_three_ways(case, dtype, backend):
    (q, k, v, dout), kwargs, golden, reference = _golden_and_reference(case, dtype)
    ran = attnkit.explain(q, k, v, backend=backend, **kwargs).backend  # named in failures

    candidate = _run(q, k, v, dout, backend=backend, **kwargs)

    assert candidate[0].dtype == dtype
    assert_oracle_close(candidate[0], reference[0], golden[0], kind="forward",
                        what=f"out [{ran}]")
    for name, cand, ref, gold in zip("qkv", candidate[2], reference[2], golden[2], strict=True):
        assert_oracle_close(cand, ref, gold, kind="backward", what=f"d{name} [{ran}]")


# ---------------------------------------------------------------------------
# 4. fully masked rows and extreme logits


@dataclasses.dataclass(frozen=True)
class EmptyRows:
    name: str
    q_len: int
    kv_len: int
    causal: str | None = None
    dense: str | None = None  # "rows" | "all" | None
    key_lengths: tuple[int, int] | None = None


EMPTY_ROW_CASES = [
    EmptyRows("dense-mask-empty-rows", 7, 6, dense="rows"),
    EmptyRows("lower_right-Lq9>Lk5", 9, 5, causal="lower_right"),
    EmptyRows("key_padding-length-0", 7, 6, key_lengths=(0, 3)),
    EmptyRows("everything-masked", 7, 6, dense="all"),
]


@pytest.mark.parametrize("backend", ["reference", "sdpa", "auto"])
@pytest.mark.parametrize("dtype", [*DTYPES, torch.float64], ids=_dtype_id)
@pytest.mark.parametrize("spec", EMPTY_ROW_CASES, ids=lambda s: s.name)
def test_fully_masked_rows_give_zeros_and_finite_grads(spec, dtype, backend):
    B, Hq, Hkv, D = 2, 4, 2, 8
    q = torch.randn(B, Hq, spec.q_len, D).to(dtype)
    k = torch.randn(B, Hkv, spec.kv_len, D).to(dtype)
    v = torch.randn(B, Hkv, spec.kv_len, D).to(dtype)
    dout = torch.randn(B, Hq, spec.q_len, D).to(dtype)

    mask = None
    if spec.dense == "rows":
        mask = torch.ones(B, 1, spec.q_len, spec.kv_len, dtype=torch.bool)  # (B, 1, Lq, Lk)
        mask[:, :, 2] = False
        mask[1, :, 4] = False
    elif spec.dense == "all":
        mask = torch.zeros(B, 1, spec.q_len, spec.kv_len, dtype=torch.bool)
    allowed = _allowed(B, Hq, spec.q_len, spec.kv_len, mask, spec.causal)
    if spec.key_lengths is not None:
        lengths = torch.tensor(spec.key_lengths)
        mask = masks.key_padding(lengths)
        allowed = allowed & (torch.arange(spec.kv_len) < lengths[:, None])[:, None, None, :]
    empty = ~allowed.any(dim=-1)  # (B, Hq, Lq)
    assert empty.any(), "the case must contain empty rows"

    return_weights = backend == "reference"
    out, weights, (dq, dk, dv) = _run(q, k, v, dout, mask=mask, causal=spec.causal,
                                      return_weights=return_weights, backend=backend)

    assert torch.isfinite(out).all()
    assert (out[empty] == 0).all()
    for name, grad in zip("qkv", (dq, dk, dv), strict=True):
        assert torch.isfinite(grad).all(), f"non-finite d{name}"
    assert (dq[empty] == 0).all()
    # A key that no query of its group may attend to receives no gradient.
    unused_key = ~allowed.view(B, Hkv, Hq // Hkv, spec.q_len, spec.kv_len).any(dim=(2, 3))
    assert (dk[unused_key] == 0).all() and (dv[unused_key] == 0).all()
    if return_weights:
        assert torch.isfinite(weights).all()
        assert (weights[empty] == 0).all()
        assert (weights[~allowed] == 0).all()


def _extreme_inputs(dtype, q_heads, kv_heads, head_dim, target=1e4):
    """q, k whose scaled logits reach +-``target`` (after rounding to ``dtype``)."""
    q = torch.randn(2, q_heads, 33, head_dim, dtype=torch.float64)
    k = torch.randn(2, kv_heads, 47, head_dim, dtype=torch.float64)
    k_full = k.repeat_interleave(q_heads // kv_heads, dim=1)
    peak = (q @ k_full.transpose(-2, -1)).abs().max() / math.sqrt(head_dim)
    factor = (target / peak).sqrt()
    q, k = (q * factor).to(dtype), (k * factor).to(dtype)
    v = torch.randn(2, kv_heads, 47, head_dim).to(dtype)
    return q, k, v


@pytest.mark.parametrize("causal", [None, "lower_right"], ids=["no-mask", "lower_right"])
@pytest.mark.parametrize("backend", ["reference", "sdpa"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=_dtype_id)
@pytest.mark.parametrize("head_dim", [64, 59], ids=lambda d: f"d{d}")
def test_extreme_logits_stay_finite(head_dim, dtype, backend, causal):
    q, k, v = _extreme_inputs(dtype, 4, 2, head_dim)
    logits = q.double() @ k.double().repeat_interleave(2, dim=1).transpose(-2, -1)
    assert (logits / math.sqrt(head_dim)).abs().max() > 0.9e4, "logits must reach ~1e4"
    dout = torch.randn(2, 4, 33, head_dim).to(dtype)

    out, _, grads = _run(q, k, v, dout, causal=causal, backend=backend)

    assert torch.isfinite(out).all()
    for name, grad in zip("qkv", grads, strict=True):
        assert torch.isfinite(grad).all(), f"non-finite d{name}"
    # Attention output is a convex combination of value rows.
    bound = v.double().abs().amax(dim=(0, 1, 2)) * (1 + 2 ** -7) + 1e-6  # (D,)
    assert (out.double().abs() <= bound).all()


# ---------------------------------------------------------------------------
# 5. reference semantics checked independently


def _naive_attention(q, k, v, allowed, scale, modify=None):
    """Plain float64 loops: ``softmax(modify(q.k * scale))`` over allowed keys, then @ v.
    ``modify(score, h, i, j)`` rewrites one logit; empty rows give zeros."""
    B, Hq, Lq, _ = q.shape
    Hkv, Lk, Dv = k.shape[1], k.shape[2], v.shape[3]
    group = Hq // Hkv
    out = torch.zeros(B, Hq, Lq, Dv, dtype=torch.float64)
    weights = torch.zeros(B, Hq, Lq, Lk, dtype=torch.float64)
    for b in range(B):
        for h in range(Hq):
            for i in range(Lq):
                keys = [j for j in range(Lk) if allowed[b, h, i, j]]
                if not keys:
                    continue
                scores = {}
                for j in keys:
                    s = float(q[b, h, i] @ k[b, h // group, j]) * scale
                    scores[j] = modify(s, h, i, j) if modify is not None else s
                top = max(scores.values())
                total = sum(math.exp(s - top) for s in scores.values())
                for j, s in scores.items():
                    weights[b, h, i, j] = math.exp(s - top) / total
                    out[b, h, i] += weights[b, h, i, j] * v[b, h // group, j]
    return out, weights


def _tiny(q_heads=4, kv_heads=2, q_len=5, kv_len=6, head_dim=3, v_dim=4, batch=2):
    q = torch.randn(batch, q_heads, q_len, head_dim, dtype=torch.float64)
    k = torch.randn(batch, kv_heads, kv_len, head_dim, dtype=torch.float64)
    v = torch.randn(batch, kv_heads, kv_len, v_dim, dtype=torch.float64)
    return q, k, v


SLOPES = torch.tensor([0.5, 0.25, 0.125, 0.0625], dtype=torch.float64)
TABLE = torch.linspace(-1.0, 1.0, 4 * 5, dtype=torch.float64).view(4, 5)  # (H, 2M+1), M = 2

NAIVE_CASES = {
    "plain": (None, None),
    "softcap": (score_mods.softcap(2.0), lambda s, h, i, j: 2.0 * math.tanh(s / 2.0)),
    "alibi": (score_mods.alibi(SLOPES), lambda s, h, i, j: s + float(SLOPES[h]) * (j - i)),
    "relative_bias": (score_mods.relative_bias(TABLE),
                      lambda s, h, i, j: s + float(TABLE[h, max(-2, min(2, j - i)) + 2])),
}


@pytest.mark.parametrize("masked", [False, True], ids=["no-mask", "mask-with-empty-row"])
@pytest.mark.parametrize("name", list(NAIVE_CASES))
def test_float64_reference_equals_handwritten_formula(name, masked):
    score_mod, modify = NAIVE_CASES[name]
    q, k, v = _tiny()
    mask = None
    if masked:
        mask = torch.rand(2, 4, 5, 6) < 0.6  # (B, Hq, Lq, Lk)
        mask[1, 2, 3] = False
    allowed = _allowed(2, 4, 5, 6, mask)
    scale = 0.7

    out, weights = attnkit.attention(q, k, v, mask=mask, scale=scale, score_mod=score_mod,
                                     return_weights=True, backend="reference")
    want_out, want_weights = _naive_attention(q, k, v, allowed, scale, modify)

    torch.testing.assert_close(weights, want_weights, rtol=0, atol=1e-12)
    torch.testing.assert_close(out, want_out, rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=_dtype_id)
@pytest.mark.parametrize("causal", [None, "lower_right"],
                         ids=["dense-mask", "dense-and-lower_right"])
def test_returned_weights_are_a_distribution_over_allowed_keys(dtype, causal):
    q = torch.randn(2, 4, 9, 16).to(dtype)
    k = torch.randn(2, 2, 7, 16).to(dtype)
    v = torch.randn(2, 2, 7, 16).to(dtype)
    mask = torch.rand(2, 4, 9, 7) < 0.5
    mask[0, 1, 6] = False
    allowed = _allowed(2, 4, 9, 7, mask, causal)

    _, weights = attnkit.attention(q, k, v, mask=mask, causal=causal, return_weights=True)

    assert weights.dtype == dtype and weights.shape == (2, 4, 9, 7)
    assert (weights[~allowed] == 0).all()
    assert (weights >= 0).all()
    sums = weights.double().sum(dim=-1)  # (B, Hq, Lq)
    nonempty = allowed.any(dim=-1)
    assert (~nonempty).any() and nonempty.any()
    torch.testing.assert_close(sums[nonempty], torch.ones_like(sums[nonempty]))
    assert (sums[~nonempty] == 0).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=_dtype_id)
def test_reference_output_is_returned_weights_times_v(dtype):
    q = torch.randn(2, 4, 11, 16).to(dtype)
    k = torch.randn(2, 2, 13, 16).to(dtype)
    v = torch.randn(2, 2, 13, 8).to(dtype)

    out, weights = attnkit.attention(q, k, v, causal="lower_right", return_weights=True)

    assert torch.equal(out, weights @ v.repeat_interleave(2, dim=1))


def test_sdpa_uses_the_reference_weights():
    q, k, v = _tiny(q_heads=4, kv_heads=1, q_len=9, kv_len=7, head_dim=8, v_dim=5)
    mask = torch.rand(9, 7) < 0.6  # (Lq, Lk)
    mask[4] = False

    _, weights = attnkit.attention(q, k, v, mask=mask, causal="lower_right",
                                   return_weights=True, backend="reference")
    out, _ = attnkit.attention(q, k, v, mask=mask, causal="lower_right", backend="sdpa")

    torch.testing.assert_close(out, weights @ v.expand(-1, 4, -1, -1), rtol=0, atol=1e-12)


GRADCHECK_MODS = {
    "alibi-causal": (lambda: score_mods.alibi(SLOPES), True),
    "softcap": (lambda: score_mods.softcap(1.5), None),
    "relative_bias": (None, None),
    "relative_bias-lower_right": (None, "lower_right"),
}


@pytest.mark.parametrize("name", list(GRADCHECK_MODS))
def test_score_mod_gradients_gradcheck(name):
    make_mod, causal = GRADCHECK_MODS[name]
    q_len = 4 if causal == "lower_right" else 3
    kv_len = 3
    q, k, v = _tiny(q_heads=2, kv_heads=1, q_len=q_len, kv_len=kv_len, head_dim=3, v_dim=2,
                    batch=1)
    mask = torch.ones(q_len, kv_len, dtype=torch.bool)
    mask[1] = False  # an empty row takes part in the check too
    inputs = [t.requires_grad_() for t in (q, k, v)]
    if make_mod is None:
        table = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)  # (H, 2M+1)
        inputs.append(table)

    def fn(q, k, v, *table):
        mod = score_mods.relative_bias(table[0]) if table else make_mod()
        out, _ = attnkit.attention(q, k, v, mask=mask, causal=causal, score_mod=mod,
                                   backend="reference")
        return out

    assert torch.autograd.gradcheck(fn, tuple(inputs))
    if make_mod is None:
        (grad_table,) = torch.autograd.grad(fn(*inputs).sum(), [table])
        assert grad_table.abs().sum() > 0, "the learnable table must receive gradients"


# ---------------------------------------------------------------------------
# 6. parity with torch.nn.functional.scaled_dot_product_attention called directly


PARITY_CASES = {
    "no-mask": dict(),
    "causal-square": dict(causal=True),
    "bool-mask-4d": dict(mask="4d"),
    "bool-mask-2d": dict(mask="2d"),
}


@pytest.mark.parametrize("gqa", [False, True], ids=["mha", "gqa4"])
@pytest.mark.parametrize("name", list(PARITY_CASES))
def test_sdpa_backend_is_torch_sdpa(name, gqa):
    spec = PARITY_CASES[name]
    kv_heads = 2 if gqa else 8
    q = torch.randn(2, 8, 29, 59)
    k = torch.randn(2, kv_heads, 29, 59)
    v = torch.randn(2, kv_heads, 29, 31)
    mask = {None: None, "4d": torch.rand(2, 1, 29, 29) < 0.7,
            "2d": torch.rand(29, 29) < 0.7}[spec.get("mask")]
    causal = spec.get("causal")

    ours, _ = attnkit.attention(q, k, v, mask=mask, causal=causal, backend="sdpa")
    theirs = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=bool(causal),
                                            enable_gqa=gqa)
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("q_len,kv_len", [(5, 12), (12, 5)], ids=["Lq<Lk", "Lq>Lk"])
@pytest.mark.parametrize("backend", ["reference", "sdpa"])
def test_lower_right_matches_torch(backend, q_len, kv_len):
    q, k, v = _tiny(q_heads=4, kv_heads=2, q_len=q_len, kv_len=kv_len, head_dim=16, v_dim=8)
    if q_len < kv_len:
        bias = causal_lower_right(q_len, kv_len)
    else:  # torch's CausalBias warns about NaNs here; spell the mask out instead
        bias = torch.ones(q_len, kv_len, dtype=torch.bool).tril(diagonal=kv_len - q_len)
    theirs = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, enable_gqa=True)
    ours, _ = attnkit.attention(q, k, v, causal="lower_right", backend=backend)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)


def test_float64_reference_matches_torch_sdpa():
    q, k, v = _tiny(q_heads=8, kv_heads=2, q_len=13, kv_len=17, head_dim=59, v_dim=11)
    mask = torch.rand(2, 1, 13, 17) < 0.8  # every row keeps a key with near certainty
    mask[..., 0] = True
    ours, _ = attnkit.attention(q, k, v, mask=mask, scale=0.3, backend="reference")
    theirs = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.3, enable_gqa=True)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------
# 7. dropout


@pytest.mark.parametrize("backend", ["reference", "sdpa"])
def test_dropout_is_deterministic_under_a_fixed_seed(backend):
    q, k, v = (torch.randn(2, 4, 16, 8) for _ in range(3))
    runs = []
    for seed in (7, 7, 8):
        torch.manual_seed(seed)
        runs.append(attnkit.attention(q, k, v, dropout_p=0.3, backend=backend)[0])
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2]), "a different seed must drop different weights"


@pytest.mark.parametrize("backend", ["reference", "sdpa", "auto"])
def test_zero_dropout_is_deterministic(backend):
    q, k, v = (torch.randn(2, 4, 16, 8) for _ in range(3))
    first, _ = attnkit.attention(q, k, v, dropout_p=0.0, backend=backend)
    torch.manual_seed(123)
    second, _ = attnkit.attention(q, k, v, dropout_p=0.0, backend=backend)
    default, _ = attnkit.attention(q, k, v, backend=backend)
    assert torch.equal(first, second) and torch.equal(first, default)


@pytest.mark.parametrize("backend", ["reference", "sdpa"])
def test_dropout_acts_on_the_weights(backend):
    # With v = identity, the output row *is* the (dropped, rescaled) weight row.
    p = 0.4
    q = torch.randn(1, 2, 16, 8, dtype=torch.float64)
    k = torch.randn(1, 2, 24, 8, dtype=torch.float64)
    v = torch.eye(24, dtype=torch.float64).expand(1, 2, 24, 24)
    _, weights = attnkit.attention(q, k, v, return_weights=True, backend="reference")

    out, _ = attnkit.attention(q, k, v, dropout_p=p, backend=backend)

    dropped = out == 0
    assert dropped.any() and (~dropped).any()
    torch.testing.assert_close(out[~dropped], weights[~dropped] / (1 - p), rtol=1e-12, atol=0)


def test_returned_weights_are_taken_before_dropout():
    q, k, v = (torch.randn(2, 4, 16, 8) for _ in range(3))
    _, clean = attnkit.attention(q, k, v, return_weights=True)
    _, weights = attnkit.attention(q, k, v, dropout_p=0.5, return_weights=True)
    assert torch.equal(weights, clean)


# ---------------------------------------------------------------------------
# 8. explain()


def _qkv():
    return torch.randn(2, 4, 8, 16), torch.randn(2, 2, 8, 16), torch.randn(2, 2, 8, 16)


@pytest.mark.parametrize("kwargs", [dict(), dict(causal=True),
                                    dict(mask=torch.ones(8, 8, dtype=torch.bool)),
                                    dict(mask=masks.sliding_window(3)), dict(dropout_p=0.1)],
                         ids=["plain", "causal", "bool-mask", "mask_mod", "dropout"])
def test_explain_prefers_sdpa_for_plain_calls(kwargs):
    decision = attnkit.explain(*_qkv(), **kwargs)
    assert decision.backend == "sdpa"
    assert "reference" in decision.refused and "sdpa" not in decision.refused


@pytest.mark.parametrize("kwargs,cause", [
    (dict(return_weights=True), "return_weights"),
    (dict(score_mod=score_mods.softcap(30.0)), "score_mod"),
    (dict(score_mod=lambda score, b, h, q_idx, kv_idx: score * 2), "score_mod"),
], ids=["return_weights", "softcap", "lambda-score_mod"])
def test_explain_falls_back_to_reference_and_names_the_cause(kwargs, cause):
    decision = attnkit.explain(*_qkv(), **kwargs)
    assert decision.backend == "reference"
    assert cause in decision.refused["sdpa"]
    assert cause in str(decision)


def test_auto_returns_weights_through_the_reference():
    out, weights = attnkit.attention(*_qkv(), return_weights=True)
    assert weights is not None and weights.shape == (2, 4, 8, 8)


def test_explain_explicit_reference_says_sdpa_not_requested():
    decision = attnkit.explain(*_qkv(), backend="reference")
    assert decision.backend == "reference"
    assert decision.refused["sdpa"] == "not requested"


@pytest.mark.parametrize("kwargs,cause", [
    (dict(score_mod=score_mods.softcap(30.0)), "score_mod"),
    (dict(return_weights=True), "return_weights"),
], ids=["score_mod", "return_weights"])
@pytest.mark.parametrize("fn", [attnkit.attention, attnkit.explain], ids=["attention", "explain"])
def test_explicit_sdpa_refuses_with_the_reason(fn, kwargs, cause):
    with pytest.raises(ValueError, match=rf"backend='sdpa' cannot run.*{cause}"):
        fn(*_qkv(), backend="sdpa", **kwargs)
