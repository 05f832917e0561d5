"""The ``tiled`` backend (FlashAttention in torch ops) against the float64 oracle.

Every case is checked three ways (DESIGN.md section 4, ``conftest.assert_oracle_close``):
a float64 golden run of the reference backend, the reference in the test dtype and
the tiled kernel in the test dtype, for the output and for dq, dk, dv (and for the
gradient of a tensor a score_mod captures). The grid runs ``attention(...,
backend="tiled")`` with the default tiles; a second grid calls
:func:`~attnkit.kernels.tiled.tiled_attention` directly with small tiles whose sizes
do not divide the lengths, so many EMPTY, PARTIAL and FULL tiles and short edge tiles
are exercised. Then: fully masked rows, the log-sum-exp, float64 ``gradcheck``, and
a check that EMPTY tiles are skipped and FULL tiles run without the mask.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

import attnkit
from attnkit import masks, score_mods
from attnkit.functional._plan import CallPlan, captured_tensors
from attnkit.kernels.spec import EMPTY, FULL, PARTIAL
from attnkit.kernels.tiled import TileFns, tiled_attention
from attnkit.testing import assert_oracle_close


def _dtype_id(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


# ---------------------------------------------------------------------------
# cases


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
    score: str = "none"  # a key of SCORES
    half: bool = True  # also run in float16 (cheap enough)


def _dense_with_empty_rows(c: Case) -> torch.Tensor:
    mask = torch.rand(c.batch, c.q_heads, c.q_len, c.kv_len) < 0.6  # (B, Hq, Lq, Lk)
    mask[:, :, ::7] = False
    mask[0, -1, 3] = False
    return mask


def _four_documents(c: Case) -> masks.Document:
    """Four packed documents of unequal lengths per batch row, placed at the same
    fractions of the query and key sequences (ids ``(B, Lq)`` and ``(B, Lk)``)."""

    def ids(length: int) -> torch.Tensor:
        rows = []
        for b in range(c.batch):
            cuts = torch.tensor([0.1, 0.45, 0.8] if b % 2 == 0 else [0.3, 0.35, 0.6])
            rows.append(torch.bucketize(torch.arange(length), (cuts * length).long(),
                                        right=True))
        return torch.stack(rows)  # (B, length), values 0..3

    q_ids, kv_ids = ids(c.q_len), ids(c.kv_len)
    assert q_ids.unique().numel() == 4 and kv_ids.unique().numel() == 4
    return masks.document(q_ids, kv_ids)


def _checkerboard_lambda(c: Case):
    # A plain function, no tile_kinds: the block map is built by evaluating it.
    return lambda b, h, q_idx, kv_idx: ((q_idx // 24 + kv_idx // 40) % 2 == 0) | (q_idx == kv_idx)


def _everything_masked(c: Case) -> torch.Tensor:
    return torch.zeros(c.batch, 1, c.q_len, c.kv_len, dtype=torch.bool)  # (B, 1, Lq, Lk)


MASKS = {
    "none": lambda c: None,
    "sliding-causal": lambda c: masks.sliding_window(16),
    "sliding-bidir": lambda c: masks.sliding_window(9, causal=False),
    "keypad-zero": lambda c: masks.key_padding(torch.tensor([0, c.kv_len - 5, 7][: c.batch])),
    "document4": _four_documents,
    "prefix_lm": lambda c: masks.prefix_lm(c.kv_len // 3),
    "dense-empty-rows": _dense_with_empty_rows,
    "lambda": _checkerboard_lambda,
    "everything": _everything_masked,
}


def _alibi(c: Case, param_dtype: torch.dtype):
    return score_mods.alibi(score_mods.alibi_slopes(c.q_heads)), []


def _softcap(c: Case, param_dtype: torch.dtype):
    return score_mods.softcap(1.5), []  # unit-normal inputs give logits of order 1


def _relative_bias(c: Case, param_dtype: torch.dtype):
    generator = torch.Generator().manual_seed(1)
    table = torch.randn(c.q_heads, 2 * 6 + 1, generator=generator, dtype=torch.float64)
    table = table.to(param_dtype).requires_grad_(True)  # (Hq, 2M+1), M = 6
    return score_mods.relative_bias(table), [table]


def _lambda_with_learned_gain(c: Case, param_dtype: torch.dtype):
    generator = torch.Generator().manual_seed(2)
    gain = torch.randn(c.q_heads, generator=generator, dtype=torch.float64)
    gain = gain.to(param_dtype).requires_grad_(True)  # (Hq,)

    def score_mod(score, b, h, q_idx, kv_idx):
        wave = torch.cos((q_idx - kv_idx).to(score.dtype) / 5.0)
        return score * (1 + 0.1 * b) + gain.to(score.dtype)[h] * wave

    return score_mod, [gain]


SCORES = {
    "none": lambda c, dtype: (None, []),
    "alibi": _alibi,
    "softcap": _softcap,
    "relative_bias": _relative_bias,
    "lambda-learned": _lambda_with_learned_gain,
}

CASES = [
    # name                                   B  Hq Hkv Lq    Lk    D    Dv   mask / causal / score
    Case("dense-mha-d64-L97",                2, 4, 4,  97,   97,   64,  64),
    Case("gqa2-d59-L97-causal",              2, 4, 2,  97,   97,   59,  59,  causal=True),
    Case("gqa4-d111-Lq33<Lk97-upper_left",   1, 8, 2,  33,   97,   111, 111, causal="upper_left"),
    Case("gqa8-Lq33<Lk97-lower_right",       1, 8, 1,  33,   97,   64,  64,  causal="lower_right"),
    Case("d59-Lq97>Lk33-upper_left",         2, 2, 2,  97,   33,   59,  59,  causal="upper_left"),
    Case("gqa2-Lq97>Lk33-lower_right-empty",  2, 4, 2,  97,   33,   64,  64,  causal="lower_right"),
    Case("gqa4-Lq1-lower_right-dv59",        2, 4, 1,  1,    97,   64,  59,  causal="lower_right"),
    Case("gqa2-Lk1-d59-dv111",               2, 2, 1,  17,   1,    59,  111),
    Case("Lq1-Lk1",                          1, 2, 2,  1,    1,    64,  64),
    Case("sliding-causal-gqa2",              1, 4, 2,  97,   97,   64,  64,  "sliding-causal"),
    Case("sliding-bidir-d111-dv64",          1, 2, 2,  97,   97,   111, 64,  "sliding-bidir"),
    Case("keypad-zero-length-d59-dv64",      2, 4, 4,  33,   97,   59,  64,  "keypad-zero"),
    Case("document4-causal-gqa2",            2, 4, 2,  97,   97,   64,  64,  "document4", True),
    Case("prefix_lm-gqa4-d59",               1, 4, 1,  97,   97,   59,  59,  "prefix_lm"),
    Case("dense-bool-empty-rows-gqa2-dv111", 2, 4, 2,  33,   97,   59,  111, "dense-empty-rows"),
    Case("lambda-mask_mod",                  1, 2, 2,  97,   97,   64,  64,  "lambda"),
    Case("alibi-causal-gqa2",                1, 4, 2,  97,   97,   64,  64,  causal=True,
         score="alibi"),
    Case("softcap-lower_right-Lq33<Lk97",    1, 2, 2,  33,   97,   59,  59,  causal="lower_right",
         score="softcap"),
    Case("relative_bias-sliding-bidir-gqa2", 1, 4, 2,  97,   97,   64,  48,  "sliding-bidir",
         score="relative_bias"),
    Case("relative_bias-Lq97>Lk33-lower_r",  2, 2, 1,  97,   33,   59,  59,  causal="lower_right",
         score="relative_bias"),
    Case("lambda-learned-keypad-gqa2",       2, 2, 1,  33,   97,   111, 59,  "keypad-zero",
         score="lambda-learned"),
    Case("long-L1025-causal-gqa2",           1, 2, 1,  1025, 1025, 64,  64,  causal=True,
         half=False),
]

GRID = [pytest.param(case, dtype, id=f"{case.name}-{_dtype_id(dtype)}")
        for case in CASES
        for dtype in (torch.float32, torch.bfloat16, torch.float16)
        if case.half or dtype != torch.float16]


def _inputs(c: Case, dtype: torch.dtype):
    q = torch.randn(c.batch, c.q_heads, c.q_len, c.head_dim).to(dtype)
    k = torch.randn(c.batch, c.kv_heads, c.kv_len, c.head_dim).to(dtype)
    v = torch.randn(c.batch, c.kv_heads, c.kv_len, c.v_dim).to(dtype)
    dout = torch.randn(c.batch, c.q_heads, c.q_len, c.v_dim).to(dtype)
    return q, k, v, dout


def _param_dtype(dtype: torch.dtype) -> torch.dtype:
    """Learned score_mod tensors stay float32 under half inputs (as parameters do)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _attention_run(case: Case, q, k, v, dout, mask, backend: str):
    """Forward and backward on fresh leaves: ``(out, [dq, dk, dv, *captured grads])``."""
    score_mod, params = SCORES[case.score](case, _param_dtype(q.dtype))
    q, k, v = (t.detach().clone().requires_grad_(True) for t in (q, k, v))
    out, _ = attnkit.attention(q, k, v, mask=mask, causal=case.causal, score_mod=score_mod,
                               backend=backend)
    grads = torch.autograd.grad(out, (q, k, v, *params), dout)
    return out.detach(), list(grads)


def _check_three_ways(candidate, reference, golden, dtype, terms_of_zero_grads=None):
    out, grads = candidate
    assert out.dtype == dtype
    assert_oracle_close(out, reference[0], golden[0], kind="forward", what="out [tiled]")
    names = ["dq", "dk", "dv"] + [f"d(captured {i})" for i in range(len(grads) - 3)]
    for name, cand, ref, gold in zip(names, grads, reference[1], golden[1], strict=True):
        if name in ("dq", "dk") and not gold.any() and terms_of_zero_grads is not None:
            # Every row attends to exactly one key, so dS, dq and dk are exactly 0. A
            # flash backward gets dS as P * (dO.v - rowsum(dO * O)): two float dot
            # products of the same numbers in different summation orders, which cancel
            # only to rounding. Bound that rounding by a few ulps of the terms
            # involved (dk sums it over the rows of a key/value head).
            dout, v, q, k, scale = terms_of_zero_grads
            rows = q.shape[1] // k.shape[1] * q.shape[2]
            terms = (dout.abs().max() * v.abs().max() * v.shape[-1] ** 0.5
                     * max(q.abs().max(), k.abs().max()) * scale).item() * rows ** 0.5
            bound = 4 * torch.finfo(cand.dtype).eps * terms
            assert cand.abs().max().item() <= bound, (name, cand.abs().max().item(), bound)
            continue
        assert_oracle_close(cand, ref, gold, kind="backward", what=f"{name} [tiled]")


# ---------------------------------------------------------------------------
# 1. attention(..., backend="tiled") with the default tiles, three ways


@pytest.mark.parametrize("case,dtype", GRID)
def test_tiled_matches_reference_three_ways(case, dtype):
    q, k, v, dout = _inputs(case, dtype)
    mask = MASKS[case.mask](case)

    golden = _attention_run(case, q.double(), k.double(), v.double(), dout.double(), mask,
                            "reference")
    reference = _attention_run(case, q, k, v, dout, mask, "reference")
    candidate = _attention_run(case, q, k, v, dout, mask, "tiled")

    _check_three_ways(candidate, reference, golden, dtype,
                      (dout.float(), v.float(), q.float(), k.float(), case.head_dim ** -0.5))


# ---------------------------------------------------------------------------
# 2. tiled_attention with small tiles that do not divide the lengths


SMALL_TILE_CASES = [
    # name                                B  Hq Hkv Lq  Lk  D   Dv  mask / causal / score
    Case("plain-gqa2",                    1, 4, 2,  97, 83, 59, 40),
    Case("document4-lower_right-gqa4",    2, 4, 1,  97, 97, 32, 32, "document4", "lower_right"),
    Case("upper_left-Lq97>Lk50-empty",    1, 2, 2,  97, 50, 59, 59, causal="upper_left"),
    Case("lower_right-Lq97>Lk50-empty",   1, 2, 2,  97, 50, 59, 59, causal="lower_right"),
    Case("sliding-causal-relative_bias",  1, 2, 2,  97, 83, 32, 32, "sliding-causal",
         score="relative_bias"),
    Case("sliding-bidir-alibi-gqa2",      1, 4, 2,  97, 97, 59, 59, "sliding-bidir",
         score="alibi"),
    Case("dense-empty-rows-softcap",      2, 2, 1,  50, 83, 32, 48, "dense-empty-rows",
         score="softcap"),
    Case("lambda-mask-lambda-score",      2, 2, 2,  97, 83, 32, 32, "lambda",
         score="lambda-learned"),
    Case("prefix_lm-keypad-like",         1, 2, 1,  83, 83, 59, 59, "prefix_lm", True),
]


def _tiled_run(case: Case, q, k, v, dout, mask, block_q: int, block_k: int):
    score_mod, params = SCORES[case.score](case, _param_dtype(q.dtype))
    q, k, v = (t.detach().clone().requires_grad_(True) for t in (q, k, v))
    alignment = {True: "upper_left"}.get(case.causal, case.causal)
    plan = CallPlan.build(q, case.kv_len, mask, alignment, score_mod)
    fns = plan.tile_fns(block_q, block_k)
    captured = captured_tensors(score_mod)
    assert len(captured) == len(params)
    out, lse = tiled_attention(q, k, v, scale=1 / math.sqrt(case.head_dim), fns=fns,
                               captured=captured, block_q=block_q, block_k=block_k)
    grads = torch.autograd.grad(out, (q, k, v, *params), dout)
    return out.detach(), list(grads)


@pytest.mark.parametrize("blocks", [(16, 32), (32, 16)], ids=lambda b: f"tiles{b[0]}x{b[1]}")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=_dtype_id)
@pytest.mark.parametrize("case", SMALL_TILE_CASES, ids=lambda c: c.name)
def test_small_tiles_match_reference_three_ways(case, dtype, blocks):
    assert case.q_len % blocks[0] and case.kv_len % blocks[1], "edge tiles must be short"
    q, k, v, dout = _inputs(case, dtype)
    mask = MASKS[case.mask](case)

    golden = _attention_run(case, q.double(), k.double(), v.double(), dout.double(), mask,
                            "reference")
    reference = _attention_run(case, q, k, v, dout, mask, "reference")
    candidate = _tiled_run(case, q, k, v, dout, mask, *blocks)

    _check_three_ways(candidate, reference, golden, dtype)


def test_relative_bias_table_gradient_equals_reference_in_float64():
    case = Case("rb", 2, 4, 2, 45, 61, 16, 8, "sliding-bidir", score="relative_bias")
    q, k, v, dout = (t.double() for t in _inputs(case, torch.float64))
    mask = MASKS[case.mask](case)

    _, want = _attention_run(case, q, k, v, dout, mask, "reference")
    _, got = _attention_run(case, q, k, v, dout, mask, "tiled")
    _, got_small = _tiled_run(case, q, k, v, dout, mask, 8, 16)

    assert want[3].abs().sum() > 0, "the table must receive a gradient"
    for grads in (got, got_small):
        for name, g, w in zip(["dq", "dk", "dv", "dtable"], grads, want, strict=True):
            torch.testing.assert_close(g, w, rtol=0, atol=1e-12, msg=name)


# ---------------------------------------------------------------------------
# 3. fully masked rows: zeros, lse = -inf, finite (zero) gradients


def _allowed(case: Case, mask) -> torch.Tensor:
    """Dense ``(B, Hq, Lq, Lk)`` "may attend" matrix via the plan's dense mask."""
    alignment = {True: "upper_left"}.get(case.causal, case.causal)
    q = torch.empty(case.batch, case.q_heads, case.q_len, 1)
    dense = CallPlan.build(q, case.kv_len, mask, alignment, None).dense_mask()
    full = (case.batch, case.q_heads, case.q_len, case.kv_len)
    return torch.ones(full, dtype=torch.bool) if dense is None else dense.expand(full)


EMPTY_ROW_CASES = [
    # rows whose tiles are all EMPTY (never visited) and rows masked inside PARTIAL tiles
    Case("lower_right-Lq40>Lk13", 2, 4, 2, 40, 13, 8, 8, causal="lower_right"),
    Case("keypad-zero-length", 2, 4, 2, 19, 37, 8, 8, "keypad-zero"),
    Case("dense-empty-rows", 2, 4, 2, 21, 37, 8, 8, "dense-empty-rows"),
    Case("everything-masked", 2, 4, 2, 9, 11, 8, 8, "everything"),
]


@pytest.mark.parametrize("blocks", [(8, 8), (256, 512)], ids=["tiles8x8", "default-tiles"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16,
                                   torch.float64], ids=_dtype_id)
@pytest.mark.parametrize("case", EMPTY_ROW_CASES, ids=lambda c: c.name)
def test_fully_masked_rows_give_zeros_minus_inf_lse_and_finite_grads(case, dtype, blocks):
    mask = MASKS[case.mask](case)
    allowed = _allowed(case, mask)
    empty = ~allowed.any(dim=-1)  # (B, Hq, Lq)
    assert empty.any(), "the case must contain empty rows"
    q, k, v, dout = _inputs(case, dtype)
    q, k, v = (t.requires_grad_(True) for t in (q, k, v))
    alignment = {True: "upper_left"}.get(case.causal, case.causal)
    fns = CallPlan.build(q, case.kv_len, mask, alignment, None).tile_fns(*blocks)

    out, lse = tiled_attention(q, k, v, scale=0.3, fns=fns, block_q=blocks[0],
                               block_k=blocks[1])
    dq, dk, dv = torch.autograd.grad(out, (q, k, v), dout)

    assert out.dtype == dtype and lse.shape == empty.shape
    assert torch.isfinite(out).all()
    assert (out[empty] == 0).all()
    assert (lse[empty] == float("-inf")).all()
    assert torch.isfinite(lse[~empty]).all()
    for name, grad in zip("qkv", (dq, dk, dv), strict=True):
        assert torch.isfinite(grad).all(), f"non-finite d{name}"
    assert (dq[empty] == 0).all()
    # A key that no query of its group may attend to receives no gradient.
    group = case.q_heads // case.kv_heads
    unused_key = ~allowed.unflatten(1, (case.kv_heads, group)).any(dim=(2, 3))  # (B, Hkv, Lk)
    assert (dk[unused_key] == 0).all() and (dv[unused_key] == 0).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64], ids=_dtype_id)
def test_lse_is_the_logsumexp_of_the_allowed_scaled_logits(dtype):
    case = Case("lse", 2, 4, 2, 37, 29, 16, 8, "dense-empty-rows", "lower_right",
                score="alibi")
    mask = MASKS[case.mask](case)
    q, k, v, _ = _inputs(case, dtype)
    score_mod, _ = SCORES[case.score](case, torch.float64)
    fns = CallPlan.build(q, case.kv_len, mask, case.causal, score_mod).tile_fns(8, 16)

    _, lse = tiled_attention(q, k, v, scale=0.25, fns=fns, block_q=8, block_k=16)

    logits = q.double() @ k.double().repeat_interleave(2, dim=1).transpose(-2, -1) * 0.25
    logits = score_mod(logits, *masks.index_grids(2, 4, 37, 29))
    want = logits.masked_fill(~_allowed(case, mask), float("-inf")).logsumexp(dim=-1)
    assert lse.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert torch.equal(lse == float("-inf"), want == float("-inf"))
    finite = torch.isfinite(want)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(lse[finite].double(), want[finite], rtol=0, atol=tol)


# ---------------------------------------------------------------------------
# 4. float64 gradcheck of the custom backward (small tiles, mask, score_mod)


def _gradcheck_relative_bias():
    table = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)  # (Hq, 2M+1)
    mask = torch.rand(2, 1, 5, 7) < 0.7  # (B, 1, Lq, Lk)
    mask[0, 0, 2] = False  # an empty row takes part
    return table, mask, lambda t: score_mods.relative_bias(t)


def _gradcheck_lambda():
    gain = torch.randn(2, dtype=torch.float64, requires_grad=True)  # (Hq,)

    def make(gain):
        return lambda s, b, h, q_idx, kv_idx: 2.0 * torch.tanh(s / 2.0) + gain[h] * (kv_idx - q_idx)

    mask = lambda b, h, q_idx, kv_idx: (kv_idx <= q_idx + 2) & (kv_idx % 3 != 1)  # noqa: E731
    return gain, mask, make


@pytest.mark.parametrize("setup", [_gradcheck_relative_bias, _gradcheck_lambda],
                         ids=["relative_bias-dense-mask", "lambda-score-lambda-mask"])
def test_tiled_gradcheck_float64(setup):
    param, mask, make_score_mod = setup()
    q = torch.randn(2, 2, 5, 3, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, 1, 7, 3, dtype=torch.float64, requires_grad=True)
    v = torch.randn(2, 1, 7, 2, dtype=torch.float64, requires_grad=True)

    def fn(q, k, v, param):
        score_mod = make_score_mod(param)
        fns = CallPlan.build(q, 7, mask, None, score_mod).tile_fns(2, 3)
        out, _ = tiled_attention(q, k, v, scale=0.8, fns=fns, block_q=2, block_k=3,
                                 captured=captured_tensors(score_mod))
        return out

    assert torch.autograd.gradcheck(fn, (q, k, v, param))


# ---------------------------------------------------------------------------
# 5. EMPTY tiles are skipped; FULL tiles never evaluate the mask


class _CountingFns(TileFns):
    """Wraps a TileFns, recording the tile of every score and mask call."""

    def __init__(self, inner: TileFns):
        self.scored: list[tuple[int, int]] = []
        self.masked: list[tuple[int, int]] = []
        inner_score = inner.score or (lambda s, q0, k0: s)

        def score(s, q0, k0):
            self.scored.append((q0, k0))
            return inner_score(s, q0, k0)

        def mask(q0, q1, k0, k1):
            self.masked.append((q0, k0))
            return inner.mask(q0, q1, k0, k1)

        super().__init__(mask=mask if inner.mask is not None else None, score=score,
                         plan=inner.plan)

    def reset(self):
        self.scored.clear()
        self.masked.clear()


SKIP_CASES = {
    "sliding-causal": (masks.sliding_window(20), None, None),
    "document4-upper_left-alibi": ("document4", "upper_left", "alibi"),
    "lower_right-Lq>Lk": (None, "lower_right", None),
    "prefix_lm-lambda-score": ("prefix_lm", None, "lambda-learned"),
    "dense-lower-triangle": (torch.ones(90, 70, dtype=torch.bool).tril(-20), None, None),
}


@pytest.mark.parametrize("name", list(SKIP_CASES))
def test_empty_tiles_are_skipped_and_full_tiles_run_unmasked(name):
    mask, causal, score = SKIP_CASES[name]
    case = Case(name, 2, 2, 1, 90, 70, 8, 8, mask if isinstance(mask, str) else "none",
                causal, score or "none")
    if isinstance(mask, str):
        mask = MASKS[mask](case)
    block_q, block_k = 16, 8
    q, k, v, dout = _inputs(case, torch.float32)
    q, k, v = (t.requires_grad_(True) for t in (q, k, v))
    score_mod, params = SCORES[case.score](case, torch.float32)
    plan = CallPlan.build(q, case.kv_len, mask, causal, score_mod)
    fns = _CountingFns(plan.tile_fns(block_q, block_k))
    kinds = fns.plan
    assert kinds is not None and kinds.shape == (6, 9)

    def tiles(kind_set):
        return sorted((i * block_q, j * block_k) for i, j in
                      torch.isin(kinds, torch.tensor(kind_set, dtype=kinds.dtype))
                      .nonzero().tolist())

    assert tiles([EMPTY]) and tiles([PARTIAL]), "the plan must skip some tiles and mask others"
    out, _ = tiled_attention(q, k, v, scale=1 / math.sqrt(case.head_dim), fns=fns,
                             captured=captured_tensors(score_mod), block_q=block_q,
                             block_k=block_k)
    forward = sorted(fns.scored), sorted(fns.masked)
    fns.reset()
    grads = torch.autograd.grad(out, (q, k, v, *params), dout)
    backward = sorted(fns.scored), sorted(fns.masked)

    # With score_mod tensors to differentiate, the backward makes one extra pass over
    # the same tiles (to renormalize the rows of dS exactly): twice, still none EMPTY.
    passes = 2 if params else 1
    assert forward == (tiles([PARTIAL, FULL]), tiles([PARTIAL]))
    assert backward == (sorted(tiles([PARTIAL, FULL]) * passes),
                        sorted(tiles([PARTIAL]) * passes))
    # every non-EMPTY tile is visited, EMPTY never; FULL tiles never evaluate the mask
    # Skipping must not change the result.
    golden = _attention_run(case, q.double(), k.double(), v.double(), dout.double(), mask,
                            "reference")
    reference = _attention_run(case, q, k, v, dout, mask, "reference")
    _check_three_ways((out.detach(), list(grads)), reference, golden, torch.float32)


def test_plan_has_full_tiles_that_skip_the_mask():
    # Causal with 8 x 8 tiles: the tiles below the diagonal are FULL.
    q = torch.randn(1, 1, 40, 4)
    plan = CallPlan.build(q, 40, None, "upper_left", None)
    fns = _CountingFns(plan.tile_fns(8, 8))
    assert int((fns.plan == FULL).sum()) == 10 and int((fns.plan == EMPTY).sum()) == 10

    tiled_attention(q, q, q, scale=0.5, fns=fns, block_q=8, block_k=8)

    assert len(fns.scored) == 15 and sorted(fns.masked) == [(i, i) for i in range(0, 40, 8)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=_dtype_id)
def test_inputs_are_never_modified_in_place(dtype):
    case = Case("inputs", 1, 4, 2, 37, 29, 16, 8, "sliding-bidir", score="relative_bias")
    q, k, v, dout = _inputs(case, dtype)
    originals = [t.clone() for t in (q, k, v, dout)]

    _attention_run(case, q, k, v, dout, MASKS[case.mask](case), "tiled")
    _tiled_run(case, q, k, v, dout, MASKS[case.mask](case), 8, 16)

    for name, t, original in zip(["q", "k", "v", "dout"], (q, k, v, dout), originals,
                                 strict=True):
        assert torch.equal(t, original), f"{name} was modified"


# ---------------------------------------------------------------------------
# 6. the batched kernel: masks and score modifiers as numbers, many tiles per matmul


def _batched_run(case: Case, q, k, v, dout, mask, block_q, block_k, terms: bool):
    """``tiled_attention`` with the plan's tile functions, with or without the
    plain-number terms (without them a score_mod sends the call to the per-tile loop)."""
    score_mod, params = SCORES[case.score](case, _param_dtype(q.dtype))
    assert not params
    q, k, v = (t.detach().clone().requires_grad_(True) for t in (q, k, v))
    alignment = {True: "upper_left"}.get(case.causal, case.causal)
    plan = CallPlan.build(q, case.kv_len, mask, alignment, score_mod)
    fns = plan.tile_fns(block_q, block_k)
    if terms:
        spec = plan.kernel_spec()
        assert not isinstance(spec, str), spec
        fns.terms = spec
    out, lse = tiled_attention(q, k, v, scale=1 / math.sqrt(case.head_dim), fns=fns,
                               block_q=block_q, block_k=block_k)
    grads = torch.autograd.grad(out, (q, k, v), dout)
    return out.detach(), list(grads), lse.detach()


def _window_documents(c: Case):
    return masks.sliding_window(12) & _four_documents(c)


BATCHED_CASES = [
    # name                              B  Hq Hkv Lq  Lk  D   Dv  mask / causal / score
    Case("window-gqa2",                 1, 4, 2,  97, 97, 32, 32, "sliding-causal"),
    Case("window-bidir-alibi",          1, 2, 2,  97, 83, 16, 24, "sliding-bidir",
         score="alibi"),
    Case("window-documents-gqa2",       2, 4, 2,  97, 97, 16, 16, "window-documents"),
    Case("documents-causal-softcap",    2, 2, 1,  97, 97, 16, 16, "document4", True,
         score="softcap"),
    Case("keypad-lower_right-alibi",    2, 2, 2,  33, 97, 16, 16, "keypad-zero",
         "lower_right", score="alibi"),
    Case("causal-Lq>Lk-empty-softcap",  1, 4, 1,  97, 50, 16, 16, causal="lower_right",
         score="softcap"),
    Case("unmasked-Lq!=Lk",             1, 2, 1,  50, 83, 16, 8),
]
MASKS["window-documents"] = _window_documents


# masks as numbers for every case; as a per-tile callable only without a score mod (a score
# callable without terms runs the per-tile loop, tested by the loop's own tests)
_BATCHED_RUNS = [(case, terms) for case in BATCHED_CASES for terms in (True, False)
                 if terms or case.score == "none"]


@pytest.mark.parametrize("limits", [(512, 1 << 20), (16, 4096)],
                         ids=["default-batches", "tiny-batches-multipass"])
@pytest.mark.parametrize(
    "case, terms", _BATCHED_RUNS,
    ids=[f"{c.name}-{'as-numbers' if t else 'per-tile-mask'}" for c, t in _BATCHED_RUNS])
def test_batched_kernel_matches_reference_three_ways(case, terms, limits, monkeypatch):
    """Masks evaluated as index arithmetic over whole batches, or per PARTIAL tile and
    stacked; small batch limits split rows into several online-softmax passes and many
    gathered batches. Tiles 8x16 do not divide the lengths (short edge tiles)."""
    from attnkit.kernels import _tiled_batch

    monkeypatch.setattr(_tiled_batch, "MAX_KEYS", limits[0])
    monkeypatch.setattr(_tiled_batch, "MAX_ELEMENTS", limits[1])
    q, k, v, dout = _inputs(case, torch.float32)
    mask = MASKS[case.mask](case)

    golden = _attention_run(case, q.double(), k.double(), v.double(), dout.double(), mask,
                            "reference")
    reference = _attention_run(case, q, k, v, dout, mask, "reference")
    out, grads, lse = _batched_run(case, q, k, v, dout, mask, 8, 16, terms)

    _check_three_ways((out, grads), reference, golden, torch.float32)
    allowed = _allowed(case, mask)
    empty = ~allowed.any(dim=-1)
    assert (lse[empty] == float("-inf")).all() and torch.isfinite(lse[~empty]).all()
    assert (out[empty] == 0).all()


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16], ids=_dtype_id)
def test_batched_kernel_in_float64_and_bfloat16(dtype):
    case = Case("w", 2, 4, 2, 45, 61, 16, 8, "window-documents", score="alibi")
    q, k, v, dout = (t.to(dtype) for t in _inputs(case, torch.float64))
    mask = MASKS[case.mask](case)
    golden = _attention_run(case, q.double(), k.double(), v.double(), dout.double(), mask,
                            "reference")
    reference = _attention_run(case, q, k, v, dout, mask, "reference")
    out, grads, _ = _batched_run(case, q, k, v, dout, mask, 8, 16, True)
    assert out.dtype == dtype and all(g.dtype == dtype for g in grads)
    if dtype == torch.float64:
        for got, want in zip([out, *grads], [golden[0], *golden[1]], strict=True):
            torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    else:
        _check_three_ways((out, grads), reference, golden, dtype)


class _MaskCounter:
    def __init__(self, mask):
        self.inner, self.calls = mask, []

    def __call__(self, q0, q1, k0, k1):
        self.calls.append((q0, k0))
        return self.inner(q0, q1, k0, k1)


def test_batched_kernel_calls_a_per_tile_mask_once_per_partial_tile():
    case = Case("count", 2, 2, 1, 90, 70, 8, 8, "document4", "upper_left")
    q, k, v, dout = _inputs(case, torch.float32)
    q, k, v = (t.requires_grad_(True) for t in (q, k, v))
    fns = CallPlan.build(q, 70, MASKS["document4"](case), "upper_left", None).tile_fns(16, 8)
    counter = _MaskCounter(fns.mask)
    fns.mask = counter
    partial = sorted((i * 16, j * 8) for i, j in (fns.plan == PARTIAL).nonzero().tolist())
    assert partial and (fns.plan == EMPTY).any() and (fns.plan == FULL).any()

    out, _ = tiled_attention(q, k, v, scale=0.3, fns=fns, block_q=16, block_k=8)
    assert sorted(counter.calls) == partial
    counter.calls.clear()
    torch.autograd.grad(out, (q, k, v), dout)
    assert sorted(counter.calls) == partial


def test_schedule_covers_every_visited_tile_once_within_the_limits():
    from attnkit.kernels._tiled_schedule import build_schedule

    generator = torch.Generator().manual_seed(3)
    kinds = torch.randint(0, 3, (23, 31), generator=generator, dtype=torch.int8)
    kinds[5] = EMPTY  # a query block with nothing to do
    block_q, block_k, pairs, max_keys, max_elements = 8, 16, 6, 64, 6 * 8 * 64 * 3
    sched = build_schedule(kinds, block_q, block_k, 31 * 16 - 5, pairs, max_keys,
                           max_elements)
    seen = []
    for batch in sched.batches:
        g, n = batch.tiles.shape
        assert n * block_k <= max_keys
        assert g == 1 or pairs * g * block_q * n * block_k <= max_elements
        assert batch.rows.unique().numel() == g  # one online-softmax update per row
        assert torch.equal(batch.kinds, kinds[batch.rows[:, None], batch.tiles])
        assert batch.edge == bool((batch.tiles == 30).any())  # the short last tile
        assert batch.masked == (bool((batch.kinds == PARTIAL).any()) or batch.edge)
        if batch.key_run is not None:
            j0, step = batch.key_run
            want = j0 + step * torch.arange(g)[:, None] + torch.arange(n)
            assert torch.equal(batch.tiles, want)
        seen += [(int(i), int(j)) for i, row in zip(batch.rows, batch.tiles, strict=True)
                 for j in row]
    assert len(seen) == len(set(seen))
    assert sorted(seen) == sorted(map(tuple, (kinds != EMPTY).nonzero().tolist()))


def test_sliding_window_batches_read_keys_in_place():
    """Consecutive query blocks of a sliding window read key runs shifted by one tile:
    strided views (no gather), and one mask for every block of a batch."""
    from attnkit.kernels._tiled_schedule import build_schedule

    plan = CallPlan.build(torch.empty(1, 2, 1024, 1), 1024, masks.sliding_window(100), None,
                          None).tile_plan(32, 32)
    sched = build_schedule(plan, 32, 32, 1024, 2, 512, 1 << 16)
    runs = [b.key_run for b in sched.batches]
    assert all(r is not None for r in runs)
    assert sum(b.rows.numel() for b in sched.batches if b.key_run[1] == 1) >= 28


def test_tile_sizes_follow_the_block_map():
    from attnkit.kernels.tiled import BATCH_TILES, TILE_CANDIDATES, _pool, choose_tiles

    def choice(mask, causal=None, length=4096):
        plan = CallPlan.build(torch.empty(1, 8, length, 1), length, mask, causal, None)
        return choose_tiles(plan, lambda bq, bk: plan.tile_fns(bq, bk).plan)

    assert choice(None) == BATCH_TILES
    assert choice(masks.sliding_window(256)) == TILE_CANDIDATES[0]  # narrow: small tiles
    assert choice(masks.sliding_window(2048)) != TILE_CANDIDATES[0]
    # pooling a fine plan is exact
    plan = CallPlan.build(torch.empty(2, 1, 1000, 1), 1000,
                          masks.sliding_window(100) & _four_documents(
                              Case("p", 2, 1, 1, 1000, 1000, 1, 1)), None, None)
    fine = plan.tile_plan(64, 64)
    for fq, fk in [(2, 2), (2, 4), (4, 4)]:
        assert torch.equal(_pool(fine, fq, fk), plan.tile_plan(64 * fq, 64 * fk))


@pytest.mark.parametrize("name", ["window&documents", "documents&causal", "or-not",
                                  "lambda&window"])
def test_block_map_refines_only_uncertain_tiles_to_the_exact_answer(name):
    """The closed forms plus refinement of doubtful tiles equal evaluating every tile."""
    from attnkit.functional.masks.block_map import _evaluate_tiles

    case = Case("bm", 2, 2, 2, 200, 170, 1, 1)
    docs = _four_documents(case)
    mods = {
        "window&documents": masks.sliding_window(30) & docs,
        "documents&causal": docs & masks.causal(),
        "or-not": masks.or_masks(masks.sliding_window(9, causal=False),
                                 masks.not_mask(docs)) & masks.causal(),
        "lambda&window": masks.sliding_window(40) & (lambda b, h, q, kv: (q + kv) % 5 != 0),
    }
    mod = mods[name]
    for block in (8, 16, 24):
        got = masks.block_map(mod, 2, 2, 200, 170, block_q=block, block_k=block).kinds
        want = _evaluate_tiles(mod, 2, 2, 200, 170, block, block, None)
        assert torch.equal(got.expand_as(want), want), block
