"""KV caches: storage behaviour, and incremental decoding equal to the full forward."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnkit import score_mods
from attnkit.nn.kv_cache import KVCache, StaticKVCache
from attnkit.nn.multihead import MultiHeadAttention
from attnkit.nn.positional import RotaryEmbedding
from attnkit.testing import assert_oracle_close

F64 = torch.float64

# --------------------------------------------------------------------------- KVCache storage


def test_update_returns_everything_appended():
    cache = KVCache(initial_capacity=4)
    assert cache.length == 0 and cache.capacity == 0 and cache.keys is None
    ks = [torch.randn(2, 3, n, 5) for n in (1, 2, 1)]
    vs = [torch.randn(2, 3, n, 7) for n in (1, 2, 1)]
    for i, (k, v) in enumerate(zip(ks, vs, strict=True)):
        k_all, v_all = cache.update(k, v)
        torch.testing.assert_close(k_all, torch.cat(ks[:i + 1], dim=2), atol=0, rtol=0)
        torch.testing.assert_close(v_all, torch.cat(vs[:i + 1], dim=2), atol=0, rtol=0)
    assert cache.length == 4 and cache.capacity == 4
    assert cache.keys.shape == (2, 3, 4, 5) and cache.values.shape == (2, 3, 4, 7)


def test_storage_doubles_past_capacity_and_keeps_contents():
    cache = KVCache(initial_capacity=2)
    steps = [torch.randn(1, 2, 1, 4) for _ in range(9)]
    capacities = []
    for k in steps:
        cache.update(k, -k)
        capacities.append(cache.capacity)
    assert capacities == [2, 2, 4, 4, 8, 8, 8, 8, 16]
    expected = torch.cat(steps, dim=2)
    torch.testing.assert_close(cache.keys, expected, atol=0, rtol=0)
    torch.testing.assert_close(cache.values, -expected, atol=0, rtol=0)
    # A chunk longer than double the capacity grows straight to what it needs.
    cache.update(torch.randn(1, 2, 40, 4), torch.randn(1, 2, 40, 4))
    assert cache.length == 49 and cache.capacity == 49
    torch.testing.assert_close(cache.keys[:, :, :9], expected, atol=0, rtol=0)


def test_appends_do_not_reallocate_within_capacity():
    cache = KVCache(initial_capacity=8)
    k_first, _ = cache.update(torch.randn(1, 1, 1, 4), torch.randn(1, 1, 1, 4))
    k_later, _ = cache.update(torch.randn(1, 1, 3, 4), torch.randn(1, 1, 3, 4))
    assert k_first.data_ptr() == k_later.data_ptr()  # same storage, written in place


def test_first_update_longer_than_initial_capacity():
    cache = KVCache(initial_capacity=2)
    k = torch.randn(1, 2, 5, 3)
    k_all, _ = cache.update(k, k)
    assert cache.capacity == 5
    torch.testing.assert_close(k_all, k, atol=0, rtol=0)


def test_reset_reuses_matching_storage_and_reallocates_otherwise():
    cache = KVCache(initial_capacity=4)
    cache.update(torch.randn(2, 2, 3, 4), torch.randn(2, 2, 3, 4))
    pointer = cache.keys.data_ptr()
    cache.reset()
    assert cache.length == 0 and cache.keys is None
    k = torch.randn(2, 2, 1, 4)
    k_all, _ = cache.update(k, k)
    assert k_all.data_ptr() == pointer and cache.length == 1
    torch.testing.assert_close(k_all, k, atol=0, rtol=0)
    cache.reset()
    k = torch.randn(3, 1, 2, 6, dtype=F64)  # new batch size, heads, head dim and dtype
    k_all, v_all = cache.update(k, k)
    assert k_all.dtype == F64 and k_all.shape == (3, 1, 2, 6)
    torch.testing.assert_close(v_all, k, atol=0, rtol=0)


@pytest.mark.parametrize("k_new, v_new, error, word", [
    (torch.randn(3, 2, 1, 4), torch.randn(3, 2, 1, 4), ValueError, "k_new has batch size 3"),
    (torch.randn(2, 1, 1, 4), torch.randn(2, 1, 1, 4), ValueError, "k_new has 1 heads"),
    (torch.randn(2, 2, 1, 4, dtype=F64), torch.randn(2, 2, 1, 4, dtype=F64), ValueError,
     "k_new.dtype"),
    (torch.randn(2, 2, 1, 5), torch.randn(2, 2, 1, 4), ValueError, "k_new has head dim 5"),
    (torch.randn(2, 2, 1, 4), torch.randn(2, 2, 1, 6), ValueError, "v_new has head dim 6"),
    (torch.randn(2, 2, 1, 4), torch.randn(2, 2, 2, 4), ValueError, "v_new"),
    (torch.randn(2, 2, 1, 4), torch.randn(2, 2, 1, 4, dtype=F64), ValueError, "v_new.dtype"),
    (torch.randn(2, 2, 4), torch.randn(2, 2, 1, 4), ValueError, "k_new must have 4 dims"),
    ([1.0], torch.randn(2, 2, 1, 4), TypeError, "k_new"),
])
def test_update_validation_names_the_argument(k_new, v_new, error, word):
    cache = KVCache()
    cache.update(torch.randn(2, 2, 3, 4), torch.randn(2, 2, 3, 4))
    with pytest.raises(error, match=word):
        cache.update(k_new, v_new)
    assert cache.length == 3  # a rejected update leaves the cache as it was


@pytest.mark.parametrize("capacity, error", [(0, ValueError), (2.0, TypeError),
                                             (True, TypeError)])
def test_initial_capacity_validation(capacity, error):
    with pytest.raises(error, match="initial_capacity"):
        KVCache(initial_capacity=capacity)


def test_static_cache_set_once():
    cache = StaticKVCache()
    assert not cache.is_set and cache.length == 0 and cache.keys is None
    k, v = torch.randn(2, 1, 5, 4), torch.randn(2, 1, 5, 3)
    cache.set(k, v)
    assert cache.is_set and cache.length == 5
    assert cache.keys is k and cache.values is v
    with pytest.raises(ValueError, match="reset"):
        cache.set(k, v)
    with pytest.raises(ValueError, match="v must have 4 dims"):
        StaticKVCache().set(k, v[0])
    cache.reset()
    assert not cache.is_set


# --------------------------------------------------------------------------- decoding


def _decoder(num_kv_heads=2, rotary=False, dtype=F64, **kwargs) -> MultiHeadAttention:
    rope = RotaryEmbedding(8) if rotary else None
    return MultiHeadAttention(32, 4, num_kv_heads=num_kv_heads, rotary=rope,
                              **kwargs).to(dtype).eval()


def _decode(mha, x, chunks, cache=None, **kwargs):
    """Feed ``x (B, L, E)`` in chunks of the given sizes through a KV cache."""
    cache = KVCache(initial_capacity=2) if cache is None else cache
    outs, start = [], 0
    with torch.no_grad():
        for size in chunks:
            out, _ = mha(x[:, start:start + size], causal=True, kv_cache=cache, **kwargs)
            outs.append(out)
            start += size
    assert cache.length == start == x.shape[1]
    return torch.cat(outs, dim=1)


@pytest.mark.parametrize("rotary", [False, True], ids=["no_rope", "rope"])
@pytest.mark.parametrize("qk_norm", [False, True], ids=["", "qk_norm"])
@pytest.mark.parametrize("chunks", [[1] * 11, [3, 1, 4, 1, 2], [11], [2, 9]],
                         ids=["tokens", "mixed", "one", "prompt_then_rest"])
def test_incremental_decoding_equals_full_causal_forward(rotary, qk_norm, chunks):
    mha = _decoder(rotary=rotary, qk_norm=qk_norm)
    x = torch.randn(2, 11, 32, dtype=F64)
    with torch.no_grad():
        full, _ = mha(x, causal=True)
    torch.testing.assert_close(_decode(mha, x, chunks), full, atol=1e-12, rtol=0)


def test_without_causal_a_chunk_sees_its_own_future():
    # causal=True is what makes a multi-token chunk match the full causal forward.
    mha = _decoder()
    x = torch.randn(1, 6, 32, dtype=F64)
    with torch.no_grad():
        full, _ = mha(x, causal=True)
        cache = KVCache()
        mha(x[:, :2], causal=True, kv_cache=cache)
        loose, _ = mha(x[:, 2:], kv_cache=cache)
    assert not torch.allclose(loose, full[:, 2:])


def test_decoding_weights_are_lower_right_aligned():
    mha = _decoder()
    x = torch.randn(1, 5, 32, dtype=F64)
    cache = KVCache()
    with torch.no_grad():
        mha(x[:, :2], causal=True, kv_cache=cache)
        _, weights = mha(x[:, 2:], causal=True, kv_cache=cache, return_weights=True)
        _, full = mha(x, causal=True, return_weights=True)
    assert weights.shape == (1, 4, 3, 5)
    torch.testing.assert_close(weights, full[:, :, 2:], atol=1e-12, rtol=0)
    visible = (weights[0, 0] > 0).int().tolist()
    assert visible == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]


def test_decoding_with_alibi_offset_by_cache_length():
    mha = _decoder(num_kv_heads=4)
    slopes = score_mods.alibi_slopes(4)
    x = torch.randn(2, 7, 32, dtype=F64)
    cache = KVCache()
    outs = []
    with torch.no_grad():
        full, _ = mha(x, causal=True, score_mod=score_mods.alibi(slopes))
        for start, end in [(0, 3), (3, 4), (4, 7)]:
            mod = score_mods.alibi(slopes, q_offset=cache.length)
            outs.append(mha(x[:, start:end], causal=True, kv_cache=cache, score_mod=mod)[0])
    torch.testing.assert_close(torch.cat(outs, dim=1), full, atol=1e-12, rtol=0)


def test_decoding_with_key_padding_mask_over_the_cache():
    # Left-padded prompts: row 1's first two tokens are padding and stay masked.
    mha = _decoder()
    x = torch.randn(2, 6, 32, dtype=F64)
    valid = torch.ones(2, 6, dtype=torch.bool)
    valid[1, :2] = False
    with torch.no_grad():
        full, _ = mha(x, causal=True, mask=valid[:, None, None, :])
        cache = KVCache()
        prompt, _ = mha(x[:, :4], causal=True, kv_cache=cache, mask=valid[:, None, None, :4])
        steps = [mha(x[:, t:t + 1], causal=True, kv_cache=cache,
                     mask=valid[:, None, None, :t + 1])[0] for t in (4, 5)]
    decoded = torch.cat([prompt, *steps], dim=1)
    torch.testing.assert_close(decoded[0], full[0], atol=1e-12, rtol=0)
    torch.testing.assert_close(decoded[1, 2:], full[1, 2:], atol=1e-12, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_incremental_decoding_low_precision(dtype):
    mha64 = _decoder(rotary=True)
    mha = _decoder(rotary=True, dtype=dtype)
    mha.load_state_dict(mha64.state_dict())
    x = torch.randn(2, 9, 32, dtype=F64)
    with torch.no_grad():
        golden, _ = mha64(x, causal=True)
        reference, _ = mha(x.to(dtype), causal=True)
    candidate = _decode(mha, x.to(dtype), [4, 1, 1, 3])
    assert candidate.dtype == dtype
    assert_oracle_close(candidate, reference, golden)


@settings(max_examples=12, deadline=None)
@given(
    data=st.data(),
    length=st.integers(1, 9),
    num_kv_heads=st.sampled_from([1, 2, 4]),
    rotary=st.booleans(),
    capacity=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_any_chunking_matches_full_forward(data, length, num_kv_heads, rotary, capacity,
                                           seed):
    torch.manual_seed(seed)
    chunks = []
    while sum(chunks) < length:
        chunks.append(data.draw(st.integers(1, length - sum(chunks)), label="chunk"))
    mha = _decoder(num_kv_heads=num_kv_heads, rotary=rotary)
    x = torch.randn(2, length, 32, dtype=F64)
    with torch.no_grad():
        full, _ = mha(x, causal=True)
    decoded = _decode(mha, x, chunks, cache=KVCache(initial_capacity=capacity))
    torch.testing.assert_close(decoded, full, atol=1e-12, rtol=0)


def test_backward_through_one_cached_step():
    mha = _decoder().train()
    cache = KVCache()
    x = torch.randn(1, 4, 32, dtype=F64)
    mha(x[:, :3], causal=True, kv_cache=cache)[0].sum().backward()
    # q/k/v are rows of one stacked parameter; the k rows follow the q rows
    q_rows, k_rows = mha.q_proj.weight.shape[0], mha.k_proj.weight.shape[0]
    assert mha.in_proj_weight.grad[q_rows:q_rows + k_rows].abs().sum() > 0


# --------------------------------------------------------------------------- cross-attention


@pytest.mark.parametrize("batch_first", [True, False])
def test_cross_attention_cache_projects_once_and_matches_recomputing(batch_first):
    mha = MultiHeadAttention(32, 4, num_kv_heads=2, kdim=12, vdim=12, qk_norm=True,
                             batch_first=batch_first).to(F64).eval()
    calls = {"k_proj": 0, "v_proj": 0}
    for name in calls:
        getattr(mha, name).register_forward_hook(
            lambda module, args, out, name=name: calls.__setitem__(name, calls[name] + 1))
    memory = torch.randn(2, 7, 12, dtype=F64)
    queries = torch.randn(2, 5, 32, dtype=F64)
    source_mask = torch.ones(2, 1, 1, 7, dtype=torch.bool)
    source_mask[1, ..., 5:] = False

    def layout(t):
        return t if batch_first else t.transpose(0, 1)

    with torch.no_grad():
        full, full_w = mha(layout(queries), layout(memory), mask=source_mask,
                           return_weights=True)
        calls.update(k_proj=0, v_proj=0)
        cache = StaticKVCache()
        steps = []
        for t in range(5):
            # The source is passed on the first step only; later steps read the cache.
            source = layout(memory) if t == 0 else None
            steps.append(mha(layout(queries[:, t:t + 1]), source, kv_cache=cache,
                             mask=source_mask, return_weights=True))
    assert calls == {"k_proj": 1, "v_proj": 1}
    assert cache.length == 7
    dim = 1 if batch_first else 0
    torch.testing.assert_close(torch.cat([o for o, _ in steps], dim=dim), full,
                               atol=1e-12, rtol=0)
    torch.testing.assert_close(torch.cat([w for _, w in steps], dim=2), full_w,
                               atol=1e-12, rtol=0)


def test_filled_static_cache_ignores_a_different_key():
    mha = MultiHeadAttention(16, 2).to(F64)
    memory = torch.randn(1, 4, 16, dtype=F64)
    q = torch.randn(1, 1, 16, dtype=F64)
    cache = StaticKVCache()
    first, _ = mha(q, memory, kv_cache=cache)
    again, _ = mha(q, torch.randn(1, 9, 16, dtype=F64), kv_cache=cache)
    torch.testing.assert_close(again, first, atol=0, rtol=0)


def test_cross_attention_is_not_rotated():
    plain = MultiHeadAttention(16, 2).to(F64)
    rotary = MultiHeadAttention(16, 2, rotary=RotaryEmbedding(8)).to(F64)
    rotary.load_state_dict(plain.state_dict())
    x, memory = torch.randn(1, 3, 16, dtype=F64), torch.randn(1, 5, 16, dtype=F64)
    torch.testing.assert_close(rotary(x, memory)[0], plain(x, memory)[0], atol=0, rtol=0)
    assert not torch.allclose(rotary(x)[0], plain(x)[0])


# --------------------------------------------------------------------------- index_select


def test_index_select_reorders_and_duplicates_rows():
    cache = KVCache(initial_capacity=8)
    k, v = torch.randn(3, 2, 5, 4), torch.randn(3, 2, 5, 6)
    cache.update(k, v)
    index = torch.tensor([2, 0, 0, 1])
    cache.index_select(index)
    assert cache.length == 5 and cache.capacity == 8
    torch.testing.assert_close(cache.keys, k[index], atol=0, rtol=0)
    torch.testing.assert_close(cache.values, v[index], atol=0, rtol=0)
    # Appending after a reorder takes the new batch size and keeps the old entries.
    k_new, v_new = torch.randn(4, 2, 1, 4), torch.randn(4, 2, 1, 6)
    k_all, v_all = cache.update(k_new, v_new)
    torch.testing.assert_close(k_all, torch.cat([k[index], k_new], dim=2), atol=0, rtol=0)
    torch.testing.assert_close(v_all, torch.cat([v[index], v_new], dim=2), atol=0, rtol=0)
    with pytest.raises(ValueError, match="batch size 3"):
        cache.update(torch.randn(3, 2, 1, 4), torch.randn(3, 2, 1, 6))


def test_index_select_then_decoding_matches_reordered_full_forward():
    mha = _decoder(rotary=True)
    x = torch.randn(3, 6, 32, dtype=F64)
    index = torch.tensor([1, 1, 2])
    with torch.no_grad():
        full, _ = mha(x[index], causal=True)
        cache = KVCache(initial_capacity=2)
        mha(x[:, :4], causal=True, kv_cache=cache)
        cache.index_select(index)
        rest, _ = mha(x[index, 4:], causal=True, kv_cache=cache)
    torch.testing.assert_close(rest, full[:, 4:], atol=1e-12, rtol=0)


def test_index_select_on_empty_caches_only_checks_the_index():
    for cache in (KVCache(), StaticKVCache()):
        cache.index_select(torch.tensor([5, 7]))  # nothing cached: no batch to check against
        with pytest.raises(TypeError, match="index"):
            cache.index_select(torch.tensor([0.0]))
    cache = KVCache()
    cache.update(torch.randn(2, 1, 3, 4), torch.randn(2, 1, 3, 4))
    cache.reset()
    cache.index_select(torch.tensor([0, 1, 1]))
    k_all, _ = cache.update(torch.randn(3, 1, 1, 4), torch.randn(3, 1, 1, 4))
    assert k_all.shape == (3, 1, 1, 4)


def test_static_cache_index_select():
    cache = StaticKVCache()
    k, v = torch.randn(2, 1, 5, 4), torch.randn(2, 1, 5, 3)
    cache.set(k, v)
    index = torch.tensor([1, 0, 1])
    cache.index_select(index)
    torch.testing.assert_close(cache.keys, k[index], atol=0, rtol=0)
    torch.testing.assert_close(cache.values, v[index], atol=0, rtol=0)
    assert cache.length == 5


@pytest.mark.parametrize("make", [KVCache, StaticKVCache], ids=["KVCache", "StaticKVCache"])
@pytest.mark.parametrize("index, error, word", [
    (torch.tensor([0, 2]), ValueError, r"in \[0, 2\).*max 2"),
    (torch.tensor([-1]), ValueError, "min -1"),
    (torch.tensor([[0, 1]]), ValueError, "1-D"),
    (torch.tensor([], dtype=torch.long), ValueError, "non-empty"),
    (torch.tensor([0.0, 1.0]), TypeError, "integer"),
    (torch.tensor([True, False]), TypeError, "integer"),
    ([0, 1], TypeError, "torch.Tensor"),
])
def test_index_select_validation(make, index, error, word):
    cache = make()
    k, v = torch.randn(2, 1, 3, 4), torch.randn(2, 1, 3, 4)
    cache.update(k, v) if isinstance(cache, KVCache) else cache.set(k, v)
    with pytest.raises(error, match=word):
        cache.index_select(index)
    torch.testing.assert_close(cache.keys, k, atol=0, rtol=0)  # unchanged
