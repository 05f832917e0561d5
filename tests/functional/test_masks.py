"""Structured masks (``attnkit.masks``): constructors, combinators, materialize, block_map.

Expected masks are either drawn by hand as 0/1 matrices (1 = may attend) or
computed by a brute-force Python double loop over scalar indices, never by the
code under test.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnkit import masks

# ---------------------------------------------------------------------------
# helpers


def drawn(picture: str) -> torch.Tensor:
    """A 0/1 picture (one row per line, space-separated) as a bool ``(Lq, Lk)`` tensor."""
    rows = [line.split() for line in picture.strip().splitlines()]
    return torch.tensor([[cell == "1" for cell in row] for row in rows])


def brute_force(allowed, batch: int, heads: int, q_len: int, kv_len: int) -> torch.Tensor:
    """``(B, H, Lq, Lk)`` bool tensor from a scalar predicate ``allowed(b, h, i, j)``."""
    out = torch.zeros(batch, heads, q_len, kv_len, dtype=torch.bool)
    for b, h, i, j in itertools.product(range(batch), range(heads), range(q_len), range(kv_len)):
        out[b, h, i, j] = bool(allowed(b, h, i, j))
    return out


def dense(mask_mod, batch: int = 1, heads: int = 1, q_len: int = 4, kv_len: int = 4):
    """Materialize and expand to the full ``(B, H, Lq, Lk)`` for value comparisons."""
    return masks.materialize(mask_mod, batch, heads, q_len, kv_len).expand(
        batch, heads, q_len, kv_len)


# ---------------------------------------------------------------------------
# causal


CAUSAL_PICTURES = {
    # (alignment, Lq, Lk): picture
    ("upper_left", 4, 4): """
        1 0 0 0
        1 1 0 0
        1 1 1 0
        1 1 1 1""",
    ("lower_right", 4, 4): """
        1 0 0 0
        1 1 0 0
        1 1 1 0
        1 1 1 1""",
    ("upper_left", 2, 5): """
        1 0 0 0 0
        1 1 0 0 0""",
    ("lower_right", 2, 5): """
        1 1 1 1 0
        1 1 1 1 1""",
    ("upper_left", 5, 2): """
        1 0
        1 1
        1 1
        1 1
        1 1""",
    # Lq > Lk lower-right: the first Lq - Lk rows see nothing.
    ("lower_right", 5, 2): """
        0 0
        0 0
        0 0
        1 0
        1 1""",
    ("lower_right", 1, 4): """
        1 1 1 1""",
}


@pytest.mark.parametrize(
    ("alignment", "q_len", "kv_len"), list(CAUSAL_PICTURES),
    ids=[f"{a}-{q}x{k}" for a, q, k in CAUSAL_PICTURES])
def test_causal_matches_drawn_matrix(alignment, q_len, kv_len):
    mask_mod = masks.causal(alignment, q_len=q_len, kv_len=kv_len)
    got = masks.materialize(mask_mod, 3, 2, q_len, kv_len)
    assert got.dtype == torch.bool
    assert got.shape == (1, 1, q_len, kv_len)  # causal ignores b and h
    assert torch.equal(got[0, 0], drawn(CAUSAL_PICTURES[alignment, q_len, kv_len]))


def test_causal_upper_left_needs_no_lengths():
    assert torch.equal(dense(masks.causal(), q_len=3, kv_len=3)[0, 0], drawn("""
        1 0 0
        1 1 0
        1 1 1"""))


# ---------------------------------------------------------------------------
# sliding window

SLIDING_CASES = [
    # (size, causal, alignment, Lq, Lk)
    (1, True, "upper_left", 6, 6),
    (2, True, "upper_left", 6, 6),
    (3, True, "upper_left", 5, 9),
    (3, False, "upper_left", 7, 7),
    (2, False, "upper_left", 4, 9),
    (3, True, "lower_right", 4, 9),
    (3, True, "lower_right", 9, 4),
    (2, False, "lower_right", 3, 8),
    (50, True, "upper_left", 7, 7),
]


@pytest.mark.parametrize(
    ("size", "is_causal", "alignment", "q_len", "kv_len"), SLIDING_CASES,
    ids=[f"size{s}-{'causal' if c else 'bidir'}-{a}-{q}x{k}" for s, c, a, q, k in SLIDING_CASES])
def test_sliding_window_brute_force(size, is_causal, alignment, q_len, kv_len):
    offset = kv_len - q_len if alignment == "lower_right" else 0

    def allowed(b, h, i, j):
        centre = i + offset
        if is_causal:
            return centre - size < j <= centre
        return abs(centre - j) < size

    mask_mod = masks.sliding_window(size, is_causal, alignment=alignment,
                                    q_len=q_len, kv_len=kv_len)
    got = masks.materialize(mask_mod, 2, 2, q_len, kv_len)
    assert got.shape == (1, 1, q_len, kv_len)
    assert torch.equal(got.expand(2, 2, q_len, kv_len),
                       brute_force(allowed, 2, 2, q_len, kv_len))


def test_sliding_window_drawn_examples():
    assert torch.equal(dense(masks.sliding_window(2))[0, 0], drawn("""
        1 0 0 0
        1 1 0 0
        0 1 1 0
        0 0 1 1"""))
    assert torch.equal(dense(masks.sliding_window(2, causal=False))[0, 0], drawn("""
        1 1 0 0
        1 1 1 0
        0 1 1 1
        0 0 1 1"""))
    lower_right = masks.sliding_window(2, alignment="lower_right", q_len=2, kv_len=5)
    assert torch.equal(dense(lower_right, q_len=2, kv_len=5)[0, 0], drawn("""
        0 0 1 1 0
        0 0 0 1 1"""))


def test_sliding_window_of_size_one_is_the_diagonal():
    assert torch.equal(dense(masks.sliding_window(1), q_len=5, kv_len=5)[0, 0],
                       torch.eye(5, dtype=torch.bool))


# ---------------------------------------------------------------------------
# key padding


def test_key_padding_drawn():
    got = masks.materialize(masks.key_padding(torch.tensor([3, 0, 5])), 3, 2, 2, 5)
    assert got.shape == (3, 1, 2, 5)  # depends on b, not on h
    expected = torch.stack([
        drawn("""
            1 1 1 0 0
            1 1 1 0 0"""),
        drawn("""
            0 0 0 0 0
            0 0 0 0 0"""),  # zero length: every row empty
        drawn("""
            1 1 1 1 1
            1 1 1 1 1"""),
    ])[:, None]
    assert torch.equal(got, expected)


@pytest.mark.parametrize("lengths", [[0], [1, 7, 4], [9, 2]],
                         ids=["zero", "three-rows", "over-length"])
def test_key_padding_brute_force(lengths):
    batch, q_len, kv_len = len(lengths), 3, 7
    got = masks.materialize(masks.key_padding(torch.tensor(lengths)), batch, 2, q_len, kv_len)
    expected = brute_force(lambda b, h, i, j: j < lengths[b], batch, 2, q_len, kv_len)
    assert torch.equal(got.expand(batch, 2, q_len, kv_len), expected)


def test_key_padding_accepts_int32_and_lists():
    a = dense(masks.key_padding(torch.tensor([2, 3], dtype=torch.int32)), batch=2)
    b = dense(masks.key_padding([2, 3]), batch=2)
    assert torch.equal(a, b)
    assert a[0, 0, 0].tolist() == [True, True, False, False]


# ---------------------------------------------------------------------------
# document


def test_document_shared_ids_drawn():
    ids = torch.tensor([0, 0, 1, 1, 1, 2])
    got = dense(masks.document(ids), batch=2, heads=2, q_len=6, kv_len=6)
    expected = drawn("""
        1 1 0 0 0 0
        1 1 0 0 0 0
        0 0 1 1 1 0
        0 0 1 1 1 0
        0 0 1 1 1 0
        0 0 0 0 0 1""")
    assert torch.equal(got[0, 0], expected)
    assert torch.equal(got[1, 1], expected)  # (L,) ids serve every batch row


def test_document_per_batch_ids_brute_force():
    ids = torch.tensor([[0, 0, 0, 1, 1], [0, 1, 2, 2, 2]])
    got = masks.materialize(masks.document(ids), 2, 3, 5, 5)
    assert got.shape == (2, 1, 5, 5)
    expected = brute_force(lambda b, h, i, j: ids[b, i] == ids[b, j], 2, 3, 5, 5)
    assert torch.equal(got.expand(2, 3, 5, 5), expected)


@pytest.mark.parametrize(
    ("q_ids", "kv_ids"),
    [
        ([0, 1, 1], [0, 0, 1, 1, 1, 2]),
        ([[0, 1, 1], [1, 1, 2]], [[0, 0, 1, 1, 1, 2], [1, 2, 2, 2, 3, 3]]),
        ([0, 1, 1], [[0, 0, 1, 1, 1, 2], [1, 1, 1, 0, 0, 0]]),
        ([[0, 1, 1], [2, 2, 0]], [0, 0, 1, 2, 2, 0]),
    ],
    ids=["both-1d", "both-2d", "1d-q-2d-kv", "2d-q-1d-kv"],
)
def test_document_with_separate_kv_ids(q_ids, kv_ids):
    q_t, kv_t = torch.tensor(q_ids), torch.tensor(kv_ids)
    q_rows = q_t if q_t.dim() == 2 else q_t.expand(2, -1)
    kv_rows = kv_t if kv_t.dim() == 2 else kv_t.expand(2, -1)
    got = dense(masks.document(q_t, kv_t), batch=2, heads=1, q_len=3, kv_len=6)
    expected = brute_force(lambda b, h, i, j: q_rows[b, i] == kv_rows[b, j], 2, 1, 3, 6)
    assert torch.equal(got, expected)


def test_document_and_causal_for_packed_language_modelling():
    ids = torch.tensor([0, 0, 1, 1])
    got = dense(masks.document(ids) & masks.causal())
    assert torch.equal(got[0, 0], drawn("""
        1 0 0 0
        1 1 0 0
        0 0 1 0
        0 0 1 1"""))


# ---------------------------------------------------------------------------
# prefix LM


def test_prefix_lm_int_drawn():
    assert torch.equal(dense(masks.prefix_lm(2))[0, 0], drawn("""
        1 1 0 0
        1 1 0 0
        1 1 1 0
        1 1 1 1"""))
    # prefix 0 is plain causal
    assert torch.equal(dense(masks.prefix_lm(0), q_len=5, kv_len=5),
                       dense(masks.causal(), q_len=5, kv_len=5))


def test_prefix_lm_per_batch_tensor_brute_force():
    prefix = torch.tensor([0, 3, 6])
    got = masks.materialize(masks.prefix_lm(prefix), 3, 2, 5, 5)
    assert got.shape == (3, 1, 5, 5)
    expected = brute_force(lambda b, h, i, j: j < prefix[b] or j <= i, 3, 2, 5, 5)
    assert torch.equal(got.expand(3, 2, 5, 5), expected)


# ---------------------------------------------------------------------------
# combinators


def _first_two_keys(b, h, q_idx, kv_idx):
    return kv_idx < 2


def _even_heads(b, h, q_idx, kv_idx):
    return h % 2 == 0


COMBINATIONS = {
    "and_masks": (lambda: masks.and_masks(masks.causal(), masks.sliding_window(2, causal=False)),
                  lambda i, j, h: (j <= i) and abs(i - j) < 2),
    "or_masks": (lambda: masks.or_masks(masks.causal(), _first_two_keys),
                 lambda i, j, h: (j <= i) or j < 2),
    "not_mask": (lambda: masks.not_mask(masks.causal()), lambda i, j, h: not j <= i),
    "and-three": (lambda: masks.and_masks(masks.causal(), _first_two_keys, _even_heads),
                  lambda i, j, h: j <= i and j < 2 and h % 2 == 0),
    "op-and": (lambda: masks.causal() & masks.sliding_window(3, causal=False),
               lambda i, j, h: (j <= i) and abs(i - j) < 3),
    "op-or": (lambda: masks.sliding_window(1) | _first_two_keys,
              lambda i, j, h: i == j or j < 2),
    "op-invert": (lambda: ~masks.sliding_window(2), lambda i, j, h: not (i - 2 < j <= i)),
    "op-and-lambda-right": (lambda: masks.causal() & (lambda b, h, q, kv: kv % 2 == 0),
                            lambda i, j, h: j <= i and j % 2 == 0),
    "op-and-lambda-left": (lambda: (lambda b, h, q, kv: kv % 2 == 0) & masks.causal(),
                           lambda i, j, h: j <= i and j % 2 == 0),
    "op-or-lambda-right": (lambda: masks.causal() | (lambda b, h, q, kv: kv == 5),
                           lambda i, j, h: j <= i or j == 5),
    "op-or-lambda-left": (lambda: _first_two_keys | masks.sliding_window(1),
                          lambda i, j, h: j < 2 or i == j),
    "nested": (lambda: ~(masks.causal() | _even_heads) & _first_two_keys,
               lambda i, j, h: not (j <= i or h % 2 == 0) and j < 2),
}


@pytest.mark.parametrize("name", list(COMBINATIONS))
def test_combinators_brute_force(name):
    build, allowed = COMBINATIONS[name]
    mask_mod = build()
    assert isinstance(mask_mod, masks.MaskMod)
    got = dense(mask_mod, batch=1, heads=3, q_len=6, kv_len=6)
    expected = brute_force(lambda b, h, i, j: allowed(i, j, h), 1, 3, 6, 6)
    assert torch.equal(got, expected)


def test_and_masks_with_plain_functions_only():
    mask_mod = masks.and_masks(_first_two_keys, _even_heads)
    got = dense(mask_mod, heads=2, q_len=3, kv_len=3)
    assert got[0, 1].sum() == 0
    assert torch.equal(got[0, 0], drawn("""
        1 1 0
        1 1 0
        1 1 0"""))


def test_double_negation_is_identity():
    mask_mod = masks.sliding_window(3, causal=False) & masks.causal()
    assert torch.equal(dense(~~mask_mod, q_len=7, kv_len=9), dense(mask_mod, q_len=7, kv_len=9))


# ---------------------------------------------------------------------------
# materialize


MATERIALIZE_SHAPES = [
    # (id, mask_mod, materialized shape for B=3, H=4, Lq=5, Lk=7)
    ("causal", masks.causal(), (1, 1, 5, 7)),
    ("sliding", masks.sliding_window(2, causal=False), (1, 1, 5, 7)),
    ("prefix-int", masks.prefix_lm(2), (1, 1, 5, 7)),
    ("key-padding", masks.key_padding(torch.tensor([1, 2, 3])), (3, 1, 5, 7)),
    ("document-2d", masks.document(torch.arange(15).view(3, 5) // 3,
                                   torch.arange(21).view(3, 7) // 3), (3, 1, 5, 7)),
    ("prefix-tensor", masks.prefix_lm(torch.tensor([1, 2, 3])), (3, 1, 5, 7)),
    ("head-lambda", _even_heads, (1, 4, 5, 7)),
    ("head-and-padding", _even_heads & masks.key_padding(torch.tensor([1, 2, 3])), (3, 4, 5, 7)),
    ("query-only-lambda", lambda b, h, q, kv: q < 2, (1, 1, 5, 7)),
    ("scalar-true", lambda b, h, q, kv: torch.tensor(True), (1, 1, 5, 7)),
]


@pytest.mark.parametrize(("name", "mask_mod", "shape"), MATERIALIZE_SHAPES,
                         ids=[case[0] for case in MATERIALIZE_SHAPES])
def test_materialize_keeps_size_one_dims(name, mask_mod, shape):
    got = masks.materialize(mask_mod, 3, 4, 5, 7)
    assert got.dtype == torch.bool
    assert tuple(got.shape) == shape


def test_materialize_scalar_and_query_only_values():
    assert dense(lambda b, h, q, kv: torch.tensor(True), q_len=2, kv_len=3).all()
    got = dense(lambda b, h, q, kv: q < 1, q_len=2, kv_len=3)[0, 0]
    assert torch.equal(got, drawn("""
        1 1 1
        0 0 0"""))


# ---------------------------------------------------------------------------
# block_map


def brute_force_kinds(full_mask: torch.Tensor, block_q: int, block_k: int) -> torch.Tensor:
    """Classify every tile of a ``(B, H, Lq, Lk)`` mask by looping over the tiles."""
    B, H, Lq, Lk = full_mask.shape
    n_q, n_k = math.ceil(Lq / block_q), math.ceil(Lk / block_k)
    kinds = torch.empty(B, H, n_q, n_k, dtype=torch.int8)
    for i, j in itertools.product(range(n_q), range(n_k)):
        tile = full_mask[:, :, i * block_q:(i + 1) * block_q, j * block_k:(j + 1) * block_k]
        tile = tile.flatten(2)  # (B, H, positions in this tile)
        kinds[:, :, i, j] = torch.where(
            tile.all(-1), masks.FULL, torch.where(tile.any(-1), masks.PARTIAL, masks.EMPTY))
    return kinds


BLOCK_SHAPES = [
    # (Lq, Lk, block_q, block_k)
    (97, 130, 32, 16),
    (64, 64, 16, 16),
    (1, 1, 8, 8),
    (5, 7, 8, 8),
    (33, 17, 4, 32),
    (40, 25, 1, 3),
]

BLOCK_MASKS = {
    "causal": lambda Lq, Lk: masks.causal(),
    "causal-lower-right": lambda Lq, Lk: masks.causal("lower_right", q_len=Lq, kv_len=Lk),
    "sliding": lambda Lq, Lk: masks.sliding_window(9),
    "sliding-bidir-lower-right": lambda Lq, Lk: masks.sliding_window(
        20, causal=False, alignment="lower_right", q_len=Lq, kv_len=Lk),
    "key-padding": lambda Lq, Lk: masks.key_padding(torch.tensor([0, Lk // 2, Lk])),
    "document-causal": lambda Lq, Lk: masks.document(
        torch.arange(Lq) * 3 // max(Lq, 1), torch.arange(Lk) * 3 // max(Lk, 1)) & masks.causal(),
    "prefix-per-batch": lambda Lq, Lk: masks.prefix_lm(torch.tensor([1, 10, 40])),
    "head-dependent": lambda Lq, Lk: (lambda b, h, q, kv: (kv + h * 7) % 13 < 6),
    # Odd query ids against even key ids: overlapping id ranges, never the same
    # document, so every tile is empty (and full under ~).
    "document-disjoint": lambda Lq, Lk: masks.document(
        torch.arange(Lq) % 3 * 2 + 1, torch.arange(Lk) % 3 * 2),
    "not-document-disjoint": lambda Lq, Lk: ~masks.document(
        torch.arange(Lq) % 3 * 2 + 1, torch.arange(Lk) % 3 * 2),
    "not-or": lambda Lq, Lk: ~(masks.causal() | masks.sliding_window(5, causal=False)),
    "or-prefix-padding": lambda Lq, Lk: masks.prefix_lm(5) | masks.key_padding(
        torch.tensor([Lk, 3, 0])),
    "and-causal-lambda": lambda Lq, Lk: masks.causal() & (lambda b, h, q, kv: kv % 4 != 1),
}


@pytest.mark.parametrize("mask_name", list(BLOCK_MASKS))
@pytest.mark.parametrize(("q_len", "kv_len", "block_q", "block_k"), BLOCK_SHAPES,
                         ids=[f"{q}x{k}-blk{bq}x{bk}" for q, k, bq, bk in BLOCK_SHAPES])
def test_block_map_matches_per_tile_brute_force(mask_name, q_len, kv_len, block_q, block_k):
    batch, heads = 3, 2
    mask_mod = BLOCK_MASKS[mask_name](q_len, kv_len)
    bm = masks.block_map(mask_mod, batch, heads, q_len, kv_len, block_q=block_q, block_k=block_k)
    n_q, n_k = math.ceil(q_len / block_q), math.ceil(kv_len / block_k)
    assert bm.kinds.dtype == torch.int8
    assert bm.kinds.shape[2:] == (n_q, n_k)
    assert (bm.block_q, bm.block_k, bm.q_len, bm.kv_len) == (block_q, block_k, q_len, kv_len)

    full_mask = dense(mask_mod, batch, heads, q_len, kv_len)
    expected = brute_force_kinds(full_mask, block_q, block_k)
    got = bm.kinds.expand(batch, heads, n_q, n_k)
    assert torch.equal(got, expected)

    # counts() and sparsity describe the stored kinds tensor.
    counts = bm.counts()
    assert set(counts) == {"empty", "partial", "full"}
    assert sum(counts.values()) == bm.kinds.numel()
    assert counts["empty"] == int((bm.kinds == masks.EMPTY).sum())
    assert bm.sparsity == pytest.approx(counts["empty"] / bm.kinds.numel())


@st.composite
def leaf_masks(draw, batch: int, q_len: int, kv_len: int):
    """One built-in mask (or a plain callable) with parameters drawn for these lengths."""
    kind = draw(st.sampled_from(["causal", "sliding", "key_padding", "document", "prefix",
                                 "callable"]))
    alignment = draw(st.sampled_from(["upper_left", "lower_right"]))
    if kind == "causal":
        return masks.causal(alignment, q_len=q_len, kv_len=kv_len)
    if kind == "sliding":
        return masks.sliding_window(draw(st.integers(1, 12)), draw(st.booleans()),
                                    alignment=alignment, q_len=q_len, kv_len=kv_len)
    if kind == "key_padding":
        lengths = draw(st.lists(st.integers(0, kv_len + 2), min_size=batch, max_size=batch))
        return masks.key_padding(torch.tensor(lengths))
    if kind == "document":
        sorted_ids = draw(st.booleans())
        rows = draw(st.sampled_from([1, batch]))

        def ids(length):
            values = draw(st.lists(st.integers(0, 3), min_size=rows * length,
                                   max_size=rows * length))
            tensor = torch.tensor(values).view(rows, length)
            return tensor.sort(dim=1).values if sorted_ids else tensor

        if q_len == kv_len and draw(st.booleans()):
            return masks.document(ids(q_len))
        return masks.document(ids(q_len), ids(kv_len))
    if kind == "prefix":
        if draw(st.booleans()):
            return masks.prefix_lm(draw(st.integers(0, kv_len + 1)))
        prefix = draw(st.lists(st.integers(0, kv_len + 1), min_size=batch, max_size=batch))
        return masks.prefix_lm(torch.tensor(prefix))
    period = draw(st.integers(2, 5))
    return lambda b, h, q, kv: (q + kv + h) % period != 0


@st.composite
def composed_masks(draw, batch: int, q_len: int, kv_len: int, depth: int = 2):
    """A leaf, or and/or/not of composed masks, up to ``depth`` levels."""
    op = draw(st.sampled_from(["leaf", "and", "or", "not"] if depth > 0 else ["leaf"]))
    if op == "leaf":
        return draw(leaf_masks(batch, q_len, kv_len))
    if op == "not":
        inner = draw(composed_masks(batch, q_len, kv_len, depth - 1))
        # A plain lambda has no ~; wrap it the functional way.
        return masks.not_mask(inner) if not isinstance(inner, masks.MaskMod) else ~inner
    parts = draw(st.lists(composed_masks(batch, q_len, kv_len, depth - 1), min_size=2,
                          max_size=3))
    return masks.and_masks(*parts) if op == "and" else masks.or_masks(*parts)


@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_block_map_of_composed_masks_matches_brute_force(data):
    batch = data.draw(st.integers(1, 2), label="batch")
    heads = data.draw(st.integers(1, 2), label="heads")
    q_len = data.draw(st.integers(1, 40), label="q_len")
    kv_len = data.draw(st.integers(1, 40), label="kv_len")
    block_q = data.draw(st.integers(2, 16), label="block_q")
    block_k = data.draw(st.integers(2, 16), label="block_k")
    mask_mod = data.draw(composed_masks(batch, q_len, kv_len), label="mask_mod")

    bm = masks.block_map(mask_mod, batch, heads, q_len, kv_len, block_q=block_q,
                         block_k=block_k)
    n_q, n_k = math.ceil(q_len / block_q), math.ceil(kv_len / block_k)
    assert bm.kinds.dim() == 4
    assert bm.kinds.shape[0] in (1, batch) and bm.kinds.shape[1] in (1, heads)
    expected = brute_force_kinds(dense(mask_mod, batch, heads, q_len, kv_len), block_q, block_k)
    assert torch.equal(bm.kinds.expand(batch, heads, n_q, n_k), expected)


BATCH_ROW_MASKS = {
    "key_padding": lambda rows: masks.key_padding(torch.arange(rows) * 3),
    "prefix_lm": lambda rows: masks.prefix_lm(torch.arange(rows) * 3),
    "document": lambda rows: masks.document(
        (torch.arange(9)[None, :] + torch.arange(rows)[:, None]) // 4),
}


@pytest.mark.parametrize("name", list(BATCH_ROW_MASKS))
@pytest.mark.parametrize("evaluate", ["materialize", "block_map"])
def test_per_batch_tensor_with_more_rows_than_the_batch(name, evaluate):
    # Extra rows would be ignored silently, which changes meaning: refused.
    mask_mod = BATCH_ROW_MASKS[name](4)
    with pytest.raises(ValueError, match="4 batch rows but attention has batch size 2"):
        getattr(masks, evaluate)(mask_mod, 2, 1, 9, 9)


@pytest.mark.parametrize("name", list(BATCH_ROW_MASKS))
@pytest.mark.parametrize("evaluate", ["materialize", "block_map"])
def test_per_batch_tensor_with_too_few_rows_for_the_batch(name, evaluate):
    mask_mod = BATCH_ROW_MASKS[name](2)
    with pytest.raises(ValueError, match="2 batch rows but attention has batch size 3"):
        getattr(masks, evaluate)(mask_mod, 3, 1, 9, 9)


def test_block_map_keeps_size_one_dims():
    assert masks.block_map(masks.causal(), 4, 8, 64, 64, block_q=16, block_k=16).kinds.shape == (
        1, 1, 4, 4)
    padding = masks.key_padding(torch.tensor([5, 64, 0, 30]))
    assert masks.block_map(padding, 4, 8, 64, 64, block_q=16, block_k=16).kinds.shape == (
        4, 1, 4, 4)


def test_block_map_causal_by_hand():
    bm = masks.block_map(masks.causal(), 1, 1, 64, 64, block_q=16, block_k=16)
    E, P, F = masks.EMPTY, masks.PARTIAL, masks.FULL
    assert bm.kinds[0, 0].tolist() == [
        [P, E, E, E],
        [F, P, E, E],
        [F, F, P, E],
        [F, F, F, P],
    ]
    assert bm.counts() == {"empty": 6, "partial": 4, "full": 6}
    assert bm.sparsity == pytest.approx(6 / 16)


def test_block_map_short_last_tiles_are_classified_by_real_positions():
    # Lq = Lk = 5 in 4x4 tiles: the last row/column of tiles holds one position.
    #   1 0 0 0 | 0
    #   1 1 0 0 | 0
    #   1 1 1 0 | 0
    #   1 1 1 1 | 0
    #   --------+--
    #   1 1 1 1 | 1
    bm = masks.block_map(masks.causal(), 1, 1, 5, 5, block_q=4, block_k=4)
    E, P, F = masks.EMPTY, masks.PARTIAL, masks.FULL
    assert bm.kinds[0, 0].tolist() == [[P, E], [F, F]]


def test_block_map_all_and_nothing():
    everything = masks.block_map(lambda b, h, q, kv: torch.tensor(True), 1, 1, 10, 10,
                                 block_q=4, block_k=4)
    assert (everything.kinds == masks.FULL).all()
    assert everything.sparsity == 0.0
    nothing = masks.block_map(masks.key_padding(torch.tensor([0])), 1, 1, 10, 10,
                              block_q=4, block_k=4)
    assert (nothing.kinds == masks.EMPTY).all()
    assert nothing.sparsity == 1.0
    assert nothing.counts() == {"empty": 9, "partial": 0, "full": 0}


def test_tile_classes_are_distinct():
    assert len({masks.EMPTY, masks.PARTIAL, masks.FULL}) == 3


# ---------------------------------------------------------------------------
# errors


@pytest.mark.parametrize(
    "build",
    [
        lambda: masks.causal("lower-right", q_len=2, kv_len=3),
        lambda: masks.causal("bottom_right"),
        lambda: masks.sliding_window(3, alignment="upper"),
    ],
    ids=["causal-hyphen", "causal-unknown", "sliding-unknown"],
)
def test_bad_alignment_string(build):
    with pytest.raises(ValueError, match="alignment must be one of"):
        build()


@pytest.mark.parametrize(
    "build",
    [
        lambda: masks.causal("lower_right"),
        lambda: masks.causal("lower_right", q_len=3),
        lambda: masks.causal("lower_right", kv_len=3),
        lambda: masks.sliding_window(2, alignment="lower_right"),
        lambda: masks.sliding_window(2, alignment="lower_right", q_len=4),
    ],
    ids=["causal-none", "causal-no-kv", "causal-no-q", "sliding-none", "sliding-no-kv"],
)
def test_lower_right_needs_both_lengths(build):
    with pytest.raises(ValueError, match="q_len and kv_len"):
        build()


@pytest.mark.parametrize(("size", "error"), [(0, ValueError), (-3, ValueError),
                                             (2.0, TypeError), (True, TypeError)],
                         ids=["zero", "negative", "float", "bool"])
def test_sliding_window_bad_size(size, error):
    with pytest.raises(error, match="size"):
        masks.sliding_window(size)


@pytest.mark.parametrize(
    ("lengths", "error", "match"),
    [
        (torch.tensor([1.0, 2.0]), TypeError, "lengths must be an integer tensor"),
        ([1.5, 2.0], TypeError, "lengths must be an integer tensor"),
        (torch.tensor([True, False]), TypeError, "lengths must be an integer tensor"),
        (torch.tensor([3, -1]), ValueError, "lengths must be >= 0"),
        (torch.tensor([[1, 2]]), ValueError, "lengths must have 1 dims"),
        ("abc", TypeError, "lengths must be an integer tensor"),
    ],
    ids=["float-tensor", "float-list", "bool", "negative", "two-dims", "string"],
)
def test_key_padding_bad_lengths(lengths, error, match):
    with pytest.raises(error, match=match):
        masks.key_padding(lengths)


def test_key_padding_with_too_few_rows_for_the_batch():
    with pytest.raises(ValueError, match="2 batch rows but attention has batch size 3"):
        masks.materialize(masks.key_padding(torch.tensor([1, 2])), 3, 1, 2, 2)


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: masks.document(torch.tensor([0.0, 1.0])), TypeError, "doc_ids"),
        (lambda: masks.document(torch.zeros(1, 2, 3, dtype=torch.long)), ValueError, "doc_ids"),
        (lambda: masks.document(torch.tensor([0, 1]), torch.tensor([0.5])), TypeError,
         "kv_doc_ids"),
        (lambda: masks.document(torch.zeros(2, 3, dtype=torch.long),
                                torch.zeros(3, 3, dtype=torch.long)), ValueError, "batch size"),
    ],
    ids=["float-ids", "three-dims", "float-kv-ids", "batch-mismatch"],
)
def test_document_bad_ids(build, error, match):
    with pytest.raises(error, match=match):
        build()


@pytest.mark.parametrize("ids_len", [3, 6], ids=["ids-shorter", "ids-longer"])
@pytest.mark.parametrize("evaluate", ["materialize", "block_map"])
def test_document_ids_of_the_wrong_length(ids_len, evaluate):
    # Document ids for 3 or 6 positions used on a length-4 sequence: a clear
    # ValueError naming doc_ids, not an IndexError from inside the indexing or a
    # silently truncated id list.
    ids = torch.arange(ids_len) // 2
    with pytest.raises(ValueError, match="doc_ids"):
        getattr(masks, evaluate)(masks.document(ids), 1, 1, 4, 4)


@pytest.mark.parametrize(
    ("prefix", "error"),
    [(-1, ValueError), (2.0, TypeError), (True, TypeError),
     (torch.tensor([1.0]), TypeError), (torch.tensor([[1, 2]]), ValueError),
     (torch.tensor([2, -1]), ValueError)],
    ids=["negative-int", "float", "bool", "float-tensor", "two-dims", "negative-tensor"],
)
def test_prefix_lm_bad_prefix(prefix, error):
    with pytest.raises(error, match="prefix_len"):
        masks.prefix_lm(prefix)


@pytest.mark.parametrize(
    ("combine", "error", "match"),
    [
        (lambda: masks.and_masks(masks.causal(), "causal"), TypeError, "and_masks: argument 1"),
        (lambda: masks.and_masks(None), TypeError, "and_masks: argument 0"),
        (lambda: masks.or_masks(masks.causal(), 3), TypeError, "or_masks: argument 1"),
        (lambda: masks.not_mask(torch.ones(2, 2, dtype=torch.bool)), TypeError, "not_mask"),
        (lambda: masks.and_masks(), ValueError, "at least one"),
        (lambda: masks.or_masks(), ValueError, "at least one"),
        (lambda: masks.causal() & 1, TypeError, "and_masks"),
        (lambda: masks.causal() | "x", TypeError, "or_masks"),
    ],
    ids=["and-string", "and-none", "or-int", "not-tensor", "and-empty", "or-empty",
         "op-and-int", "op-or-string"],
)
def test_combinator_errors(combine, error, match):
    with pytest.raises(error, match=match):
        combine()


@pytest.mark.parametrize(
    "mask_mod",
    [
        lambda b, h, q, kv: (kv <= q).int(),
        lambda b, h, q, kv: (kv <= q).float(),
        lambda b, h, q, kv: True,
        lambda b, h, q, kv: None,
    ],
    ids=["int-tensor", "float-tensor", "python-bool", "none"],
)
@pytest.mark.parametrize("evaluate", ["materialize", "block_map"])
def test_mask_mod_returning_non_bool(mask_mod, evaluate):
    with pytest.raises(TypeError, match="mask_mod must return a bool tensor"):
        getattr(masks, evaluate)(mask_mod, 1, 1, 3, 3)


@pytest.mark.parametrize(
    ("result_shape", "batch"),
    [((3, 1, 1, 1), 2), ((1, 5, 1, 1), 1), ((1, 1, 4, 1), 1), ((1, 1, 1, 2), 1),
     ((3, 1, 1, 1), 1), ((2, 1, 1, 1, 1), 1)],
    ids=["batch-3-vs-2", "heads-5-vs-2", "q-4-vs-3", "kv-2-vs-3", "batch-3-vs-1", "five-dims"],
)
@pytest.mark.parametrize("evaluate", ["materialize", "block_map"])
def test_mask_mod_shape_that_does_not_broadcast(result_shape, batch, evaluate):
    def bad(b, h, q, kv):
        return torch.ones(result_shape, dtype=torch.bool)

    # heads = 2, Lq = Lk = 3
    with pytest.raises(ValueError, match=r"mask_mod returned shape"):
        getattr(masks, evaluate)(bad, batch, 2, 3, 3)


@pytest.mark.parametrize(("block_q", "block_k", "error"),
                         [(0, 16, ValueError), (16, -1, ValueError), (8.0, 8, TypeError)],
                         ids=["block_q-zero", "block_k-negative", "block_q-float"])
def test_block_map_bad_block_sizes(block_q, block_k, error):
    with pytest.raises(error, match="block_"):
        masks.block_map(masks.causal(), 1, 1, 16, 16, block_q=block_q, block_k=block_k)


@dataclasses.dataclass(frozen=True, eq=False)
class _EvenKeys(masks.MaskMod):
    """A user-defined mask that answers the kernel questions itself."""

    batch_rows: int = 1

    def __call__(self, b, h, q_idx, kv_idx):
        return kv_idx % 2 == 0

    def check_shapes(self, batch, q_len, kv_len):
        if self.batch_rows not in (1, batch):
            raise ValueError(f"_EvenKeys holds {self.batch_rows} rows, batch is {batch}")

    def kernel_terms(self, batch, q_len, kv_len, fields):
        fields["causal_offset"] = kv_len  # any term: the plan must pass it on unchanged
        return None


def test_a_mask_class_answers_the_kernel_questions_itself():
    from attnkit.functional._plan import CallPlan

    q = torch.randn(2, 1, 4, 8)
    spec = CallPlan.build(q, 6, _EvenKeys() & masks.causal(), None, None).kernel_spec()
    assert spec.mask.causal_offset == 0  # min(6, 0): terms of an & are and-ed
    with pytest.raises(ValueError, match="_EvenKeys holds 3 rows"):
        masks.materialize(_EvenKeys(3) | masks.causal(), 2, 1, 4, 6)
    reason = CallPlan.build(q, 6, ~_EvenKeys(), None, None).kernel_spec()
    assert reason == ("the mask_mod Not has no kernel description (kernels take causal, "
                      "sliding_window, key_padding, document and their & combinations)")
