"""The entry-point contract of the models: bad input raises ValueError/TypeError naming the
argument (never an IndexError or RuntimeError from deep inside torch), one source rule for
every seq2seq model and the decoders, and padding passed as a structured mask."""

from __future__ import annotations

import math

import pytest
import torch

import attnkit.nn.multihead as multihead
from attnkit import masks
from attnkit.models import (
    GPT,
    BertConfig,
    BertEncoder,
    GPTConfig,
    RNNSeq2SeqConfig,
    Transformer,
    TransformerConfig,
    build_rnn_seq2seq,
    mean_pool,
)
from attnkit.nn.seq2seq import source_padding_mask
from attnkit.train.decoding import beam_search, greedy_decode
from attnkit.train.losses import lm_loss_fn, seq2seq_loss_fn, token_cross_entropy

SRC_VOCAB, TGT_VOCAB = 11, 13


def _transformer(**fields) -> Transformer:
    torch.manual_seed(0)
    config = dict(d_model=16, num_heads=2, num_encoder_layers=2, num_decoder_layers=2,
                  ffn_dim=32, dropout=0.0, max_len=32)
    return Transformer(TransformerConfig(SRC_VOCAB, TGT_VOCAB, **{**config, **fields})).eval()


def _rnn():
    torch.manual_seed(0)
    return build_rnn_seq2seq(RNNSeq2SeqConfig(SRC_VOCAB, TGT_VOCAB, embed_dim=8,
                                              hidden_dim=8)).eval()


def _gpt() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=SRC_VOCAB, context_len=8, num_layers=1, num_heads=2,
                         d_model=8)).eval()


def _bert() -> BertEncoder:
    torch.manual_seed(0)
    return BertEncoder(BertConfig(vocab_size=SRC_VOCAB, hidden_size=8, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=16,
                                  max_position_embeddings=8)).eval()


def _batch():
    src = torch.tensor([[3, 4, 5, 6, 7], [8, 3, 0, 0, 0], [4, 5, 6, 0, 0]])
    return src, torch.tensor([5, 2, 3]), torch.tensor([[1, 5, 6], [1, 7, 8], [1, 4, 4]])


SEQ2SEQ = {"transformer": _transformer, "rnn": _rnn}


# --------------------------------------------------------------------------- token ids


@pytest.mark.parametrize("shift, low, high", [(SRC_VOCAB, 11, 18), (-10, -10, -3)])
def test_gpt_ids_outside_the_vocabulary_name_idx_and_the_range(shift, low, high):
    idx = torch.arange(8)[None, :] + shift  # (1, 8)
    with pytest.raises(ValueError, match=rf"idx must lie in \[0, 11\).*\[{low}, {high}\]"):
        _gpt()(idx)
    with pytest.raises(ValueError, match=r"idx must lie in \[0, 11\)"):
        _gpt().generate(idx[:, :2], 2)


@pytest.mark.parametrize("kind", sorted(SEQ2SEQ))
@pytest.mark.parametrize("argument, change", [
    ("src", lambda src, lengths, tgt: (src + SRC_VOCAB, lengths, tgt)),
    ("src", lambda src, lengths, tgt: (src - 20, lengths, tgt)),
    ("tgt_in", lambda src, lengths, tgt: (src, lengths, tgt + TGT_VOCAB)),
])
def test_seq2seq_ids_outside_the_vocabulary(kind, argument, change):
    src, lengths, tgt_in = change(*_batch())
    with pytest.raises(ValueError, match=rf"{argument} must lie in \[0, 1[13]\)"):
        SEQ2SEQ[kind]()(src, lengths, tgt_in)


@pytest.mark.parametrize("kind", sorted(SEQ2SEQ))
def test_decode_step_tokens_outside_the_vocabulary(kind):
    model = SEQ2SEQ[kind]()
    src, lengths, _ = _batch()
    state = model.start_decoding(src, lengths)
    with pytest.raises(ValueError, match=r"tokens must lie in \[0, 13\)"):
        model.decode_step(torch.tensor([1, 13, 1]), state)


def test_bert_ids_outside_the_vocabulary():
    with pytest.raises(ValueError, match=r"input_ids must lie in \[0, 11\)"):
        _bert()(torch.tensor([[1, 2, 11]]))
    with pytest.raises(ValueError, match=r"token_type_ids must lie in \[0, 2\)"):
        _bert()(torch.tensor([[1, 2, 3]]), None, torch.tensor([[0, 1, 2]]))


# --------------------------------------------------------------------------- one source rule


BAD_SOURCES = [
    # (what changes, error, words), the same for every model and both decoders
    (lambda src, lengths: (src, torch.tensor([5, 0, 3])), ValueError,
     r"src_lengths must be in \[1, S\] = \[1, 5\]"),
    (lambda src, lengths: (src, torch.tensor([6, 2, 3])), ValueError,
     r"src_lengths must be in \[1, S\] = \[1, 5\]"),
    (lambda src, lengths: (src, lengths[:2]), ValueError, r"src_lengths must have shape \(B,\)"),
    (lambda src, lengths: (src, lengths.float()), TypeError, "src_lengths must be an integer"),
    (lambda src, lengths: (src, lengths.tolist()), TypeError, "src_lengths must be a torch"),
    (lambda src, lengths: (src.float(), lengths), TypeError, "src must be an integer"),
    (lambda src, lengths: (src[0], lengths), ValueError, r"src must be a (non-empty )?2-D"),
    (lambda src, lengths: (src.tolist(), lengths), TypeError, "src must be a torch.Tensor"),
]


@pytest.mark.parametrize("kind", sorted(SEQ2SEQ))
@pytest.mark.parametrize("case", range(len(BAD_SOURCES)))
def test_one_source_rule_for_models_and_decoders(kind, case):
    change, error, words = BAD_SOURCES[case]
    model = SEQ2SEQ[kind]()
    src, lengths, tgt_in = _batch()
    src, lengths = change(src, lengths)
    for call in (lambda: model(src, lengths, tgt_in),
                 lambda: model.start_decoding(src, lengths),
                 lambda: greedy_decode(model, src, lengths, max_len=3),
                 lambda: beam_search(model, src, lengths, beam_size=2, max_len=3)):
        with pytest.raises(error, match=words):
            call()


@pytest.mark.parametrize("kind", sorted(SEQ2SEQ))
def test_empty_batch_models_refuse_decoders_return_empty(kind):
    model = SEQ2SEQ[kind]()
    src, lengths = torch.zeros(0, 4, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    with pytest.raises(ValueError, match="src must be a non-empty"):
        model(src, lengths, torch.zeros(0, 2, dtype=torch.long))
    assert greedy_decode(model, src, lengths, max_len=3).tokens == []
    assert beam_search(model, src, lengths, max_len=3).tokens == []


@pytest.mark.parametrize("kind", sorted(SEQ2SEQ))
def test_int32_ids_and_lengths_give_the_int64_result(kind):
    model = SEQ2SEQ[kind]()
    src, lengths, tgt_in = _batch()
    expected = model(src, lengths, tgt_in)
    torch.testing.assert_close(model(src.int(), lengths.int(), tgt_in.int()), expected)


@pytest.mark.parametrize("kind", sorted(SEQ2SEQ))
@pytest.mark.parametrize("index, error, words", [
    ([0, 1], TypeError, "index must be a torch.Tensor"),
    (torch.tensor([0.0]), TypeError, "index must be an integer"),
    (torch.tensor([0, 3]), ValueError, r"index values must be in \[0, 3\)"),
    (torch.tensor([[0]]), ValueError, "index must be a non-empty 1-D"),
])
def test_reorder_state_index_rule(kind, index, error, words):
    model = SEQ2SEQ[kind]()
    src, lengths, _ = _batch()
    with pytest.raises(error, match=words):
        model.reorder_state(model.start_decoding(src, lengths), index)


def test_transformer_decode_names_tgt_in_when_rows_differ():
    model = _transformer()
    src, lengths, tgt_in = _batch()
    with pytest.raises(ValueError, match="tgt_in must have B = 3 rows"):
        model(src, lengths, tgt_in[:2])


# --------------------------------------------------------------------------- configs


@pytest.mark.parametrize("build, field", [
    (lambda v: TransformerConfig(5, 5, dropout=v), "dropout"),
    (lambda v: GPTConfig(5, dropout=v), "dropout"),
    (lambda v: RNNSeq2SeqConfig(5, 5, dropout=v), "dropout"),
    (lambda v: RNNSeq2SeqConfig(5, 5, teacher_forcing_ratio=v), "teacher_forcing_ratio"),
    (lambda v: BertConfig(hidden_dropout_prob=v), "hidden_dropout_prob"),
    (lambda v: BertConfig(layer_norm_eps=v), "layer_norm_eps"),
])
@pytest.mark.parametrize("value", [math.nan, math.inf, -0.5])
def test_config_floats_refuse_nan_inf_and_negative(build, field, value):
    with pytest.raises(ValueError, match=field):
        build(value)


@pytest.mark.parametrize("build, field, error", [
    (lambda: TransformerConfig(5, 5, d_model=0), "d_model", ValueError),
    (lambda: TransformerConfig(5, 5, num_heads=2.0), "num_heads", TypeError),
    (lambda: TransformerConfig(5, 5, norm_first=1), "norm_first", TypeError),
    (lambda: TransformerConfig(5, 5, activation="tanh"), "activation", ValueError),
    (lambda: GPTConfig(0), "vocab_size", ValueError),
    (lambda: GPTConfig(5, num_layers=-1), "num_layers", ValueError),
    (lambda: GPTConfig(5, positional="alibi"), "positional", ValueError),
    (lambda: RNNSeq2SeqConfig(5, 5, num_layers=True), "num_layers", TypeError),
    (lambda: BertConfig(vocab_size=0), "vocab_size", ValueError),
    (lambda: BertConfig(hidden_act="swish"), "hidden_act", ValueError),
])
def test_config_fields_named_in_errors(build, field, error):
    with pytest.raises(error, match=field):
        build()


def test_gpt_generate_arguments():
    model, idx = _gpt(), torch.tensor([[1, 2]])
    for kwargs, error, words in [
        (dict(max_new_tokens=-1), ValueError, "max_new_tokens"),
        (dict(max_new_tokens=2.0), TypeError, "max_new_tokens"),
        (dict(max_new_tokens=2, temperature=math.nan), ValueError, "temperature"),
        (dict(max_new_tokens=2, temperature=math.inf), ValueError, "temperature"),
        (dict(max_new_tokens=2, top_k=0), ValueError, "top_k"),
        (dict(max_new_tokens=2, use_cache=1), TypeError, "use_cache"),
    ]:
        with pytest.raises(error, match=words):
            model.generate(idx, **kwargs)


def test_mean_pool_non_tensor_is_a_type_error():
    with pytest.raises(TypeError, match="last_hidden_state"):
        mean_pool([[1.0]])


# --------------------------------------------------------------------------- structured masks


def _spy_and_dense(monkeypatch):
    """Record every mask MultiHeadAttention hands to attention(); a second wrapper replaces
    structured masks by their dense materialization."""
    original = multihead.attention
    seen = []

    def spy(q, k, v, *, mask=None, **options):
        seen.append((mask, q.shape, k.shape))
        return original(q, k, v, mask=mask, **options)

    def dense(q, k, v, *, mask=None, **options):
        if mask is not None and not isinstance(mask, torch.Tensor):
            mask = masks.materialize(mask, q.shape[0], 1, q.shape[2], k.shape[2])
        return original(q, k, v, mask=mask, **options)

    return original, seen, spy, dense


def test_transformer_passes_key_padding_and_matches_the_dense_mask(monkeypatch):
    model = _transformer()
    src, lengths, tgt_in = _batch()
    _, seen, spy, dense = _spy_and_dense(monkeypatch)
    monkeypatch.setattr(multihead, "attention", spy)
    logits = model(src, lengths, tgt_in)
    structured = [entry for entry in seen if entry[0] is not None]
    # encoder self-attention (2 layers) and decoder cross-attention (2 layers); the decoder
    # self-attention is causal with no mask
    assert len(structured) == 4 and len(seen) == 6
    padding = type(masks.key_padding(lengths))
    valid = torch.arange(5)[None, :] < lengths[:, None]  # (B, S)
    for mask, q_shape, k_shape in structured:
        assert type(mask) is padding
        dense_mask = masks.materialize(mask, 3, 1, q_shape[2], k_shape[2])
        assert torch.equal(dense_mask, valid[:, None, None, :].expand_as(dense_mask))
    monkeypatch.setattr(multihead, "attention", dense)
    torch.testing.assert_close(logits, model(src, lengths, tgt_in), rtol=1e-6, atol=1e-6)


def test_transformer_decoding_passes_key_padding_after_reordering(monkeypatch):
    model = _transformer()
    src, lengths, tgt_in = _batch()
    _, seen, spy, _ = _spy_and_dense(monkeypatch)
    monkeypatch.setattr(multihead, "attention", spy)
    state = model.start_decoding(src, lengths)
    model.decode_step(tgt_in[:, 0], state)
    state = model.reorder_state(state, torch.tensor([2, 2, 0]))
    seen.clear()
    logits, _, _ = model.decode_step(tgt_in[[2, 2, 0], 1], state)
    cross = [mask for mask, _, _ in seen if mask is not None]
    assert len(cross) == 2
    for mask in cross:
        dense = masks.materialize(mask, 3, 1, 1, 5)[:, 0, 0]
        assert torch.equal(dense, torch.arange(5)[None, :] < lengths[[2, 2, 0], None])
    full = model(src[[2, 2, 0]], lengths[[2, 2, 0]], tgt_in[[2, 2, 0]])
    torch.testing.assert_close(logits, full[:, 1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("padding, structured", [("right", True), ("left", False)])
def test_bert_right_padding_is_key_padding_and_matches_unpadded(monkeypatch, padding,
                                                                  structured):
    model = _bert()
    rows = [[3, 4, 5, 6], [7, 8], [9]]
    ids = torch.zeros(3, 4, dtype=torch.long)
    attention_mask = torch.zeros(3, 4, dtype=torch.long)
    for i, row in enumerate(rows):
        where = slice(0, len(row)) if padding == "right" else slice(4 - len(row), 4)
        ids[i, where] = torch.tensor(row)
        attention_mask[i, where] = 1
    _, seen, spy, _ = _spy_and_dense(monkeypatch)
    monkeypatch.setattr(multihead, "attention", spy)
    out = model(ids, attention_mask).last_hidden_state
    assert all((not isinstance(mask, torch.Tensor)) == structured for mask, _, _ in seen)
    if padding == "left":
        return  # positions shift with left padding, so rows are not comparable alone
    for i, row in enumerate(rows):
        alone = model(torch.tensor([row])).last_hidden_state[0]
        torch.testing.assert_close(out[i, :len(row)], alone, rtol=1e-5, atol=1e-5)


def test_rnn_source_mask_is_the_materialized_key_padding():
    model = _rnn()
    src, lengths, _ = _batch()
    state = model.start_decoding(src, lengths)
    assert torch.equal(state.src_mask, torch.arange(5)[None, :] < lengths[:, None])
    assert torch.equal(source_padding_mask(lengths, 5), state.src_mask)


# --------------------------------------------------------------------------- the models' losses


@pytest.mark.parametrize("targets, pad_id, error, words", [
    (torch.tensor([[1, 5]]), 0, ValueError, r"targets must lie in \[0, V = 5\)"),
    (torch.tensor([[1, -1]]), 0, ValueError, r"targets must lie in \[0, V = 5\)"),
    (torch.tensor([[True, False]]), 0, TypeError, "targets must be an int64 or int32"),
    ([[1, 2]], 0, TypeError, "targets must be an int64 or int32"),
    (torch.tensor([[1, 2]]), 1.5, TypeError, "pad_id"),
])
def test_token_cross_entropy_targets_and_pad_id(targets, pad_id, error, words):
    with pytest.raises(error, match=words):
        token_cross_entropy(torch.randn(1, 2, 5), targets, pad_id=pad_id)


def test_token_cross_entropy_skips_a_negative_pad_id():
    loss, count = token_cross_entropy(torch.zeros(1, 2, 5), torch.tensor([[1, -100]]),
                                      pad_id=-100)
    assert count == 1 and math.isclose(float(loss), math.log(5), rel_tol=1e-6)


@pytest.mark.parametrize("value, error", [(math.nan, ValueError), ("0.1", TypeError),
                                          (1.0, ValueError)])
def test_loss_builders_check_label_smoothing_up_front(value, error):
    for build in (lm_loss_fn, seq2seq_loss_fn):
        with pytest.raises(error, match="label_smoothing"):
            build(label_smoothing=value)
