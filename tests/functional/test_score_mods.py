"""Score modifiers (``attnkit.score_mods``): ALiBi, softcap, relative bias.

Expected values are written out by hand or computed with plain Python loops.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import attnkit
from attnkit import masks, score_mods
from attnkit.functional.masks import index_grids


def apply(score_mod, score: torch.Tensor) -> torch.Tensor:
    """Call ``score_mod`` on a ``(B, H, Lq, Lk)`` score with the standard index grids."""
    return score_mod(score, *index_grids(*score.shape))


# ---------------------------------------------------------------------------
# alibi_slopes


def test_alibi_slopes_power_of_two():
    slopes = score_mods.alibi_slopes(8)
    assert slopes.dtype == torch.float32
    assert slopes.tolist() == [0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625, 0.0078125, 0.00390625]


@pytest.mark.parametrize(
    ("num_heads", "exponents"),
    [
        (1, [8]),
        (2, [4, 8]),
        (4, [2, 4, 6, 8]),
        # Not a power of two (Press et al. 2021, appendix): the slopes of the
        # nearest lower power of two (4: 2^-2, 2^-4, 2^-6, 2^-8), then every other
        # slope of the next power of two (8: 2^-1, 2^-3, ...) until n are filled.
        (6, [2, 4, 6, 8, 1, 3]),
        (5, [2, 4, 6, 8, 1]),
        # 12: the eight slopes 2^-1..2^-8, then from 16 heads (2^-0.5, 2^-1, 2^-1.5,
        # ...) every other one: 2^-0.5, 2^-1.5, 2^-2.5, 2^-3.5.
        (12, [1, 2, 3, 4, 5, 6, 7, 8, 0.5, 1.5, 2.5, 3.5]),
    ],
    ids=["1-head", "2-heads", "4-heads", "6-heads", "5-heads", "12-heads"],
)
def test_alibi_slopes_follow_the_paper(num_heads, exponents):
    expected = torch.tensor([2.0 ** -e for e in exponents], dtype=torch.float32)
    got = score_mods.alibi_slopes(num_heads)
    assert got.shape == (num_heads,)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=0.0)


@pytest.mark.parametrize("num_heads", [0, -4, 2.0, True, "8"],
                         ids=["zero", "negative", "float", "bool", "string"])
def test_alibi_slopes_bad_num_heads(num_heads):
    with pytest.raises((TypeError, ValueError), match="num_heads must be"):
        score_mods.alibi_slopes(num_heads)


# ---------------------------------------------------------------------------
# alibi


def test_alibi_bias_values_by_hand():
    score = torch.zeros(1, 2, 3, 3)
    got = apply(score_mods.alibi(torch.tensor([0.5, 0.25])), score)
    # bias[h, i, j] = slope[h] * (j - i)
    assert got[0, 0].tolist() == [[0.0, 0.5, 1.0], [-0.5, 0.0, 0.5], [-1.0, -0.5, 0.0]]
    assert got[0, 1].tolist() == [[0.0, 0.25, 0.5], [-0.25, 0.0, 0.25], [-0.5, -0.25, 0.0]]


def test_alibi_adds_to_the_score():
    score = torch.randn(2, 2, 3, 4)
    mod = score_mods.alibi(torch.tensor([0.5, 0.25]))
    torch.testing.assert_close(apply(mod, score) - apply(mod, torch.zeros_like(score)), score)


def test_alibi_symmetric_by_hand():
    got = apply(score_mods.alibi(torch.tensor([1.0]), symmetric=True), torch.zeros(1, 1, 3, 4))
    assert got[0, 0].tolist() == [
        [0.0, -1.0, -2.0, -3.0],
        [-1.0, 0.0, -1.0, -2.0],
        [-2.0, -1.0, 0.0, -1.0],
    ]


def test_alibi_q_offset_by_hand():
    # One decoding query at absolute position 3 against 4 cached keys.
    got = apply(score_mods.alibi(torch.tensor([0.5, 2.0]), q_offset=3), torch.zeros(1, 2, 1, 4))
    assert got[0, 0, 0].tolist() == [-1.5, -1.0, -0.5, 0.0]
    assert got[0, 1, 0].tolist() == [-6.0, -4.0, -2.0, 0.0]


def test_alibi_keeps_score_dtype():
    mod = score_mods.alibi(score_mods.alibi_slopes(2))
    assert apply(mod, torch.zeros(1, 2, 2, 2, dtype=torch.float64)).dtype == torch.float64


def test_alibi_through_attention_matches_explicit_bias():
    torch.manual_seed(1)
    B, H, L, D = 2, 4, 6, 5
    q, k, v = (torch.randn(B, H, L, D, dtype=torch.float64) for _ in range(3))
    slopes = score_mods.alibi_slopes(H).double()
    out, weights = attnkit.attention(q, k, v, causal=True, backend="reference",
                                     score_mod=score_mods.alibi(slopes), return_weights=True)

    pos = torch.arange(L)
    bias = slopes.view(H, 1, 1) * (pos.view(1, 1, L) - pos.view(1, L, 1))  # (H, Lq, Lk)
    logits = q @ k.transpose(-2, -1) / math.sqrt(D) + bias
    logits = logits.masked_fill(pos.view(1, L) > pos.view(L, 1), float("-inf"))
    expected = torch.softmax(logits, dim=-1)
    torch.testing.assert_close(weights, expected)
    torch.testing.assert_close(out, expected @ v)


def test_alibi_q_offset_decoding_step_equals_full_forward():
    torch.manual_seed(2)
    B, H, L, D = 1, 2, 7, 4
    q, k, v = (torch.randn(B, H, L, D, dtype=torch.float64) for _ in range(3))
    slopes = score_mods.alibi_slopes(H).double()
    full, _ = attnkit.attention(q, k, v, causal=True, backend="reference",
                                score_mod=score_mods.alibi(slopes))
    step, _ = attnkit.attention(q[:, :, -1:], k, v, causal="lower_right", backend="reference",
                                score_mod=score_mods.alibi(slopes, q_offset=L - 1))
    torch.testing.assert_close(step, full[:, :, -1:])


def test_alibi_uses_query_head_under_gqa():
    # 4 query heads share 2 key/value heads; the slope follows the query head.
    torch.manual_seed(3)
    q = torch.randn(1, 4, 3, 2, dtype=torch.float64)
    k = torch.randn(1, 2, 3, 2, dtype=torch.float64)
    slopes = torch.tensor([1.0, 0.5, 0.25, 0.125], dtype=torch.float64)
    _, weights = attnkit.attention(q, k, k, backend="reference", return_weights=True,
                                   score_mod=score_mods.alibi(slopes, symmetric=True))
    k_rep = k.repeat_interleave(2, dim=1)
    pos = torch.arange(3)
    bias = -slopes.view(4, 1, 1) * (pos.view(1, 3) - pos.view(3, 1)).abs()
    expected = torch.softmax(q @ k_rep.transpose(-2, -1) / math.sqrt(2) + bias, dim=-1)
    torch.testing.assert_close(weights, expected)


@pytest.mark.parametrize(
    "slopes",
    [[0.5, 0.25], torch.ones(2, 2), torch.tensor(0.5)],
    ids=["list", "two-dims", "scalar"],
)
def test_alibi_bad_slopes(slopes):
    with pytest.raises(ValueError, match=r"slopes must be a 1-D tensor \(H,\)"):
        score_mods.alibi(slopes)


def test_alibi_with_too_few_slopes():
    mod = score_mods.alibi(torch.tensor([0.5, 0.25]))
    with pytest.raises(ValueError, match="alibi holds 2 slopes but attention has 4 query heads"):
        apply(mod, torch.zeros(1, 4, 2, 2))


# ---------------------------------------------------------------------------
# softcap


@pytest.mark.parametrize("cap", [0.5, 5.0, 30.0], ids=["cap0.5", "cap5", "cap30"])
def test_softcap_bounds(cap):
    extremes = torch.tensor([1e30, -1e30]).expand(1, 1, 4, 2)
    score = torch.cat([torch.randn(1, 1, 4, 64) * 1e3, extremes], dim=-1)
    got = apply(score_mods.softcap(cap), score)
    assert torch.isfinite(got).all()
    assert (got.abs() <= cap).all()
    # Monotone: the order of the scores is kept.
    order = score.argsort(dim=-1)
    assert (got.gather(-1, order).diff(dim=-1) >= 0).all()


def test_softcap_values():
    cap = 4.0
    values = [0.0, 1.0, -1.0, 4.0, -8.0, 40.0, 1e-4]
    score = torch.tensor(values, dtype=torch.float64).view(1, 1, 1, -1)
    got = apply(score_mods.softcap(cap), score)
    expected = [cap * math.tanh(x / cap) for x in values]
    torch.testing.assert_close(got.flatten().tolist(), expected, rtol=1e-12, atol=0.0)
    # Small scores pass almost unchanged.
    assert got[0, 0, 0, -1].item() == pytest.approx(1e-4, rel=1e-8)


def test_softcap_int_cap_is_accepted():
    got = apply(score_mods.softcap(2), torch.tensor([[[[3.0]]]]))
    assert got.item() == pytest.approx(2 * math.tanh(1.5))


@pytest.mark.parametrize("cap", [0.0, -1.0, math.nan, True, "30", None],
                         ids=["zero", "negative", "nan", "bool", "string", "none"])
def test_softcap_bad_cap(cap):
    with pytest.raises((TypeError, ValueError), match="cap must be"):
        score_mods.softcap(cap)


def test_softcap_infinite_cap_is_rejected():
    # inf * tanh(score / inf) is inf * 0 = NaN for every score: an infinite cap must
    # be refused up front (or mean "no cap"), never turn the logits into NaN.
    with pytest.raises(ValueError, match="cap"):
        score_mods.softcap(math.inf)


# ---------------------------------------------------------------------------
# relative_bias


def test_relative_bias_indexing_and_clipping():
    heads, max_distance, L = 2, 2, 6
    # table[h, d + M] = 10 * h + (d + M): every entry is distinct.
    table = (10 * torch.arange(heads).view(heads, 1) + torch.arange(2 * max_distance + 1)).float()
    got = apply(score_mods.relative_bias(table), torch.zeros(1, heads, L, L))
    expected = torch.empty(1, heads, L, L)
    for h, i, j in itertools.product(range(heads), range(L), range(L)):
        distance = min(max(j - i, -max_distance), max_distance)
        expected[0, h, i, j] = table[h, distance + max_distance]
    assert torch.equal(got, expected)
    # A few entries by hand: head 1, query 0 sees key 5 at distance +5 -> clipped to +2.
    assert got[0, 1, 0, 5].item() == 14.0
    assert got[0, 1, 5, 0].item() == 10.0  # distance -5 -> -2
    assert got[0, 0, 3, 3].item() == 2.0  # distance 0


def test_relative_bias_rectangular_and_adds_to_score():
    table = torch.tensor([[-1.0, 0.0, 1.0]])  # M = 1
    score = torch.full((1, 1, 2, 4), 5.0)
    got = apply(score_mods.relative_bias(table), score)
    assert got[0, 0].tolist() == [[5.0, 6.0, 6.0, 6.0], [4.0, 5.0, 6.0, 6.0]]


def test_relative_bias_gradcheck_through_attention():
    torch.manual_seed(4)
    B, H, Lq, Lk, D = 1, 2, 4, 5, 3
    q = torch.randn(B, H, Lq, D, dtype=torch.float64)
    k = torch.randn(B, H, Lk, D, dtype=torch.float64)
    v = torch.randn(B, H, Lk, D, dtype=torch.float64)
    table = torch.randn(H, 7, dtype=torch.float64, requires_grad=True)  # M = 3: clipping used

    def run(table):
        out, _ = attnkit.attention(q, k, v, backend="reference",
                                   score_mod=score_mods.relative_bias(table))
        return out

    assert torch.autograd.gradcheck(run, (table,))


def test_relative_bias_gradient_reaches_only_used_entries():
    H, M, L = 2, 5, 3  # distances -2..2 occur; entries for |d| > 2 are unused
    q, k, v = (torch.randn(1, H, L, 4, dtype=torch.float64) for _ in range(3))
    table = torch.nn.Parameter(torch.zeros(H, 2 * M + 1, dtype=torch.float64))
    out, _ = attnkit.attention(q, k, v, backend="reference",
                               score_mod=score_mods.relative_bias(table))
    out.square().sum().backward()
    used = torch.zeros(2 * M + 1, dtype=torch.bool)
    used[M - 2:M + 3] = True
    assert (table.grad[:, ~used] == 0).all()
    assert (table.grad[:, used] != 0).all()


@pytest.mark.parametrize(
    ("table", "error", "match"),
    [
        (torch.zeros(5), ValueError, "table must be a 2-D tensor"),
        (torch.zeros(2, 4), ValueError, "odd second dimension"),
        (torch.zeros(1, 2, 3), ValueError, "table must be a 2-D tensor"),
        ([[0.0, 1.0, 2.0]], ValueError, "table must be a 2-D tensor"),
        (torch.zeros(2, 3, dtype=torch.long), TypeError, "floating-point"),
    ],
    ids=["one-dim", "even-width", "three-dims", "list", "integer"],
)
def test_relative_bias_bad_table(table, error, match):
    with pytest.raises(error, match=match):
        score_mods.relative_bias(table)


def test_relative_bias_with_too_few_heads():
    mod = score_mods.relative_bias(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="table has 2 heads but attention has 3 query heads"):
        apply(mod, torch.zeros(1, 3, 2, 2))


# ---------------------------------------------------------------------------
# composition with masks


def test_score_mod_is_applied_before_the_mask():
    # A huge bias on masked keys must not leak through: masked stays masked.
    q, k, v = (torch.randn(1, 1, 4, 3, dtype=torch.float64) for _ in range(3))
    table = torch.tensor([[0.0, 0.0, 0.0, 1e6, 1e6, 1e6, 1e6]], dtype=torch.float64)  # future
    _, weights = attnkit.attention(q, k, v, mask=masks.causal(), backend="reference",
                                   score_mod=score_mods.relative_bias(table),
                                   return_weights=True)
    assert (weights[0, 0].triu(diagonal=1) == 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(1, 1, 4, dtype=torch.float64))
