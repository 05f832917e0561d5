"""MultiHeadAttention: parity with torch.nn.MultiheadAttention, GQA/MQA, QK-norm,
dropout, masks and argument checking."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import attnkit.nn.multihead as multihead_module
from attnkit import masks
from attnkit.nn.kv_cache import KVCache, StaticKVCache
from attnkit.nn.multihead import MultiHeadAttention
from attnkit.nn.positional import RotaryEmbedding

F64 = torch.float64


def _copy_from_torch(ours: MultiHeadAttention, ref: nn.MultiheadAttention) -> None:
    """torch stacks q/k/v in ``in_proj_weight`` (3E, E), or keeps separate
    ``q/k/v_proj_weight`` when kdim/vdim differ from embed_dim; biases are always stacked."""
    with torch.no_grad():
        if ref._qkv_same_embed_dim:
            weights = ref.in_proj_weight.chunk(3)
        else:
            weights = (ref.q_proj_weight, ref.k_proj_weight, ref.v_proj_weight)
        projections = (ours.q_proj, ours.k_proj, ours.v_proj)
        for proj, weight in zip(projections, weights, strict=True):
            proj.weight.copy_(weight)
        if ref.in_proj_bias is not None:
            for proj, bias in zip(projections, ref.in_proj_bias.chunk(3), strict=True):
                proj.bias.copy_(bias)
            ours.out_proj.bias.copy_(ref.out_proj.bias)
        ours.out_proj.weight.copy_(ref.out_proj.weight)


def _pair(E=12, H=3, *, kdim=None, vdim=None, bias=True, batch_first=True):
    ref = nn.MultiheadAttention(E, H, bias=bias, kdim=kdim, vdim=vdim,
                                batch_first=batch_first).to(F64)
    with torch.no_grad():  # torch zero-initializes the biases: make them matter
        for p in ref.parameters():
            p.normal_(0.0, 0.3)
    ours = MultiHeadAttention(E, H, kdim=kdim, vdim=vdim, bias=bias,
                              batch_first=batch_first).to(F64)
    _copy_from_torch(ours, ref)
    return ours, ref


MASK_CASES = ["none", "key_padding", "bool_2d", "bool_per_head", "float_2d", "padding_and_bool"]


@pytest.mark.parametrize("mask_case", MASK_CASES)
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("dims", [(None, None), (5, 7)], ids=["self", "kdim5_vdim7"])
@pytest.mark.parametrize("bias", [True, False])
def test_parity_with_torch_multihead_attention(mask_case, batch_first, dims, bias):
    kdim, vdim = dims
    B, H, E, Lq = 2, 3, 12, 5
    Lk = Lq if kdim is None else 7
    ours, ref = _pair(E, H, kdim=kdim, vdim=vdim, bias=bias, batch_first=batch_first)
    query = torch.randn(B, Lq, E, dtype=F64)
    key = query if kdim is None else torch.randn(B, Lk, kdim, dtype=F64)
    value = query if vdim is None else torch.randn(B, Lk, vdim, dtype=F64)

    torch_kwargs, our_kwargs = {}, {}
    lengths = torch.tensor([Lk, 3])
    ignore_key = torch.arange(Lk)[None, :] >= lengths[:, None]  # torch polarity: True = ignore
    # Random masks that keep key 0 visible, so torch never sees an empty row (it returns NaN).
    blocked = torch.rand(Lq, Lk) < 0.4
    blocked[:, 0] = False
    if mask_case in ("key_padding", "padding_and_bool"):
        torch_kwargs["key_padding_mask"] = ignore_key
        our_kwargs["mask"] = ~ignore_key[:, None, None, :]  # ours: True = may attend
    if mask_case in ("bool_2d", "padding_and_bool"):
        torch_kwargs["attn_mask"] = blocked
        our_kwargs["mask"] = our_kwargs.get("mask", True) & ~blocked
    if mask_case == "bool_per_head":
        per_head = torch.rand(B * H, Lq, Lk) < 0.4
        per_head[:, :, 0] = False
        torch_kwargs["attn_mask"] = per_head  # (B * H, Lq, Lk)
        our_kwargs["mask"] = ~per_head.view(B, H, Lq, Lk)
    if mask_case == "float_2d":
        additive = torch.randn(Lq, Lk, dtype=F64).masked_fill(blocked, float("-inf"))
        torch_kwargs["attn_mask"] = additive
        our_kwargs["mask"] = ~blocked
        finite = additive.masked_fill(blocked, 0.0)
        our_kwargs["score_mod"] = lambda score, b, h, q_idx, kv_idx: score + finite

    def layout(x):
        return x if batch_first else x.transpose(0, 1)

    expected, expected_weights = ref(layout(query), layout(key), layout(value),
                                     need_weights=True, average_attn_weights=False,
                                     **torch_kwargs)
    if kdim is None:
        out, weights = ours(layout(query), return_weights=True, **our_kwargs)
    else:
        out, weights = ours(layout(query), layout(key), layout(value), return_weights=True,
                            **our_kwargs)
    assert out.shape == expected.shape
    assert weights.shape == (B, H, Lq, Lk)
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(weights, expected_weights, atol=1e-12, rtol=1e-10)

    # Without weights the call may take the fused backend; same result.
    fast, none = ours(layout(query), None if kdim is None else layout(key),
                      None if kdim is None else layout(value), **our_kwargs)
    assert none is None
    torch.testing.assert_close(fast, expected, atol=1e-12, rtol=1e-10)


def test_parity_with_torch_causal_self_attention():
    ours, ref = _pair()
    x = torch.randn(2, 6, 12, dtype=F64)
    causal = torch.triu(torch.ones(6, 6, dtype=torch.bool), diagonal=1)  # torch: True = ignore
    expected, _ = ref(x, x, x, attn_mask=causal, need_weights=False)
    out, _ = ours(x, causal=True)
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=1e-10)


def test_key_padding_forms_agree_and_ignore_padded_keys():
    mha = MultiHeadAttention(16, 4).to(F64)
    x = torch.randn(3, 6, 16, dtype=F64)
    lengths = torch.tensor([6, 2, 4])
    valid = torch.arange(6)[None, :] < lengths[:, None]  # (B, Lk)
    by_tensor, w_tensor = mha(x, mask=valid[:, None, None, :], return_weights=True)
    by_mod, w_mod = mha(x, mask=masks.key_padding(lengths), return_weights=True)
    torch.testing.assert_close(by_mod, by_tensor, atol=0, rtol=0)
    torch.testing.assert_close(w_mod, w_tensor, atol=0, rtol=0)
    assert (w_tensor.masked_select(~valid[:, None, None, :]) == 0).all()
    # Changing padded tokens does not change what the real tokens see.
    noisy = torch.where(valid[..., None], x, torch.randn_like(x))
    again, _ = mha(noisy, mask=valid[:, None, None, :])
    torch.testing.assert_close(again[valid], by_tensor[valid], atol=1e-12, rtol=0)


@pytest.mark.parametrize("return_weights", [True, False])
def test_query_row_with_nothing_to_attend_gives_bias_only(return_weights):
    mha = MultiHeadAttention(8, 2)
    x = torch.randn(2, 4, 8)
    mask = torch.ones(2, 1, 4, 4, dtype=torch.bool)
    mask[1, :, 2] = False  # query 2 of batch row 1 sees nothing
    out, weights = mha(x, mask=mask, return_weights=return_weights)
    assert torch.isfinite(out).all()
    # The attention output of that row is zero, so only out_proj's bias remains.
    torch.testing.assert_close(out[1, 2], mha.out_proj.bias, atol=0, rtol=0)
    if return_weights:
        assert (weights[1, :, 2] == 0).all()


def _gqa_as_mha(gqa: MultiHeadAttention) -> MultiHeadAttention:
    """An MHA module whose key/value heads repeat the GQA module's per query group."""
    group = gqa.num_heads // gqa.num_kv_heads
    mha = MultiHeadAttention(gqa.embed_dim, gqa.num_heads, qk_norm=gqa.q_norm is not None,
                             rotary=gqa.rotary).to(F64)
    state = dict(gqa.state_dict())
    for name in ("k_proj", "v_proj"):
        for part in ("weight", "bias"):
            tensor = state[f"{name}.{part}"]
            heads = tensor.unflatten(0, (gqa.num_kv_heads, gqa.head_dim))  # (Hkv, Dh, ...)
            state[f"{name}.{part}"] = heads.repeat_interleave(group, dim=0).flatten(0, 1)
    mha.load_state_dict(state)
    return mha


@pytest.mark.parametrize("num_heads, num_kv_heads", [(4, 2), (4, 1), (6, 3), (6, 2)])
@pytest.mark.parametrize("extras", ["plain", "qk_norm_rotary"])
def test_grouped_query_equals_mha_with_repeated_kv_heads(num_heads, num_kv_heads, extras):
    E = 8 * num_heads
    fancy = extras == "qk_norm_rotary"
    gqa = MultiHeadAttention(E, num_heads, num_kv_heads=num_kv_heads, qk_norm=fancy,
                             rotary=RotaryEmbedding(8) if fancy else None).to(F64)
    if fancy:
        with torch.no_grad():
            gqa.q_norm.weight.uniform_(0.5, 1.5)
            gqa.k_norm.weight.uniform_(0.5, 1.5)
    assert gqa.k_proj.weight.shape == (num_kv_heads * 8, E)
    mha = _gqa_as_mha(gqa)
    x = torch.randn(2, 7, E, dtype=F64)
    out, weights = gqa(x, causal=True, return_weights=True)
    expected, expected_weights = mha(x, causal=True, return_weights=True)
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(weights, expected_weights, atol=1e-12, rtol=0)
    # Heads of one group share keys but not queries: their weights differ.
    assert not torch.allclose(weights[:, 0], weights[:, 1])


def _manual_attention(mha: MultiHeadAttention, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Plain softmax attention with hand-written RMSNorm on q and k (no GQA, no mask)."""
    B, L, E = x.shape
    H, Dh = mha.num_heads, mha.head_dim

    def rms(t, weight):
        return t / torch.sqrt(t.pow(2).mean(-1, keepdim=True) + eps) * weight

    q = rms(mha.q_proj(x).view(B, L, H, Dh), mha.q_norm.weight).transpose(1, 2)  # (B,H,L,Dh)
    k = rms(mha.k_proj(x).view(B, L, H, Dh), mha.k_norm.weight).transpose(1, 2)  # (B,H,L,Dh)
    v = mha.v_proj(x).view(B, L, H, Dh).transpose(1, 2)  # (B, H, L, Dh)
    weights = torch.softmax(q @ k.transpose(-2, -1) / Dh ** 0.5, dim=-1)  # (B, H, L, L)
    out = (weights @ v).transpose(1, 2).reshape(B, L, E)  # (B, L, E)
    return mha.out_proj(out)


def test_qk_norm_matches_hand_written_rmsnorm_and_changes_output():
    normed = MultiHeadAttention(16, 2, qk_norm=True).to(F64)
    with torch.no_grad():
        normed.q_norm.weight.uniform_(0.5, 2.0)
        normed.k_norm.weight.uniform_(0.5, 2.0)
    plain = MultiHeadAttention(16, 2).to(F64)
    plain.load_state_dict(normed.state_dict(), strict=False)
    x = 3.0 * torch.randn(2, 5, 16, dtype=F64)
    out, _ = normed(x)
    expected = _manual_attention(normed, x, eps=torch.finfo(F64).eps)
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=0)
    assert not torch.allclose(out, plain(x)[0], atol=1e-3)
    out.sum().backward()
    assert normed.q_norm.weight.grad.abs().sum() > 0 and normed.k_norm.weight.grad.abs().sum() > 0


def test_qk_norm_output_is_scale_invariant_in_the_qk_projections():
    mha = MultiHeadAttention(16, 4, qk_norm=True, bias=False).to(F64)
    x = torch.randn(1, 6, 16, dtype=F64)
    before, _ = mha(x)
    with torch.no_grad():
        mha.q_proj.weight.mul_(7.0)
        mha.k_proj.weight.mul_(0.1)
    after, _ = mha(x)
    torch.testing.assert_close(after, before, atol=1e-6, rtol=0)  # eps shifts it slightly


def test_dropout_only_in_training(monkeypatch):
    mha = MultiHeadAttention(16, 4, dropout=0.5)
    clean = MultiHeadAttention(16, 4)
    clean.load_state_dict(mha.state_dict())
    x = torch.randn(2, 6, 16)
    mha.eval()
    evaluated, _ = mha(x)
    torch.testing.assert_close(evaluated, clean(x)[0], atol=0, rtol=0)
    torch.testing.assert_close(mha(x)[0], evaluated, atol=0, rtol=0)
    mha.train()
    trained_a, _ = mha(x)
    trained_b, _ = mha(x)
    assert not torch.allclose(trained_a, evaluated)
    assert not torch.allclose(trained_a, trained_b)

    seen = []
    real = multihead_module.attention

    def spy(*args, **kwargs):
        seen.append(kwargs["dropout_p"])
        return real(*args, **kwargs)

    monkeypatch.setattr(multihead_module, "attention", spy)
    mha.train()
    mha(x)
    mha.eval()
    mha(x)
    assert seen == [0.5, 0.0]


def test_batch_first_false_is_a_transpose():
    first = MultiHeadAttention(12, 3)
    second = MultiHeadAttention(12, 3, batch_first=False)
    second.load_state_dict(first.state_dict())
    x = torch.randn(2, 5, 12)
    memory = torch.randn(2, 4, 12)
    out, w = first(x, memory, return_weights=True)
    out_t, w_t = second(x.transpose(0, 1), memory.transpose(0, 1), return_weights=True)
    assert out_t.shape == (5, 2, 12) and w_t.shape == (2, 3, 5, 4)
    torch.testing.assert_close(out_t.transpose(0, 1), out, atol=1e-6, rtol=0)
    torch.testing.assert_close(w_t, w, atol=1e-6, rtol=0)


def test_value_defaults_to_key():
    mha = MultiHeadAttention(8, 2, kdim=5, vdim=5)
    x, memory = torch.randn(2, 3, 8), torch.randn(2, 4, 5)
    torch.testing.assert_close(mha(x, memory)[0], mha(x, memory, memory)[0], atol=0, rtol=0)


def test_gradients_reach_every_projection():
    mha = MultiHeadAttention(8, 2, num_kv_heads=1, qk_norm=True, rotary=RotaryEmbedding(4))
    mha(torch.randn(2, 5, 8), causal=True)[0].square().sum().backward()
    for name, p in mha.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("kwargs, error, word", [
    ({"embed_dim": 30, "num_heads": 4}, ValueError, "num_heads"),
    ({"embed_dim": 32, "num_heads": 0}, ValueError, "num_heads"),
    ({"embed_dim": True, "num_heads": 1}, TypeError, "embed_dim"),
    ({"embed_dim": 32, "num_heads": 4, "num_kv_heads": 3}, ValueError, "num_kv_heads"),
    ({"embed_dim": 32, "num_heads": 4, "num_kv_heads": 0}, ValueError, "num_kv_heads"),
    ({"embed_dim": 32, "num_heads": 4, "kdim": 0}, ValueError, "kdim"),
    ({"embed_dim": 32, "num_heads": 4, "vdim": 2.5}, TypeError, "vdim"),
    ({"embed_dim": 32, "num_heads": 4, "dropout": 1.0}, ValueError, "dropout"),
    ({"embed_dim": 32, "num_heads": 4, "dropout": "0.1"}, TypeError, "dropout"),
    ({"embed_dim": 32, "num_heads": 4, "bias": 1}, TypeError, "bias"),
    ({"embed_dim": 32, "num_heads": 4, "qk_norm": "yes"}, TypeError, "qk_norm"),
    ({"embed_dim": 32, "num_heads": 4, "batch_first": None}, TypeError, "batch_first"),
    ({"embed_dim": 32, "num_heads": 4, "backend": "flash"}, ValueError, "backend"),
    ({"embed_dim": 32, "num_heads": 4, "rotary": RotaryEmbedding(4)}, ValueError, "rotary"),
    ({"embed_dim": 32, "num_heads": 4, "rotary": "rope"}, TypeError, "rotary"),
])
def test_constructor_errors_name_the_argument(kwargs, error, word):
    with pytest.raises(error, match=word):
        MultiHeadAttention(**kwargs)


def _forward_errors():
    x = torch.randn(2, 3, 8)
    return [
        ("query 2-D", lambda m: m(torch.randn(3, 8)), ValueError, "query"),
        ("query features", lambda m: m(torch.randn(2, 3, 7)), ValueError, "query"),
        ("query type", lambda m: m(x.numpy()), TypeError, "query"),
        ("key features", lambda m: m(x, torch.randn(2, 4, 6)), ValueError, "key"),
        ("value length", lambda m: m(x, torch.randn(2, 4, 8), torch.randn(2, 5, 8)),
         ValueError, "value"),
        ("key batch", lambda m: m(x, torch.randn(3, 4, 8)), ValueError, "batch size"),
        ("value without key", lambda m: m(x, None, torch.randn(2, 3, 8)), ValueError, "value"),
        ("cache type", lambda m: m(x, kv_cache={}), TypeError, "kv_cache"),
        ("KVCache in cross", lambda m: m(x, x, kv_cache=KVCache()), ValueError, "kv_cache"),
        ("empty static cache", lambda m: m(x, kv_cache=StaticKVCache()), ValueError, "key"),
        ("mask shape", lambda m: m(x, mask=torch.ones(2, 1, 3, 5, dtype=torch.bool)),
         ValueError, "mask"),
        ("float mask", lambda m: m(x, mask=torch.zeros(3, 3)), TypeError, "mask"),
        ("ambiguous causal", lambda m: m(x, torch.randn(2, 5, 8), causal=True),
         ValueError, "causal"),
    ]


@pytest.mark.parametrize("case", _forward_errors(), ids=lambda case: case[0])
def test_forward_errors_name_the_argument(case):
    _, call, error, word = case
    with pytest.raises(error, match=word):
        call(MultiHeadAttention(8, 2))


def test_self_attention_needs_matching_kdim():
    mha = MultiHeadAttention(8, 2, kdim=4)
    with pytest.raises(ValueError, match="kdim"):
        mha(torch.randn(2, 3, 8))


def test_static_cache_batch_mismatch():
    mha = MultiHeadAttention(8, 2)
    cache = StaticKVCache()
    mha(torch.randn(2, 1, 8), torch.randn(2, 5, 8), kv_cache=cache)
    with pytest.raises(ValueError, match="kv_cache holds batch size 2"):
        mha(torch.randn(3, 1, 8), kv_cache=cache)


@pytest.mark.parametrize("kv_heads,qk_norm,bias", [(4, False, True), (2, True, False),
                                                   (1, False, True)])
def test_fused_self_projection_equals_three_projections(kv_heads, qk_norm, bias):
    """Self-attention projects q, k, v with one matmul; with a hook on a projection
    (which must see its own call) it uses the three modules. Same outputs and grads."""
    torch.manual_seed(0)
    mha = MultiHeadAttention(32, 4, num_kv_heads=kv_heads, qk_norm=qk_norm, bias=bias,
                             rotary=RotaryEmbedding(8))
    x = torch.randn(2, 7, 32, dtype=torch.float32)
    assert mha._fused()
    fused, _ = mha(x, causal=True)
    fused.square().sum().backward()
    grads = [p.grad.clone() for p in mha.parameters()]
    mha.zero_grad()
    seen = []
    handle = mha.k_proj.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    assert not mha._fused()
    separate, _ = mha(x, causal=True)
    separate.square().sum().backward()
    handle.remove()
    assert seen == [torch.Size([2, 7, 8 * kv_heads])]
    torch.testing.assert_close(fused, separate, atol=1e-6, rtol=0)
    for g, p in zip(grads, mha.parameters(), strict=True):
        torch.testing.assert_close(g, p.grad, atol=1e-5, rtol=0)


@pytest.mark.parametrize("case", _forward_errors(), ids=lambda case: case[0])
def test_forward_errors_are_raised_after_valid_calls_too(case):
    """The hot path checks a valid query with attribute reads and reuses attention()'s
    cached validation; a bad call after good ones must still fail with the argument's name."""
    _, call, error, word = case
    mha = MultiHeadAttention(8, 2).train()
    for _ in range(2):
        mha(torch.randn(2, 3, 8), causal=True)
        mha(torch.randn(2, 3, 8), torch.randn(2, 3, 8))
    with pytest.raises(error, match=word):
        call(mha)


def test_query_dtype_and_return_weights_type_are_checked_after_valid_calls():
    mha = MultiHeadAttention(8, 2)
    x = torch.randn(2, 3, 8)
    mha(x, causal=True)
    mha(x, causal=True)
    with pytest.raises(TypeError, match="query has dtype torch.float64"):
        mha(x.double(), causal=True)
    with pytest.raises(TypeError, match="return_weights must be a bool"):
        mha(x, causal=True, return_weights=1)
    with pytest.raises(TypeError, match="query must be a torch.Tensor"):
        mha([[0.0] * 8], causal=True)
    # a tensor subclass takes the full check and passes it
    out, _ = mha(torch.nn.Parameter(x), causal=True)
    assert torch.equal(out, mha(x, causal=True)[0])
