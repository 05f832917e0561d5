"""MemN2N: shapes, padded memories get exactly zero attention and do not change the answer,
adjacent weight tying, temporal indices, linear start, random-noise insertion, bad input."""

from __future__ import annotations

import pytest
import torch

from attnkit.models.memn2n import (
    MemN2N,
    MemN2NConfig,
    insert_empty_memories,
    memory_hop,
    time_indices,
)

V, D = 17, 8


def _model(**fields) -> MemN2N:
    torch.manual_seed(0)
    return MemN2N(MemN2NConfig(vocab_size=V, embed_dim=D, memory_size=10,
                               **{"hops": 3, **fields})).eval()


def _batch():
    torch.manual_seed(1)
    stories = torch.randint(1, V, (3, 6, 5))  # (B, M, J)
    stories[:, :, 4] = 0
    queries = torch.randint(1, V, (3, 4))
    lengths = torch.tensor([6, 3, 1])
    mask = torch.arange(6)[None, :] < lengths[:, None]
    return stories * mask[..., None], queries, mask


@pytest.mark.parametrize("encoding", ["pe", "bow"])
@pytest.mark.parametrize("hops", [1, 3])
def test_shapes_and_weights_sum_to_one_over_real_sentences(encoding, hops):
    model = _model(encoding=encoding, hops=hops)
    stories, queries, mask = _batch()
    logits, weights = model(stories, queries, mask)
    assert logits.shape == (3, V) and len(weights) == hops
    for w in weights:
        assert w.shape == (3, 6)
        assert torch.all(w[~mask] == 0)
        torch.testing.assert_close(w.sum(-1), torch.ones(3))


def test_padded_slots_change_nothing():
    model = _model()
    stories, queries, mask = _batch()
    logits, weights = model(stories, queries, mask)
    # garbage in the padded slots, and extra padded slots, leave the output unchanged
    noisy = stories.clone()
    noisy[~mask] = 3
    wider = torch.cat([noisy, torch.full((3, 2, 5), 7)], dim=1)
    wide_mask = torch.cat([mask, torch.zeros(3, 2, dtype=torch.bool)], dim=1)
    logits2, weights2 = model(wider, queries, wide_mask)
    torch.testing.assert_close(logits2, logits)
    for w, w2 in zip(weights, weights2, strict=True):
        torch.testing.assert_close(w2[:, :6], w)
        assert torch.all(w2[:, 6:] == 0)


def test_one_hop_equals_the_paper_equations_written_out():
    model = _model(hops=1, temporal=False, encoding="bow")
    stories, queries, mask = _batch()
    logits, weights = model(stories, queries, mask)
    a, c = model.embeddings[0].weight, model.embeddings[1].weight  # A = B = E_0, C = W^T = E_1
    m = a[stories].sum(-2)  # (B, M, d)
    cm = c[stories].sum(-2)
    u = a[queries].sum(-2)  # (B, d)
    scores = torch.einsum("bd,bmd->bm", u, m).masked_fill(~mask, float("-inf"))
    p = torch.softmax(scores, -1)
    o = torch.einsum("bm,bmd->bd", p, cm)
    torch.testing.assert_close(weights[0], p)
    torch.testing.assert_close(logits, (u + o) @ c.T)
    assert len(_model(hops=3).embeddings) == 4 and len(_model(hops=3).temporal) == 4


def test_temporal_encoding_is_added_to_both_input_and_output_memories():
    """Sukhbaatar et al. (2015), section 4.1: ``m_i = sum_j A x_ij + T_A(i)`` and
    ``c_i = sum_j C x_ij + T_C(i)``, with the index counting back from the latest sentence."""
    model = _model(hops=1, temporal=True, encoding="bow")
    stories, queries, mask = _batch()
    logits, weights = model(stories, queries, mask)
    a, c = model.embeddings[0].weight, model.embeddings[1].weight
    t_a, t_c = model.temporal[0], model.temporal[1]
    when = time_indices(mask)  # (B, M): 0 = the latest real sentence
    assert when[0].tolist() == [5, 4, 3, 2, 1, 0] and when[1, :3].tolist() == [2, 1, 0]
    m = a[stories].sum(-2) + t_a[when]  # (B, M, d)
    cm = c[stories].sum(-2) + t_c[when]
    u = a[queries].sum(-2)
    p = torch.softmax(torch.einsum("bd,bmd->bm", u, m).masked_fill(~mask, float("-inf")), -1)
    torch.testing.assert_close(weights[0], p)
    torch.testing.assert_close(logits, (u + torch.einsum("bm,bmd->bd", p, cm)) @ c.T)


def test_memory_hop_linear_start_and_empty_rows():
    u = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    keys = torch.tensor([[[2.0, 0.0], [1.0, 0.0]], [[0.0, 3.0], [0.0, 1.0]]])
    values = torch.tensor([[[1.0, 1.0], [2.0, 2.0]], [[5.0, 5.0], [6.0, 6.0]]])
    mask = torch.tensor([[True, True], [False, False]])
    o, p = memory_hop(u, keys, values, mask)
    torch.testing.assert_close(p[0], torch.softmax(torch.tensor([2.0, 1.0]), -1))
    assert torch.all(p[1] == 0) and torch.all(o[1] == 0)
    o, p = memory_hop(u, keys, values, mask, linear=True)
    torch.testing.assert_close(p, torch.tensor([[2.0, 1.0], [0.0, 0.0]]))
    torch.testing.assert_close(o[0], torch.tensor([4.0, 4.0]))


def test_time_indices_count_back_from_the_latest_sentence():
    mask = torch.tensor([[True, True, True], [True, False, False]])
    assert time_indices(mask).tolist() == [[2, 1, 0], [0, 0, 0]]


def test_empty_memories_keep_sentence_order_and_the_latest_sentences():
    stories = torch.arange(1, 7)[None, :, None].repeat(2, 1, 2)  # sentences 1..6
    lengths = torch.tensor([6, 4])
    gen = torch.Generator().manual_seed(0)
    out, total = insert_empty_memories(stories, lengths, 0.5, memory_size=7, generator=gen)
    for row in range(2):
        real = [int(v) for v in out[row, :total[row], 0] if v != 0]
        n = int(lengths[row])
        assert real == list(range(1, n + 1))[-len(real):]
        assert len(real) == min(n, int(total[row]))
        assert torch.all(out[row, total[row]:] == 0)
    assert int(total.max()) <= 7


def test_bad_input_names_the_argument():
    model = _model()
    stories, queries, mask = _batch()
    with pytest.raises(ValueError, match="mask"):
        model(stories, queries, mask.long())
    with pytest.raises(ValueError, match="stories"):
        model(stories[0], queries, mask)
    with pytest.raises(ValueError, match="memory_size"):
        model(torch.ones(3, 11, 5, dtype=torch.long), queries, torch.ones(3, 11, dtype=bool))
    with pytest.raises(ValueError, match="encoding"):
        MemN2NConfig(vocab_size=V, encoding="lstm")


def test_gradients_are_finite_and_the_padding_row_gets_none():
    model = _model()
    model.train()
    stories, queries, mask = _batch()
    logits, _ = model(stories, queries, mask)
    logits.logsumexp(-1).sum().backward()
    for table in model.embeddings:
        assert torch.isfinite(table.weight.grad).all()
    for table in model.embeddings[:-1]:  # the last table is also the answer matrix W
        assert torch.all(table.weight.grad[0] == 0)


@pytest.mark.parametrize("encoding", ["pe", "bow"])
def test_fused_sentence_encoding_matches_the_written_out_formula(encoding):
    """encode_tables (two embedding_bag sums) equals the per-word PE formula, values and
    gradients, with padding words and an all-padding sentence."""
    model = _model(hops=2, temporal=True, encoding=encoding)
    words = torch.randint(1, model.config.vocab_size, (3, 4, 7))
    words[0, 1, 3:] = 0
    words[1, 2] = 0  # an empty (noise) memory
    words[2, 0, 1:] = 0
    fused = model.encode_tables(words, 3)  # (3, 4, 3, d)
    oracle = torch.stack([model.encode_reference(words, k) for k in range(3)], dim=-2)
    torch.testing.assert_close(fused, oracle, rtol=1e-5, atol=1e-6)
    assert fused[1, 2].abs().max() == 0
    grad = torch.randn_like(fused)
    got = torch.autograd.grad((fused * grad).sum(), [e.weight for e in model.embeddings])
    want = torch.autograd.grad((oracle * grad).sum(), [e.weight for e in model.embeddings])
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)
