"""capture(): exact weights from fused paths, untouched outputs, stable names, head edits."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from attnkit.functional.attention import attention
from attnkit.interp.capture import attention_modules, capture
from attnkit.kernels import BACKENDS
from attnkit.models import (
    GPT,
    BertConfig,
    BertEncoder,
    GPTConfig,
    RNNSeq2SeqConfig,
    Transformer,
    TransformerConfig,
    build_rnn_seq2seq,
)
from attnkit.nn import MultiHeadAttention
from attnkit.testing import assert_oracle_close

VOCAB = 23


def _gpt(**options) -> GPT:
    torch.manual_seed(0)
    config = dict(vocab_size=VOCAB, context_len=16, num_layers=2, num_heads=4, d_model=32)
    return GPT(GPTConfig(**(config | options))).eval()


def _set_backend(model: torch.nn.Module, backend: str) -> None:
    for module in model.modules():
        if isinstance(module, MultiHeadAttention):
            module.backend = backend


def _tokens(batch: int = 2, length: int = 12, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


def _reference_weights(model: torch.nn.Module, run) -> dict[str, torch.Tensor]:
    """The reference backend's weights for the q/k each module used (an independent path:
    attention(..., backend="reference", return_weights=True), not attention_weights)."""
    found, handles = {}, []
    for name, module in attention_modules(model).items():
        def hook(module, call, out, name=name):
            found[name] = attention(call.q, call.k, call.v, mask=call.mask, causal=call.causal,
                                    score_mod=call.score_mod, return_weights=True,
                                    backend="reference")[1]
        handles.append(module.register_head_hook(hook))
    try:
        with torch.no_grad():
            run(model)
    finally:
        for handle in handles:
            handle.remove()
    return found


@pytest.mark.parametrize("backend", ["auto", "sdpa", "tiled"])
def test_gpt_outputs_bitwise_unchanged_and_weights_match_reference(backend):
    model = _gpt(num_kv_heads=2, positional="rotary")
    _set_backend(model, backend)
    idx = _tokens()
    with torch.no_grad():
        plain = model(idx)
        with capture(model) as cap:
            captured = model(idx)
    assert torch.equal(plain, captured)
    assert cap.names == ["blocks.0.self_attn", "blocks.1.self_attn"]

    reference = _reference_weights(model, lambda m: m(idx))
    golden_model = copy.deepcopy(model).double()
    golden = _reference_weights(golden_model, lambda m: m(idx))
    for name in cap.names:
        assert_oracle_close(cap.weights(name), reference[name], golden[name], what=name)


def test_capture_keeps_the_fused_backend(monkeypatch):
    model = _gpt()
    calls = []
    reference = BACKENDS["reference"]

    def spy(q, k, v, call):
        calls.append(q.shape)
        return reference.run(q, k, v, call)

    monkeypatch.setitem(BACKENDS, "reference", dataclasses.replace(reference, run=spy))
    with torch.no_grad(), capture(model) as cap:
        model(_tokens())
    assert calls == []  # the model never fell back to the materializing backend
    assert cap.weights("blocks.1.self_attn").shape == (2, 4, 12, 12)


def test_queries_keys_values_and_head_outputs_match_a_manual_forward():
    model = _gpt().double()
    idx = _tokens(1, 9)
    with torch.no_grad(), capture(model, layers=[0]) as cap:
        model(idx)
    record = cap.records["blocks.0.self_attn"][0]
    block = model.blocks[0]
    attn = block.self_attn
    with torch.no_grad():
        x = block.norm1(model.embed(idx))  # (1, L, E)
        split = lambda t: t.view(1, 9, 4, 8).transpose(1, 2)  # noqa: E731  (1, H, L, Dh)
        q, k, v = (split(proj(x)) for proj in (attn.q_proj, attn.k_proj, attn.v_proj))
        scores = q @ k.transpose(-1, -2) / 8 ** 0.5
        scores = scores.masked_fill(torch.ones(9, 9, dtype=torch.bool).triu(1), float("-inf"))
        weights = scores.softmax(-1)
    torch.testing.assert_close(record.q, q)
    torch.testing.assert_close(record.k, k)
    torch.testing.assert_close(record.v, v)
    torch.testing.assert_close(record.weights, weights)
    torch.testing.assert_close(record.out, weights @ v)


def test_heads_and_rows_select_and_grouped_query_keys_follow_their_query_head():
    model = _gpt(num_kv_heads=2)
    idx = _tokens()
    with torch.no_grad(), capture(model) as full:
        model(idx)
    with torch.no_grad(), capture(model, layers="blocks.1.self_attn", heads=[3, 0],
                                  rows=[0, 5, 99]) as part:
        model(idx)
    assert part.names == ["blocks.1.self_attn"]
    record = part.records["blocks.1.self_attn"][0]
    whole = full.records["blocks.1.self_attn"][0]
    assert record.heads == (3, 0) and record.rows == (0, 5)  # row 99 is past L = 12
    torch.testing.assert_close(record.weights, whole.weights[:, [3, 0]][:, :, [0, 5]])
    torch.testing.assert_close(record.k, whole.k[:, [3, 0]])
    # query heads 2 and 3 share key/value head 1
    assert torch.equal(whole.k[:, 2], whole.k[:, 3]) and torch.equal(whole.v[:, 2], whole.v[:, 3])


def test_ablate_equals_zeroing_the_heads_output_projection_columns():
    model = _gpt()
    idx = _tokens()
    with torch.no_grad(), capture(model) as cap:
        cap.ablate("blocks.1.self_attn", 2)
        ablated = model(idx)
    edited = copy.deepcopy(model)
    with torch.no_grad():
        edited.blocks[1].self_attn.out_proj.weight[:, 16:24] = 0
        expected = edited(idx)
        plain = model(idx)
    torch.testing.assert_close(ablated, expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(ablated, plain)
    assert torch.equal(cap.records["blocks.1.self_attn"][0].out[:, 2], torch.zeros(2, 12, 8))


def test_replace_with_a_callable_or_a_patched_activation():
    model = _gpt()
    idx, other = _tokens(seed=1), _tokens(seed=2)
    with torch.no_grad(), capture(model) as cap:
        cap.replace("blocks.0.self_attn", 1, lambda head: 3 * head)
        tripled = model(idx)
    edited = copy.deepcopy(model)
    with torch.no_grad():
        edited.blocks[0].self_attn.out_proj.weight[:, 8:16] *= 3
        torch.testing.assert_close(tripled, edited(idx), rtol=1e-5, atol=1e-5)

    # activation patching: every head of layer 0 from another input gives that input's
    # layer-0 attention output, so layer 1 sees exactly the other run's attention write
    with torch.no_grad(), capture(model, layers=[0]) as source:
        model(other)
    patch = source.records["blocks.0.self_attn"][0].out  # (B, H, L, Dh)
    with torch.no_grad(), capture(model, layers=[0]) as cap:
        for head in range(4):
            cap.replace("blocks.0.self_attn", head, patch[:, head])
        model(idx)
    assert torch.equal(cap.records["blocks.0.self_attn"][0].out, patch)
    with torch.no_grad(), capture(model) as cap:
        cap.replace("blocks.0.self_attn", 0, torch.zeros(1))
        cap.reset_edits()
        assert torch.equal(model(idx), model(idx))


def test_kv_cache_decoding_stacks_to_the_full_forward_pattern():
    model = _gpt()
    prompt = _tokens(1, 5)
    with torch.no_grad(), capture(model) as steps:
        out = model.generate(prompt, 6, top_k=1)
    with torch.no_grad(), capture(model) as full:
        model(out[:, :-1])
    for name in full.names:
        assert len(steps.records[name]) == 6  # the prompt, then one call per new token
        torch.testing.assert_close(steps.weights(name), full.weights(name))


def test_transformer_encoder_decoder_names_and_cross_attention_padding():
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(src_vocab_size=VOCAB, tgt_vocab_size=VOCAB,
                                          d_model=16, num_heads=2, num_encoder_layers=1,
                                          num_decoder_layers=1, ffn_dim=32)).eval()
    src, lengths = _tokens(2, 7), torch.tensor([7, 4])
    tgt = _tokens(2, 5, seed=3)
    with torch.no_grad():
        plain = model(src, lengths, tgt)
        with capture(model) as cap:
            captured = model(src, lengths, tgt)
    assert torch.equal(plain, captured)
    assert cap.names == ["encoder.0.self_attn", "decoder.0.self_attn", "decoder.0.cross_attn"]
    cross = cap.weights("decoder.0.cross_attn")  # (B, H, T, S)
    assert cross.shape == (2, 2, 5, 7)
    assert torch.equal(cross[1, :, :, 4:], torch.zeros(2, 5, 3))  # padded source keys
    torch.testing.assert_close(cross.sum(-1), torch.ones(2, 2, 5))
    assert torch.equal(cap.weights("decoder.0.self_attn")[0, 0].triu(1), torch.zeros(5, 5))


def test_bert_encoder_outputs_unchanged():
    torch.manual_seed(0)
    model = BertEncoder(BertConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2,
                                   num_attention_heads=2, intermediate_size=32,
                                   max_position_embeddings=16)).eval()
    ids = _tokens(2, 9)
    with torch.no_grad():
        plain = model(ids).last_hidden_state
        with capture(model) as cap:
            captured = model(ids).last_hidden_state
    assert torch.equal(plain, captured)
    assert cap.names == ["layers.0.attention", "layers.1.attention"]


@pytest.mark.parametrize("kind", ["bahdanau", "luong-dot"])
def test_rnn_seq2seq_alignment_equals_decode_steps(kind):
    torch.manual_seed(0)
    model = build_rnn_seq2seq(RNNSeq2SeqConfig(VOCAB, VOCAB, embed_dim=8, hidden_dim=8),
                              kind).eval()
    src, lengths = _tokens(2, 6), torch.tensor([6, 3])
    tgt = _tokens(2, 4, seed=5)
    with torch.no_grad():
        plain = model(src, lengths, tgt)
        with capture(model) as cap:
            captured = model(src, lengths, tgt)
        state, steps = model.start_decoding(src, lengths), []
        for t in range(4):
            _, state, weights = model.decode_step(tgt[:, t], state, return_alignment=True)
            steps.append(weights)
    assert torch.equal(plain, captured)
    assert cap.names == ["attention"]
    torch.testing.assert_close(cap.weights("attention"), torch.stack(steps, 1)[:, None])
    record = cap.records["attention"][0]
    assert record.q.shape[:2] == (2, 1) and record.k.shape == (2, 1, 6, 8)

    with torch.no_grad(), capture(model) as cap:
        cap.ablate("attention", 0)
        ablated = model(src, lengths, tgt)
    assert not torch.allclose(ablated, plain)
    assert all(torch.equal(r.out, torch.zeros_like(r.out)) for r in cap.records["attention"])


def test_hooks_are_removed_after_the_block_even_on_error():
    model = _gpt()
    with pytest.raises(RuntimeError, match="boom"), capture(model):
        raise RuntimeError("boom")
    assert all(not m._head_hooks for m in model.modules() if isinstance(m, MultiHeadAttention))


def test_bad_arguments_name_the_argument():
    model = _gpt()
    with pytest.raises(ValueError, match="layers"), capture(model, layers="blocks.9"):
        pass
    with pytest.raises(ValueError, match="layers"), capture(model, layers=[5]):
        pass
    with pytest.raises(ValueError, match="heads"), capture(model, heads=[4]):
        pass
    with pytest.raises(TypeError, match="rows"), capture(model, rows=[1.5]):
        pass
    with pytest.raises(ValueError, match="store"), capture(model, store=("pattern",)):
        pass
    with pytest.raises(ValueError, match="no attnkit attention"), \
            capture(torch.nn.Linear(2, 2)):
        pass
    with capture(model) as cap:
        with pytest.raises(ValueError, match="head"):
            cap.ablate("blocks.0.self_attn", 4)
        with pytest.raises(ValueError, match="name"):
            cap.ablate("blocks.0", 0)
        with pytest.raises(TypeError, match="value"):
            cap.replace("blocks.0.self_attn", 0, 3.0)
        with pytest.raises(ValueError, match="no weights"):
            cap.weights("blocks.0.self_attn")
