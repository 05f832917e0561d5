"""Transformer encoder-decoder: shapes, masking, causality, incremental decoding, learning."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.nn import functional as F

from attnkit.models.transformer import Transformer, TransformerConfig, TransformerDecodeState

F64 = torch.float64
PAD, BOS, EOS = 0, 1, 2
VOCAB = 13


def _config(**overrides) -> TransformerConfig:
    fields = dict(src_vocab_size=VOCAB, tgt_vocab_size=VOCAB, d_model=16, num_heads=4,
                  num_encoder_layers=2, num_decoder_layers=2, ffn_dim=24, dropout=0.0,
                  max_len=32)
    return TransformerConfig(**{**fields, **overrides})


def _model(**overrides) -> Transformer:
    return Transformer(_config(**overrides)).to(F64).eval()


def _batch(batch=3, src_len=6, tgt_len=5, lengths=(6, 4, 1)):
    """Right-padded source (PAD after each row's length) and a BOS-started target."""
    lengths = torch.tensor(lengths[:batch])
    src = torch.randint(3, VOCAB, (batch, src_len))
    src = src.masked_fill(torch.arange(src_len) >= lengths[:, None], PAD)
    tgt_in = torch.randint(3, VOCAB, (batch, tgt_len))
    tgt_in[:, 0] = BOS
    return src, lengths, tgt_in


VARIANTS = [
    dict(norm_first=norm_first, positional=positional)
    for norm_first, positional in itertools.product([True, False],
                                                    ["sinusoidal", "learned", "rotary"])
]
VARIANT_IDS = [f"{'pre' if v['norm_first'] else 'post'}-{v['positional']}" for v in VARIANTS]
EXTRAS = [dict(), dict(num_kv_heads=2), dict(num_kv_heads=1, share_embeddings=True)]
EXTRA_IDS = ["mha", "gqa", "mqa-shared"]
# Every norm/positional variant once, each head layout twice.
CASES = [(variant, EXTRAS[i % 3]) for i, variant in enumerate(VARIANTS)]
CASE_IDS = [f"{name}-{EXTRA_IDS[i % 3]}" for i, name in enumerate(VARIANT_IDS)]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models: on a shared CPU, extra threads cost more in contention than they save."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("variant, extra", CASES, ids=CASE_IDS)
def test_shapes_and_gradients(variant, extra):
    model = Transformer(_config(**variant, **extra, activation="gelu" if extra else "relu"))
    src, lengths, tgt_in = _batch()
    memory = model.encode(src, lengths)
    assert memory.shape == (3, 6, 16)
    logits = model(src, lengths, tgt_in)
    assert logits.shape == (3, 5, VOCAB) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    logits.logsumexp(-1).sum().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None]
    assert missing == [], f"parameters without gradient: {missing}"


def test_separate_vocabularies_and_dropout_in_training():
    model = Transformer(_config(tgt_vocab_size=7, dropout=0.3))
    src, lengths, tgt_in = _batch()
    tgt_in = tgt_in % 7
    assert model(src, lengths, tgt_in).shape == (3, 5, 7)
    model.train()
    assert not torch.equal(model(src, lengths, tgt_in), model(src, lengths, tgt_in))
    model.eval()
    torch.testing.assert_close(model(src, lengths, tgt_in), model(src, lengths, tgt_in),
                               atol=0, rtol=0)


def test_share_embeddings_ties_three_matrices():
    shared, separate = Transformer(_config(share_embeddings=True)), Transformer(_config())
    weight = shared.src_embed.token.weight
    assert shared.tgt_embed.token.weight is weight and shared.output.weight is weight
    saved = 2 * VOCAB * 16
    assert (sum(p.numel() for p in separate.parameters())
            - sum(p.numel() for p in shared.parameters())) == saved


def test_initialization_is_documented_one():
    model = Transformer(_config(d_model=64, num_heads=4, ffn_dim=128, src_vocab_size=400))
    emb = model.src_embed.token.weight
    assert torch.all(emb[PAD] == 0)
    assert abs(emb[1:].std().item() - 64 ** -0.5) < 0.01  # N(0, 1/d_model)
    linear = model.encoder[0].ffn.fc
    bound = (6 / (64 + 128)) ** 0.5  # Xavier-uniform
    assert linear.weight.abs().max() <= bound and torch.all(linear.bias == 0)


# --------------------------------------------------------------------------- masking


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_appending_source_padding_changes_nothing(variant):
    model = _model(**variant, num_kv_heads=2)
    src, lengths, tgt_in = _batch()
    extra = torch.randint(3, VOCAB, (3, 4))  # not even PAD: src_lengths alone decides
    padded = torch.cat([src, extra], dim=1)
    with torch.no_grad():
        memory, memory_padded = model.encode(src, lengths), model.encode(padded, lengths)
        logits, logits_padded = model(src, lengths, tgt_in), model(padded, lengths, tgt_in)
    for b, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(memory_padded[b, :n], memory[b, :n], atol=1e-12, rtol=0)
    torch.testing.assert_close(logits_padded, logits, atol=1e-12, rtol=0)


def test_padded_source_tokens_do_not_matter():
    model = _model()
    src, lengths, tgt_in = _batch()
    scrambled = src.clone()
    scrambled[2, 1:] = 7  # row 2 has length 1: every later token is padding
    with torch.no_grad():
        torch.testing.assert_close(model(scrambled, lengths, tgt_in),
                                   model(src, lengths, tgt_in), atol=1e-12, rtol=0)


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_decoder_never_sees_the_future(variant):
    model = _model(**variant)
    src, lengths, tgt_in = _batch(tgt_len=7)
    with torch.no_grad():
        logits = model(src, lengths, tgt_in)
        for t in range(1, 7):
            changed = tgt_in.clone()
            changed[:, t:] = torch.randint(3, VOCAB, (3, 7 - t))
            after = model(src, lengths, changed)
            torch.testing.assert_close(after[:, :t], logits[:, :t], atol=1e-12, rtol=0)
    assert not torch.allclose(after[:, -1], logits[:, -1])


# --------------------------------------------------------------------------- decoding


def _expected_alignment(model, src, lengths, tgt_in):
    """Last decoder layer's cross-attention over heads from a full pass: (B, T, S)."""
    memory = model.encode(src, lengths)
    mask = model.source_mask(src, lengths)
    y = model.tgt_embed(tgt_in)
    for layer in model.decoder:
        y, weights = layer(y, memory, memory_mask=mask, return_weights=True)
    return weights.mean(dim=1)


def _step_all(model, state, tokens):
    """decode_step over ``tokens (B, T)``: logits (B, T, V), alignments (B, T, S)."""
    logits, alignments = [], []
    for t in range(tokens.shape[1]):
        step_logits, state, alignment = model.decode_step(tokens[:, t], state,
                                                          return_alignment=True)
        logits.append(step_logits)
        alignments.append(alignment)
    return torch.stack(logits, dim=1), torch.stack(alignments, dim=1)


@pytest.mark.parametrize("variant, extra", CASES, ids=CASE_IDS)
def test_decode_step_equals_full_forward(variant, extra):
    model = _model(**variant, **extra)
    src, lengths, tgt_in = _batch(tgt_len=6)
    with torch.no_grad():
        full = model(src, lengths, tgt_in)
        expected_alignment = _expected_alignment(model, src, lengths, tgt_in)
        state = model.start_decoding(src, lengths)
        assert isinstance(state, TransformerDecodeState)
        logits, alignment = _step_all(model, state, tgt_in)
    torch.testing.assert_close(logits, full, atol=1e-10, rtol=0)
    torch.testing.assert_close(alignment, expected_alignment, atol=1e-12, rtol=0)
    assert state.step == 6 and state.memory is None  # the cross caches hold the source
    valid = torch.arange(6) < lengths[:, None]  # (B, S)
    assert torch.all(alignment.masked_select(~valid[:, None, :]) == 0)
    torch.testing.assert_close(alignment.sum(-1), torch.ones(3, 6, dtype=F64))


def test_decode_step_without_alignment_returns_none():
    model = _model()
    src, lengths, _ = _batch()
    with torch.no_grad():
        state = model.start_decoding(src, lengths)
        logits, state_after, alignment = model.decode_step(torch.full((3,), BOS), state)
    assert logits.shape == (3, VOCAB) and alignment is None and state_after is state


@pytest.mark.parametrize("positional", ["sinusoidal", "rotary"])
def test_reorder_state_mid_decoding(positional):
    model = _model(positional=positional, num_kv_heads=2)
    src, lengths, tgt_in = _batch(tgt_len=6)
    index = torch.tensor([2, 0, 0, 1, 2])  # a permutation with duplicates (beam expansion)
    with torch.no_grad():
        full = model(src[index], lengths[index], tgt_in[index])
        alignment_full = _expected_alignment(model, src[index], lengths[index], tgt_in[index])
        state = model.start_decoding(src, lengths)
        _step_all(model, state, tgt_in[:, :3])
        state = model.reorder_state(state, index)
        assert state.batch_size == 5
        logits, alignment = _step_all(model, state, tgt_in[index, 3:])
    torch.testing.assert_close(logits, full[:, 3:], atol=1e-10, rtol=0)
    torch.testing.assert_close(alignment, alignment_full[:, 3:], atol=1e-12, rtol=0)


def test_reorder_state_before_the_first_step_and_shrinking():
    model = _model(positional="learned")
    src, lengths, tgt_in = _batch(tgt_len=5)
    expand = torch.tensor([0, 0, 1, 1, 2, 2])  # beam_size 2 on each of 3 rows
    keep = torch.tensor([5, 2])  # then keep two hypotheses
    with torch.no_grad():
        state = model.reorder_state(model.start_decoding(src, lengths), expand)
        assert state.memory.shape[0] == 6  # cross caches not filled yet: memory is reordered
        _step_all(model, state, tgt_in[expand, :2])
        state = model.reorder_state(state, keep)
        logits, _ = _step_all(model, state, tgt_in[expand][keep, 2:])
        rows = expand[keep]
        full = model(src[rows], lengths[rows], tgt_in[rows])
    torch.testing.assert_close(logits, full[:, 2:], atol=1e-10, rtol=0)


@pytest.mark.parametrize("index, error, word", [
    (torch.tensor([3]), ValueError, r"\[0, 3\)"),
    (torch.tensor([-1, 0]), ValueError, "min -1"),
    (torch.tensor([0.0]), TypeError, "index"),
    (torch.tensor([[0]]), ValueError, "index"),
])
def test_reorder_state_validation(index, error, word):
    model = _model()
    src, lengths, _ = _batch()
    state = model.start_decoding(src, lengths)
    with pytest.raises(error, match=word):
        model.reorder_state(state, index)


def test_decode_step_validation():
    model = _model()
    src, lengths, _ = _batch()
    state = model.start_decoding(src, lengths)
    with pytest.raises(ValueError, match=r"tokens must have shape \(3,\)"):
        model.decode_step(torch.tensor([1, 1]), state)
    with pytest.raises(ValueError, match="tokens"):
        model.decode_step(torch.ones(3, 1, dtype=torch.long), state)
    with pytest.raises(TypeError, match="start_decoding"):
        model.decode_step(torch.ones(3, dtype=torch.long), {"memory": None})


# --------------------------------------------------------------------------- input checks


def test_input_validation_names_the_argument():
    model = _model()
    src, lengths, tgt_in = _batch()
    with pytest.raises(ValueError, match=r"src_lengths must be in \[1, S\] = \[1, 6\]"):
        model(src, torch.tensor([7, 1, 1]), tgt_in)
    with pytest.raises(ValueError, match=r"src_lengths must have shape \(B,\) = \(3,\)"):
        model(src, lengths[:2], tgt_in)
    with pytest.raises(TypeError, match="src must be an integer"):
        model(src.double(), lengths, tgt_in)
    with pytest.raises(ValueError, match="tgt_in"):
        model(src, lengths, tgt_in[0])
    with pytest.raises(ValueError, match="tgt_in must have B = 3 rows"):
        model.decode(tgt_in[:2], model.encode(src, lengths), lengths)
    with pytest.raises(ValueError, match="memory must be"):
        model.decode(tgt_in, model.encode(src, lengths)[..., :4], lengths)
    with pytest.raises(ValueError, match="max_len"):
        model(torch.ones(1, 40, dtype=torch.long), torch.tensor([40]), tgt_in[:1])


@pytest.mark.parametrize("field, value, error", [
    ("src_vocab_size", 0, ValueError),
    ("tgt_vocab_size", -3, ValueError),
    ("d_model", 0, ValueError),
    ("num_heads", 3, ValueError),  # does not divide d_model=16
    ("num_kv_heads", 3, ValueError),  # does not divide num_heads=4
    ("num_kv_heads", 0, ValueError),
    ("num_encoder_layers", 0, ValueError),
    ("num_decoder_layers", 0, ValueError),
    ("ffn_dim", 0, ValueError),
    ("dropout", 1.0, ValueError),
    ("dropout", -0.1, ValueError),
    ("positional", "alibi", ValueError),
    ("rotary_base", 0.5, ValueError),
    ("rotary_base", None, TypeError),
    ("max_len", 0, ValueError),
    ("pad_id", -1, ValueError),
    ("pad_id", VOCAB, ValueError),
    ("activation", "tanh", ValueError),
    ("share_embeddings", "yes", TypeError),
    ("norm_first", 1, TypeError),
    ("d_model", 16.0, TypeError),
])
def test_bad_config_names_the_field(field, value, error):
    with pytest.raises(error, match=field):
        _config(**{field: value})


def test_config_cross_field_checks():
    with pytest.raises(ValueError, match="share_embeddings"):
        _config(share_embeddings=True, tgt_vocab_size=VOCAB + 1)
    with pytest.raises(ValueError, match="positional='rotary'"):
        _config(positional="rotary", d_model=12, num_heads=4)  # head dim 3 is odd
    assert TransformerConfig(**_config().to_dict()) == _config()


# --------------------------------------------------------------------------- learning


def test_tiny_transformer_learns_to_copy():
    torch.manual_seed(0)
    lengths = torch.tensor([6, 5, 4, 6, 3, 5])
    src = torch.randint(3, 12, (6, 6)).masked_fill(torch.arange(6) >= lengths[:, None], PAD)
    tgt_in = torch.zeros(6, 7, dtype=torch.long)
    tgt_out = torch.zeros(6, 7, dtype=torch.long)
    for b, n in enumerate(lengths.tolist()):
        tgt_in[b, 0], tgt_in[b, 1:n + 1] = BOS, src[b, :n]
        tgt_out[b, :n], tgt_out[b, n] = src[b, :n], EOS
    model = Transformer(TransformerConfig(12, 12, d_model=32, num_heads=4, num_encoder_layers=1,
                                          num_decoder_layers=1, ffn_dim=64, dropout=0.0,
                                          max_len=16))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(40):
        logits = model(src, lengths, tgt_in)
        loss = F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=PAD)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.2

    model.eval()
    with torch.no_grad():
        state = model.start_decoding(src, lengths)
        tokens, outputs = torch.full((6,), BOS), []
        for _ in range(7):
            logits, state, _ = model.decode_step(tokens, state)
            tokens = logits.argmax(-1)
            outputs.append(tokens)
    greedy = torch.stack(outputs, dim=1)  # (B, 7)
    for b, n in enumerate(lengths.tolist()):
        assert greedy[b, :n + 1].tolist() == tgt_out[b, :n + 1].tolist()
