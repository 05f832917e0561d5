"""PositionalAttention: the table and factorized scores, content combination, stepping
with the position in the state, masks, dtypes."""

from __future__ import annotations

import math

import pytest
import torch

from attnkit.functional.normalizers import masked_softmax
from attnkit.nn.seq2seq.base import Seq2SeqAttention
from attnkit.nn.seq2seq.location_sensitive import LocationSensitiveAttention
from attnkit.nn.seq2seq.positional_attention import PositionalAttention


class DotContent(Seq2SeqAttention):
    """Test-only stateless content mechanism: weights = masked_softmax(q k^T)."""

    def forward(self, query, keys, values=None, *, mask=None, state=None):
        values, mask = self._check_inputs(query, keys, values, mask)
        weights = masked_softmax(query @ keys.transpose(1, 2), mask)
        return weights @ values, weights, {} if state is None else state


def test_table_weights_hand_computed_and_content_free():
    attn = PositionalAttention(3, 4)
    with torch.no_grad():
        attn.table.copy_(torch.tensor([[0.0, math.log(3.0), 0.0, 5.0],
                                       [1.0, 1.0, 1.0, 1.0],
                                       [2.0, 0.0, 0.0, 0.0]]))
    values = torch.tensor([[[1.0], [2.0], [3.0]]])
    ctx, w, state = attn(torch.randn(1, 2, 7), torch.randn(1, 3, 2), values)
    # Lk = 3 uses the first three columns: row 0 -> (1, 3, 1) / 5, row 1 -> uniform.
    expected = torch.tensor([[[0.2, 0.6, 0.2], [1 / 3, 1 / 3, 1 / 3]]])
    torch.testing.assert_close(w, expected)
    torch.testing.assert_close(ctx, torch.tensor([[[2.0], [2.0]]]))
    assert int(state["position"]) == 2
    # Only positions matter: other queries and keys give the same weights.
    _, w_other, _ = attn(torch.randn(1, 2, 7), torch.randn(1, 3, 2), values)
    torch.testing.assert_close(w_other, w, rtol=0, atol=0)


def test_factorized_scores():
    attn = PositionalAttention(5, 6, rank=3).double()
    with torch.no_grad():
        attn.key_pos.normal_()
    _, w, _ = attn(torch.randn(2, 4, 1, dtype=torch.float64),
                   torch.randn(2, 6, 2, dtype=torch.float64))
    scores = attn.query_pos[:4] @ attn.key_pos.T / math.sqrt(3)
    torch.testing.assert_close(w, torch.softmax(scores, -1).expand(2, 4, 6), rtol=0, atol=1e-14)


@pytest.mark.parametrize("rank", [None, 2])
def test_starts_uniform(rank):
    _, w, _ = PositionalAttention(4, 8, rank=rank)(torch.randn(2, 4, 3), torch.randn(2, 5, 3))
    torch.testing.assert_close(w, torch.full((2, 4, 5), 0.2))


def test_content_combination_adds_logits():
    attn = PositionalAttention(6, 9, content=DotContent()).double()
    with torch.no_grad():
        attn.table.normal_()
    q, k = torch.randn(2, 4, 3, dtype=torch.float64), torch.randn(2, 7, 3, dtype=torch.float64)
    mask = torch.rand(2, 4, 7) > 0.3
    mask[0, 1] = False  # a fully masked row
    _, w, _ = attn(q, k, mask=mask)
    expected = masked_softmax(q @ k.transpose(1, 2) + attn.table[:4, :7], mask)
    torch.testing.assert_close(w, expected, rtol=0, atol=1e-14)
    assert (w[0, 1] == 0).all()


def test_gradcheck_content_combination_float64():
    attn = PositionalAttention(4, 5, rank=2, content=DotContent()).double()
    with torch.no_grad():
        attn.key_pos.normal_()
    q = torch.randn(2, 3, 3, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(2, 3, 5) > 0.4
    mask[1, 2] = False

    def run(q, k):
        ctx, w, _ = attn(q, k, mask=mask)
        return ctx, w

    assert torch.autograd.gradcheck(run, (q, k), fast_mode=True)


@pytest.mark.parametrize("content", [False, True])
def test_one_call_equals_stepping(content):
    B, Lq, Lk = 2, 5, 7
    inner = LocationSensitiveAttention(3, 4, 6, num_filters=2, kernel_size=3) if content else None
    attn = PositionalAttention(8, 7, content=inner).double()
    with torch.no_grad():
        attn.table.normal_()
    q, k = torch.randn(B, Lq, 3, dtype=torch.float64), torch.randn(B, Lk, 4, dtype=torch.float64)
    mask = torch.rand(B, Lk) > 0.3
    ctx, w, final = attn(q, k, mask=mask)
    state = attn.init_state(k, mask=mask)
    assert int(state["position"]) == 0
    assert content == ("content.keys_proj" in state)
    for i in range(Lq):
        ctx_i, w_i, state = attn(q[:, i:i + 1], k, mask=mask, state=state)
        torch.testing.assert_close(w_i[:, 0], w[:, i], rtol=0, atol=1e-14)
        torch.testing.assert_close(ctx_i[:, 0], ctx[:, i], rtol=0, atol=1e-14)
    assert set(state) == set(final)
    for name in state:
        torch.testing.assert_close(state[name], final[name], rtol=0, atol=1e-14)


@pytest.mark.parametrize("content", [False, True])
def test_masks_and_fully_masked_rows(content):
    attn = PositionalAttention(5, 6, content=DotContent() if content else None)
    with torch.no_grad():
        attn.table.normal_()
    q = torch.randn(3, 4, 2, requires_grad=True)
    k = torch.randn(3, 6, 2, requires_grad=True)
    mask = torch.arange(6)[None, :] < torch.tensor([6, 3, 0])[:, None]  # batch 2: empty
    ctx, w, _ = attn(q, k, mask=mask)
    assert (w.masked_select(~mask[:, None]) == 0).all()
    torch.testing.assert_close(w[:2].sum(-1), torch.ones(2, 4))
    assert (w[2] == 0).all() and (ctx[2] == 0).all()
    (ctx.square().sum() + w.sum()).backward()
    grads = [k.grad, attn.table.grad] + ([q.grad] if content else [])
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("rank", [None, 3])
def test_low_precision_runs(dtype, rank):
    attn = PositionalAttention(5, 6, rank=rank)
    with torch.no_grad():
        for p in attn.parameters():
            p.normal_()
    q, k = torch.randn(2, 4, 3), torch.randn(2, 6, 3)
    golden_ctx, golden_w, _ = attn.double()(q.double(), k.double())
    ctx, w, _ = attn.to(dtype)(q.to(dtype), k.to(dtype))
    assert ctx.dtype == dtype and w.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 5e-2
    torch.testing.assert_close(w.double(), golden_w, rtol=0, atol=tol)
    torch.testing.assert_close(ctx.double(), golden_ctx, rtol=0, atol=tol * 4)


@pytest.mark.parametrize("kwargs, error, argument", [
    (dict(max_query_len=0), ValueError, "max_query_len"),
    (dict(max_key_len=-1), ValueError, "max_key_len"),
    (dict(rank=0), ValueError, "rank"),
    (dict(content=torch.nn.Linear(2, 2)), TypeError, "content"),
])
def test_bad_constructor_arguments_are_named(kwargs, error, argument):
    base = dict(max_query_len=4, max_key_len=6)
    base.update(kwargs)
    with pytest.raises(error, match=argument):
        PositionalAttention(**base)


def test_bad_inputs_are_named():
    attn = PositionalAttention(4, 6)
    k = torch.randn(2, 5, 3)
    with pytest.raises(ValueError, match="max_key_len"):
        attn(torch.randn(2, 1, 3), torch.randn(2, 7, 3))
    with pytest.raises(ValueError, match="max_query_len"):
        attn(torch.randn(2, 5, 3), k)
    _, _, state = attn(torch.randn(2, 3, 3), k)
    with pytest.raises(ValueError, match="state position 3"):
        attn(torch.randn(2, 2, 3), k, state=state)
    with pytest.raises(ValueError, match="mask"):
        attn(torch.randn(2, 1, 3), k, mask=torch.ones(2, 6, dtype=torch.bool))
