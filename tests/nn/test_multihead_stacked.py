"""MultiHeadAttention's stacked input projection: one ``in_proj_weight``/``in_proj_bias``
parameter when ``kdim == vdim == embed_dim``, viewed as ``q_proj``/``k_proj``/``v_proj``,
saved and loaded under the three separate names."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from attnkit.nn.kv_cache import StaticKVCache
from attnkit.nn.multihead import MultiHeadAttention

F64 = torch.float64
NAMES = ["in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"]
KEYS = ["q_proj.weight", "q_proj.bias", "k_proj.weight", "k_proj.bias", "v_proj.weight",
        "v_proj.bias", "out_proj.weight", "out_proj.bias"]


def _separate_state(E: int, Hq: int, Hkv: int, seed: int) -> dict[str, torch.Tensor]:
    """What the former layout (four nn.Linear) saved, drawn from ``seed``."""
    torch.manual_seed(seed)
    Dh = E // Hq
    layers = {"q_proj": nn.Linear(E, Hq * Dh), "k_proj": nn.Linear(E, Hkv * Dh),
              "v_proj": nn.Linear(E, Hkv * Dh), "out_proj": nn.Linear(Hq * Dh, E)}
    return {f"{name}.{part}": getattr(layer, part).detach().clone()
            for name, layer in layers.items() for part in ("weight", "bias")}


@pytest.mark.parametrize("kv_heads", [4, 1])
def test_one_parameter_for_the_three_projections_and_the_old_state_dict_names(kv_heads):
    mha = MultiHeadAttention(32, 4, num_kv_heads=kv_heads)
    assert [name for name, _ in mha.named_parameters()] == NAMES
    assert mha.in_proj_weight.shape == (32 + 2 * 8 * kv_heads, 32)
    state = mha.state_dict()
    assert list(state) == KEYS
    assert state["k_proj.weight"].shape == (8 * kv_heads, 32)
    assert isinstance(mha.k_proj, nn.Linear) and mha.k_proj.out_features == 8 * kv_heads
    # The state and the views share the parameter's memory (as a state_dict does).
    assert state["v_proj.bias"].data_ptr() == mha.v_proj.bias.data_ptr()
    no_bias = MultiHeadAttention(32, 4, num_kv_heads=kv_heads, bias=False)
    assert list(no_bias.state_dict()) == [k for k in KEYS if k.endswith("weight")]
    cross = MultiHeadAttention(32, 4, kdim=12, vdim=12)  # widths differ: separate Linears
    assert cross.in_proj_weight is None and list(cross.state_dict()) == KEYS


@pytest.mark.parametrize("kv_heads", [4, 2])
def test_seeded_weights_are_those_of_three_separate_linears(kv_heads):
    """The rows are drawn in the order the former four nn.Linear drew them."""
    want = _separate_state(32, 4, kv_heads, seed=3)
    torch.manual_seed(3)
    mha = MultiHeadAttention(32, 4, num_kv_heads=kv_heads)
    for key, value in mha.state_dict().items():
        assert torch.equal(value, want[key]), key


def test_state_of_the_former_layout_loads_and_round_trips():
    want = _separate_state(32, 4, 2, seed=5)
    mha = MultiHeadAttention(32, 4, num_kv_heads=2)
    result = mha.load_state_dict(want)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert torch.equal(mha.in_proj_weight, torch.cat([want[f"{n}_proj.weight"] for n in "qkv"]))
    assert torch.equal(mha.in_proj_bias, torch.cat([want[f"{n}_proj.bias"] for n in "qkv"]))
    other = MultiHeadAttention(32, 4, num_kv_heads=2)
    other.load_state_dict(mha.state_dict())
    x = torch.randn(2, 5, 32)
    torch.testing.assert_close(other(x)[0], mha(x)[0], atol=0, rtol=0)
    # assign=True: the loaded tensors become the parameter; the views follow it.
    assigned = MultiHeadAttention(32, 4, num_kv_heads=2)
    assigned.load_state_dict(mha.state_dict(), assign=True)
    assert torch.equal(assigned.q_proj.weight, want["q_proj.weight"])
    torch.testing.assert_close(assigned(x)[0], mha(x)[0], atol=0, rtol=0)


def test_missing_and_misshapen_pieces_are_reported_by_their_own_names():
    mha = MultiHeadAttention(32, 4, num_kv_heads=2)
    before = mha.in_proj_weight.detach().clone()
    state = _separate_state(32, 4, 2, seed=1)
    del state["k_proj.bias"]
    result = mha.load_state_dict(state, strict=False)
    assert result.missing_keys == ["k_proj.bias"] and result.unexpected_keys == []
    assert torch.equal(mha.k_proj.weight, state["k_proj.weight"])
    state["v_proj.weight"] = torch.zeros(3, 32)
    with pytest.raises(RuntimeError, match=r"size mismatch for v_proj\.weight"):
        MultiHeadAttention(32, 4, num_kv_heads=2).load_state_dict(state)
    state = _separate_state(32, 4, 2, seed=1)
    state["q_proj.extra"] = torch.zeros(1)
    with pytest.raises(RuntimeError, match=r"Unexpected key\(s\).*q_proj\.extra"):
        MultiHeadAttention(32, 4, num_kv_heads=2).load_state_dict(state)
    nothing = MultiHeadAttention(32, 4, num_kv_heads=2)
    nothing.in_proj_weight.data.copy_(before)
    result = nothing.load_state_dict({}, strict=False)
    assert sorted(result.missing_keys) == sorted(KEYS)
    assert torch.equal(nothing.in_proj_weight, before)


def test_views_edit_the_parameter_and_follow_conversion_and_copies():
    mha = MultiHeadAttention(16, 2)
    x = torch.randn(1, 4, 16)
    with torch.no_grad():
        mha.v_proj.weight.zero_()
        mha.v_proj.bias.fill_(1.0)
        mha.out_proj.weight.copy_(torch.eye(16))
        mha.out_proj.bias.zero_()
    torch.testing.assert_close(mha(x)[0], torch.ones(1, 4, 16))  # every value is 1
    double = mha.to(F64)
    assert double.q_proj.weight.dtype == F64 and double(x.double())[0].dtype == F64
    twin = copy.deepcopy(mha)
    with torch.no_grad():
        twin.in_proj_weight.zero_()
    assert twin.q_proj.weight.abs().sum() == 0 and mha.q_proj.weight.abs().sum() > 0
    swapped = torch.func.functional_call(
        mha, {"in_proj_weight": torch.zeros_like(mha.in_proj_weight)}, (x.double(),))
    torch.testing.assert_close(swapped[0], torch.ones(1, 4, 16, dtype=F64))


@pytest.mark.parametrize("same_source", [True, False])
def test_cross_attention_projections_equal_the_separate_calls(same_source):
    """Cross-attention with ``key is value`` projects both with one matmul (rows of the
    stacked weight); a forward hook on k_proj forces the separate calls: same result."""
    torch.manual_seed(0)
    mha = MultiHeadAttention(32, 4, num_kv_heads=2).to(F64)
    query, memory = torch.randn(2, 3, 32, dtype=F64), torch.randn(2, 6, 32, dtype=F64)
    value = memory if same_source else memory.clone()
    fused, _ = mha(query, memory, value)
    cache = StaticKVCache()
    mha(query, memory, value, kv_cache=cache)
    seen = []
    handle = mha.k_proj.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    separate, _ = mha(query, memory, value)
    handle.remove()
    assert seen == [torch.Size([2, 6, 16])]
    torch.testing.assert_close(fused, separate, atol=1e-12, rtol=0)
    k = mha.k_proj(memory).view(2, 6, 2, 8).transpose(1, 2)  # (B, Hkv, Lk, Dh)
    torch.testing.assert_close(cache.keys, k, atol=1e-12, rtol=0)


def test_a_replaced_projection_keeps_its_own_parameters():
    """Replacing q_proj by another module (an adapter, say): it runs instead of the rows,
    and the state dict holds its parameters rather than the unused rows."""
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 2).to(F64)
    mha.q_proj = nn.Linear(16, 16).to(F64)
    assert not mha._fused()
    x = torch.randn(1, 3, 16, dtype=F64)
    q = mha.q_proj(x).view(1, 3, 2, 8).transpose(1, 2)
    k = mha.k_proj(x).view(1, 3, 2, 8).transpose(1, 2)
    v = mha.v_proj(x).view(1, 3, 2, 8).transpose(1, 2)
    weights = (q @ k.transpose(-1, -2) / 8 ** 0.5).softmax(-1)
    want = mha.out_proj((weights @ v).transpose(1, 2).reshape(1, 3, 16))
    torch.testing.assert_close(mha(x)[0], want, atol=1e-12, rtol=0)
    state = mha.state_dict()
    assert torch.equal(state["q_proj.weight"], mha.q_proj.weight)
    twin = MultiHeadAttention(16, 2).to(F64)
    twin.q_proj = nn.Linear(16, 16).to(F64)
    twin.load_state_dict(state)
    torch.testing.assert_close(twin(x)[0], mha(x)[0], atol=0, rtol=0)
