"""GPT with ``mlp=False``: attention-only blocks (the induction-head experiment's models)."""

from __future__ import annotations

import pytest
import torch

from attnkit.interp.capture import attention_modules
from attnkit.models.gpt import GPT, AttentionOnlyBlock, GPTConfig

F64 = torch.float64
VOCAB = 19


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _model(**overrides) -> GPT:
    fields = dict(vocab_size=VOCAB, context_len=16, num_layers=2, num_heads=4, d_model=16,
                  ffn_dim=24, mlp=False)
    torch.manual_seed(0)
    return GPT(GPTConfig(**{**fields, **overrides})).to(F64).eval()


def test_blocks_have_no_mlp_and_keep_the_attention_paths():
    model = _model()
    with_mlp = _model(mlp=True)
    assert all(isinstance(block, AttentionOnlyBlock) for block in model.blocks)
    assert not any(hasattr(block, "ffn") or hasattr(block, "norm2") for block in model.blocks)
    assert list(attention_modules(model)) == ["blocks.0.self_attn", "blocks.1.self_attn"]
    mlp_params = sum(p.numel() for block in with_mlp.blocks
                     for part in (block.ffn, block.norm2) for p in part.parameters())
    assert with_mlp.num_parameters() - model.num_parameters() == mlp_params


@pytest.mark.parametrize("positional", ["learned", "rotary"])
def test_forward_is_the_residual_sum_of_attention_outputs(positional):
    model = _model(positional=positional)
    idx = torch.randint(0, VOCAB, (3, 11))
    x = model.embed(idx)
    for block in model.blocks:
        x = x + block.self_attn(block.norm1(x), causal=True)[0]
    expected = model.lm_head(model.norm(x))
    torch.testing.assert_close(model(idx), expected, rtol=1e-12, atol=1e-12)


def test_causal_and_cached_decoding_match_the_full_forward():
    model = _model()
    idx = torch.randint(0, VOCAB, (2, 12))
    full = model(idx)
    changed = idx.clone()
    changed[:, 7:] = (changed[:, 7:] + 1) % VOCAB
    torch.testing.assert_close(model(changed)[:, :7], full[:, :7], rtol=0, atol=0)
    caches = model.make_kv_caches()
    parts = [model(idx[:, :5], kv_caches=caches), model(idx[:, 5:], kv_caches=caches)]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=1e-10, atol=1e-10)


def test_output_projections_get_the_residual_init():
    model = GPT(GPTConfig(vocab_size=VOCAB, num_layers=8, num_heads=4, d_model=64,
                          context_len=8, mlp=False))
    stds = [float(block.self_attn.out_proj.weight.detach().std()) for block in model.blocks]
    assert all(0.0045 < s < 0.0055 for s in stds)  # 0.02 / sqrt(2 * 8) = 0.005; 4096 weights


def test_mlp_flag_is_checked_and_round_trips():
    with pytest.raises(TypeError, match="mlp"):
        GPTConfig(vocab_size=VOCAB, mlp="no")
    config = GPTConfig(vocab_size=VOCAB, mlp=False)
    assert GPTConfig(**config.to_dict()) == config
