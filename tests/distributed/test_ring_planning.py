"""Planning a ring pass: the closed-form skip of empty (query part, key piece) pairs.

Without it every piece of a shard met every query part in Python (quadratic in the shard);
the skip must change nothing but the time: the same blocks, in the same order."""

import pytest
import torch

from attnkit import masks
from attnkit.distributed import local_masks, ring, ring_schedule

MASKS = {
    "window": lambda L: masks.sliding_window(5),
    "two-sided window": lambda L: masks.sliding_window(3, causal=False),
    "padding & window": lambda L: (masks.key_padding(torch.tensor([L - 7]))
                                   & masks.sliding_window(6)),
    "not window": lambda L: ~masks.sliding_window(9),
    "window | padding": lambda L: masks.sliding_window(2) | masks.key_padding(torch.tensor([3])),
    "documents": lambda L: masks.document(torch.arange(L)[None] // 11),
}


def _describe(schedule):
    return [[(b.step, b.piece, b.source, b.q_start, b.q_len, b.kv_start, b.kv_len, b.logits)
             for b in blocks] for blocks in schedule]


@pytest.mark.parametrize("name", list(MASKS))
@pytest.mark.parametrize("layout", ["zigzag", "contiguous"])
@pytest.mark.parametrize("causal", [False, True])
def test_skipping_empty_pairs_leaves_the_schedule_unchanged(monkeypatch, name, layout, causal):
    L, W = 96, 3
    mask = MASKS[name](L)
    kwargs = dict(causal=causal, mask=mask, block_q=4, block_k=4, chunk=4, part=8)
    fast = [_describe(ring_schedule(L, W, r, layout, **kwargs)) for r in range(W)]
    calls = []
    monkeypatch.setattr(ring, "empty_pairs", lambda *args, **kw: calls.append(1))
    slow = [_describe(ring_schedule(L, W, r, layout, **kwargs)) for r in range(W)]
    assert calls and fast == slow  # the plan without the skip really ran
    assert any(blocks for rank in fast for blocks in rank)


def test_empty_pairs_marks_only_rectangles_without_an_allowed_position():
    L = 64
    mask = masks.key_padding(torch.tensor([50])) & masks.sliding_window(6)
    runs = [(g, g, 8) for g in range(0, L, 8)]
    empty = local_masks.empty_pairs(mask, runs, runs)
    dense = masks.materialize(mask, 1, 1, L, L)[0, 0]
    assert empty.shape == (8, 8)
    for i, (qg, _, qn) in enumerate(runs):
        for j, (kg, _, kn) in enumerate(runs):
            allowed = bool(dense[qg:qg + qn, kg:kg + kn].any())
            assert not (empty[i, j] and allowed)
    assert int(empty.sum()) >= 40  # most of a narrow band's rectangles are skipped
    # positions-dependent masks (documents) are left to the per-pair plan
    assert local_masks.empty_pairs(masks.document(torch.zeros(1, L, dtype=torch.long)),
                                   runs, runs) is None
