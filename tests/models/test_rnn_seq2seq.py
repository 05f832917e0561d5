"""RNN encoder-decoder: shapes, incremental == teacher-forced, beam reordering, padding,
alignments, teacher forcing, config errors, and a tiny reversal task it must learn."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attnkit.models.rnn_seq2seq import (
    ATTENTION_KINDS,
    RNNDecodeState,
    RNNSeq2Seq,
    RNNSeq2SeqConfig,
    build_rnn_seq2seq,
)
from attnkit.nn.seq2seq.additive import AdditiveAttention
from attnkit.nn.seq2seq.luong import LuongAttention

KINDS = sorted(ATTENTION_KINDS)
PAD, BOS, EOS = 0, 1, 2
# Small windows and kernels so that local and location attention are exercised on short inputs.
OPTIONS = {"luong-location": {"max_source_len": 16}, "local-m": {"window": 2},
           "local-p": {"window": 2}, "location": {"num_filters": 4, "kernel_size": 3}}
TIGHT = {"rtol": 1e-9, "atol": 1e-11}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These models are tiny: a second intra-op thread only adds waiting, a lot of it on a
    busy machine. Restored after this module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make(kind: str, *, cell: str = "gru", input_feeding: bool | None = None,
         num_layers: int = 1, dtype: torch.dtype = torch.float64, **overrides) -> RNNSeq2Seq:
    fields = {"embed_dim": 6, "hidden_dim": 8, "num_layers": num_layers, "cell": cell,
              "input_feeding": input_feeding, "dropout": 0.0, **overrides}
    config = RNNSeq2SeqConfig(src_vocab_size=11, tgt_vocab_size=13, **fields)
    return build_rnn_seq2seq(config, kind, **OPTIONS.get(kind, {})).to(dtype)


def batch(B: int = 3, S: int = 7, T: int = 6, lengths: tuple[int, ...] = (7, 3, 5)):
    src_lengths = torch.tensor(lengths[:B])
    src = torch.randint(4, 11, (B, S))
    src = src.masked_fill(torch.arange(S) >= src_lengths[:, None], PAD)
    tgt_in = torch.randint(4, 13, (B, T))
    tgt_in[:, 0] = BOS
    return src, src_lengths, tgt_in


def step_through(model, src, src_lengths, tgt_in):
    """decode_step over tgt_in: logits (B, T, V) and alignments (B, T, S) or None."""
    state = model.start_decoding(src, src_lengths)
    logits, alignments = [], []
    for i in range(tgt_in.shape[1]):
        step_logits, state, alignment = model.decode_step(tgt_in[:, i], state,
                                                          return_alignment=True)
        logits.append(step_logits)
        alignments.append(alignment)
    stacked = None if alignments[0] is None else torch.stack(alignments, 1)
    return torch.stack(logits, 1), stacked


@pytest.mark.parametrize("input_feeding", [False, True])
@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("kind", KINDS)
def test_shapes_and_gradients(kind, cell, input_feeding):
    model = make(kind, cell=cell, input_feeding=input_feeding, dtype=torch.float32).train()
    src, src_lengths, tgt_in = batch()
    logits = model(src, src_lengths, tgt_in)
    assert logits.shape == (3, 6, 13) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    logits.logsumexp(-1).sum().backward()
    assert model.tgt_embed.weight.grad is not None and model.src_embed.weight.grad is not None
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    model.eval()
    state = model.start_decoding(src, src_lengths)
    step_logits, state, alignment = model.decode_step(tgt_in[:, 0], state,
                                                      return_alignment=True)
    assert step_logits.shape == (3, 13)
    assert (alignment is None) == (kind == "none")
    if alignment is not None:
        assert alignment.shape == (3, 7)
    assert model.decode_step(tgt_in[:, 1], state)[2] is None  # only on request


@pytest.mark.parametrize("input_feeding", [False, True])
@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("kind", KINDS)
def test_decode_step_equals_forward(kind, cell, input_feeding):
    model = make(kind, cell=cell, input_feeding=input_feeding, num_layers=2).eval()
    src, src_lengths, tgt_in = batch()
    with torch.no_grad():
        full = model(src, src_lengths, tgt_in)
        stepped, _ = step_through(model, src, src_lengths, tgt_in)
    torch.testing.assert_close(stepped, full, **TIGHT)


@pytest.mark.parametrize("input_feeding", [False, True])
@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("kind", ["bahdanau", "none", "luong-general", "location"])
def test_teacher_forced_gradients_equal_step_loop(kind, cell, input_feeding):
    """forward's teacher-forced paths (fused RNN for the fixed vector, a loop holding only
    the recurrence for Bahdanau, one output layer over all steps) give the gradients of
    the step-by-step decoder (decode_step), to float64 rounding."""
    model = make(kind, cell=cell, input_feeding=input_feeding, num_layers=2).eval()
    src, src_lengths, tgt_in = batch()
    weights = torch.randn(3, 6, 13, dtype=torch.float64)  # a loss that weighs every logit

    def grads(logits):
        model.zero_grad(set_to_none=True)
        (logits * weights).sum().backward()
        return {name: p.grad.clone() for name, p in model.named_parameters()
                if p.grad is not None}

    fast = grads(model(src, src_lengths, tgt_in))
    stepped = grads(step_through(model, src, src_lengths, tgt_in)[0])
    assert fast.keys() == stepped.keys() and "decoder.weight_ih_l0" in fast
    for name in fast:
        torch.testing.assert_close(fast[name], stepped[name], **TIGHT, msg=name)


def reference_logits(model, src, src_lengths, tgt_in):
    """The module docstring's decoder equations, written out with a GRUCell holding the
    one-layer decoder's weights (the encoder and bridge come from start_decoding)."""
    state = model.start_decoding(src, src_lengths)
    decoder = model.decoder
    cell = torch.nn.GRUCell(decoder.input_size, decoder.hidden_size).double()
    cell.load_state_dict({"weight_ih": decoder.weight_ih_l0, "weight_hh": decoder.weight_hh_l0,
                          "bias_ih": decoder.bias_ih_l0, "bias_hh": decoder.bias_hh_l0})
    hidden, feed, attn_state = state.hidden[0], state.feed, state.attention
    feeding = [] if feed is None else [feed]

    def attend(query):  # (B, H) -> context (B, H), attention state
        if model.attention is None:
            return state.fixed_context, attn_state
        context, _, new = model.attention(query[:, None], state.memory, mask=state.src_mask,
                                          state=attn_state)
        return context[:, 0], new

    logits = []
    for i in range(tgt_in.shape[1]):
        embedded = model.tgt_embed(tgt_in[:, i])  # (B, E)
        if model.style == "luong":  # h_t = RNN([Ey; o_{t-1}]), o_t = tanh(W_c [c_t; h_t])
            hidden = cell(torch.cat([embedded, *feeding], -1), hidden)
            context, attn_state = attend(hidden)
            out = torch.tanh(model.output_proj(torch.cat([context, hidden], -1)))
        else:  # c_i = attend(s_{i-1}), s_i = RNN([Ey; c_i; o_{i-1}]), o_i = tanh(W_o [s; c; Ey])
            context, attn_state = attend(hidden)
            hidden = cell(torch.cat([embedded, context, *feeding], -1), hidden)
            out = torch.tanh(model.output_proj(torch.cat([hidden, context, embedded], -1)))
        feeding = [out] if feeding else []
        logits.append(model.generator(out))
    return torch.stack(logits, 1)  # (B, T, V)


@pytest.mark.parametrize("input_feeding", [False, True])
@pytest.mark.parametrize("kind", ["bahdanau", "luong-general", "none"])
def test_forward_follows_the_documented_equations(kind, input_feeding):
    model = make(kind, input_feeding=input_feeding).eval()
    src, src_lengths, tgt_in = batch()
    with torch.no_grad():
        torch.testing.assert_close(model(src, src_lengths, tgt_in),
                                   reference_logits(model, src, src_lengths, tgt_in), **TIGHT)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("kind", KINDS)
def test_reorder_state(kind, cell):
    model = make(kind, cell=cell, input_feeding=True).eval()
    src, src_lengths, tgt_in = batch(T=4)
    index = torch.tensor([2, 0, 0, 1])
    with torch.no_grad():
        state = model.start_decoding(src, src_lengths)
        state_ref = model.start_decoding(src[index], src_lengths[index])
        for i in range(2):
            _, state, _ = model.decode_step(tgt_in[:, i], state)
            _, state_ref, _ = model.decode_step(tgt_in[index, i], state_ref)
        state = model.reorder_state(state, index)
        assert isinstance(state, RNNDecodeState) and state.hidden.shape[1] == 4
        for i in range(2, 4):
            logits, state, align = model.decode_step(tgt_in[index, i], state,
                                                     return_alignment=True)
            logits_ref, state_ref, align_ref = model.decode_step(
                tgt_in[index, i], state_ref, return_alignment=True)
            torch.testing.assert_close(logits, logits_ref, **TIGHT)
            if kind != "none":
                torch.testing.assert_close(align, align_ref, **TIGHT)


@pytest.mark.parametrize("kind", KINDS)
def test_padding_does_not_change_outputs(kind):
    model = make(kind, cell="lstm").eval()
    src, src_lengths, tgt_in = batch()
    padded = torch.cat([src, torch.full((3, 4), PAD)], dim=1)  # (B, S + 4)
    # Garbage in padded positions must not matter either: packing and the mask skip them.
    padded[1, 3:] = 9
    with torch.no_grad():
        torch.testing.assert_close(model(padded, src_lengths, tgt_in),
                                   model(src, src_lengths, tgt_in), **TIGHT)
        _, alignments = step_through(model, padded, src_lengths, tgt_in)
    if kind != "none":
        beyond = torch.arange(11) >= src_lengths[:, None]  # (B, S + 4)
        assert (alignments.masked_select(beyond[:, None, :]) == 0).all()


@pytest.mark.parametrize("kind", KINDS)
def test_alignment_rows(kind):
    model = make(kind).eval()
    src, src_lengths, tgt_in = batch(T=8)
    with torch.no_grad():
        _, alignments = step_through(model, src, src_lengths, tgt_in)  # (B, T, S)
    if kind == "none":
        assert alignments is None
        return
    real = torch.arange(7) < src_lengths[:, None]  # (B, S)
    assert (alignments >= 0).all()
    assert (alignments.masked_select(~real[:, None, :]) == 0).all()
    sums = alignments.sum(-1)  # (B, T)
    if kind in ("bahdanau", "luong-dot", "luong-general", "luong-concat", "luong-location",
                "location", "hard"):
        torch.testing.assert_close(sums, torch.ones_like(sums))
    if kind == "hard":
        assert ((alignments == 0) | (alignments == 1)).all()
    if kind == "local-m":
        # Step t attends to [t - D, t + D]: rows are a softmax while that window still
        # meets the source, and empty (all zero) once t - D passes its end.
        window_open = torch.arange(8) - 2 <= src_lengths[:, None] - 1  # (B, T)
        torch.testing.assert_close(sums, window_open.to(sums.dtype))
        beyond = (torch.arange(7) - torch.arange(8)[:, None]).abs() > 2  # (T, S)
        assert (alignments.masked_select(beyond) == 0).all()
    if kind == "local-p":
        # softmax over the window times a Gaussian: positive mass, at most 1, nonzero on
        # at most 2D + 1 = 5 positions.
        assert (sums > 0).all() and (sums <= 1 + 1e-12).all()
        assert ((alignments > 0).sum(-1) <= 5).all()
    if kind == "monotonic":
        # eval mode is the hard monotonic process: one-hot rows that never move back,
        # or all-zero once the scan has run off the end.
        assert ((alignments == 0) | (alignments == 1)).all() and (sums <= 1).all()
        position = torch.where(sums > 0, alignments.argmax(-1), 10**6)
        assert (position.diff(dim=1) >= 0).all()


def test_default_styles_and_input_feeding():
    styles = {kind: (make(kind).style, make(kind).input_feeding) for kind in KINDS}
    for kind in ("luong-dot", "luong-general", "luong-concat", "luong-location", "local-m",
                 "local-p"):
        assert styles[kind] == ("luong", True)
    for kind in ("bahdanau", "location", "monotonic", "hard", "none"):
        assert styles[kind] == ("bahdanau", False)
    config = RNNSeq2SeqConfig(11, 13, embed_dim=6, hidden_dim=8, input_feeding=False)
    model = RNNSeq2Seq(config, LuongAttention(8, 8, mode="dot"), style="bahdanau")
    assert (model.style, model.input_feeding) == ("bahdanau", False)
    assert model.decoder.input_size == 6 + 8  # embedding + context


def test_fixed_vector_baseline_sees_only_final_states():
    """attention=None: the source enters through the encoder's final states alone."""
    model = make("none", bidirectional=False).eval()
    src, src_lengths, tgt_in = batch()
    state = model.start_decoding(src, src_lengths)
    memory = state.memory  # (B, S, H): with one direction the final state is the last real one
    last = memory[torch.arange(3), src_lengths - 1]  # (B, H)
    torch.testing.assert_close(state.fixed_context, last, **TIGHT)
    assert state.attention == {}


def test_teacher_forcing_ratio():
    model = make("bahdanau", dtype=torch.float32).train()
    src, src_lengths, tgt_in = batch(T=8)
    forced = model(src, src_lengths, tgt_in, teacher_forcing_ratio=1.0)
    free = model(src, src_lengths, tgt_in, teacher_forcing_ratio=0.0)
    # The first input is always BOS (equal up to float32 rounding: the teacher-forced path
    # projects all steps in one matrix product, the sampled one step by step).
    torch.testing.assert_close(forced[:, 0], free[:, 0])
    assert not torch.allclose(forced, free)
    # Ratio 0 feeds exactly the model's own greedy tokens.
    greedy = torch.cat([tgt_in[:, :1], free[:, :-1].argmax(-1)], dim=1)
    torch.testing.assert_close(model(src, src_lengths, greedy), free)
    torch.manual_seed(7)
    first = model(src, src_lengths, tgt_in, teacher_forcing_ratio=0.5)
    torch.manual_seed(7)
    torch.testing.assert_close(model(src, src_lengths, tgt_in, teacher_forcing_ratio=0.5),
                               first, rtol=0, atol=0)
    model.eval()  # eval mode always feeds the gold tokens
    torch.testing.assert_close(model(src, src_lengths, tgt_in, teacher_forcing_ratio=0.0),
                               model(src, src_lengths, tgt_in))


def test_learns_to_reverse():
    """A tiny Bahdanau model learns to reverse short sequences (synthetic task)."""
    torch.manual_seed(0)
    num, S = 24, 5
    lengths = torch.randint(3, S + 1, (num,))
    src = torch.randint(4, 10, (num, S)).masked_fill(torch.arange(S) >= lengths[:, None], PAD)
    targets = [src[i, : lengths[i]].flip(0).tolist() for i in range(num)]
    tgt_in = torch.full((num, S + 1), PAD)
    tgt_out = torch.full((num, S + 1), PAD)
    for i, target in enumerate(targets):
        tgt_in[i, : len(target) + 1] = torch.tensor([BOS, *target])
        tgt_out[i, : len(target) + 1] = torch.tensor([*target, EOS])
    config = RNNSeq2SeqConfig(10, 10, embed_dim=16, hidden_dim=32, dropout=0.0)
    model = build_rnn_seq2seq(config, "bahdanau")
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(150):
        logits = model(src, lengths, tgt_in)
        loss = F.cross_entropy(logits.reshape(-1, 10), tgt_out.reshape(-1), ignore_index=PAD)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if loss.item() < 0.02:
            break
    assert loss.item() < 0.05
    model.eval()
    with torch.no_grad():
        state = model.start_decoding(src, lengths)
        tokens, outputs = torch.full((num,), BOS), []
        for _ in range(S + 1):
            logits, state, _ = model.decode_step(tokens, state)
            tokens = logits.argmax(-1)
            outputs.append(tokens)
    decoded = torch.stack(outputs, 1).tolist()
    hypotheses = [row[: row.index(EOS)] if EOS in row else row for row in decoded]
    assert hypotheses == targets


def test_bad_names_list_the_choices():
    with pytest.raises(ValueError, match=r"attention must be one of .*'bahdanau'.*'none'"):
        build_rnn_seq2seq(RNNSeq2SeqConfig(5, 5, hidden_dim=8), "luong")
    with pytest.raises(ValueError, match=r"cell must be one of \['gru', 'lstm'\].*'rnn'"):
        RNNSeq2SeqConfig(5, 5, cell="rnn")
    config = RNNSeq2SeqConfig(5, 5, embed_dim=4, hidden_dim=8)
    with pytest.raises(ValueError, match=r"style must be one of \['bahdanau', 'luong'\]"):
        RNNSeq2Seq(config, AdditiveAttention(8, 8, 8), style="cho")
    with pytest.raises(ValueError, match="needs an attention module"):
        RNNSeq2Seq(config, None, style="luong")
    with pytest.raises(ValueError, match="takes no options"):
        build_rnn_seq2seq(config, "none", window=3)


@pytest.mark.parametrize("fields, error, message", [
    ({"hidden_dim": 7}, ValueError, "must be even"),
    ({"hidden_dim": 0}, ValueError, "hidden_dim must be >= 1"),
    ({"hidden_dim": 8.0}, TypeError, "hidden_dim must be an int"),
    ({"dropout": 1.0}, ValueError, r"dropout must be in \[0, 1\)"),
    ({"dropout": float("nan")}, ValueError, "dropout must be a finite number"),
    ({"teacher_forcing_ratio": 1.5}, ValueError, r"teacher_forcing_ratio must be in \[0, 1\]"),
    ({"pad_id": 5}, ValueError, "pad_id must be a valid id"),
    ({"input_feeding": "yes"}, TypeError, r"input_feeding \(None, True or False\) must be"),
    ({"bidirectional": 1}, TypeError, "bidirectional must be a bool"),
])
def test_bad_config(fields, error, message):
    with pytest.raises(error, match=message):
        RNNSeq2SeqConfig(5, 5, **fields)


def test_bad_inputs():
    model = make("bahdanau").eval()
    src, src_lengths, tgt_in = batch()
    with pytest.raises(ValueError, match=r"src_lengths must be in \[1, S\]"):
        model(src, torch.tensor([7, 0, 5]), tgt_in)
    with pytest.raises(ValueError, match=r"src_lengths must be in \[1, S\]"):
        model(src, torch.tensor([8, 3, 5]), tgt_in)
    with pytest.raises(TypeError, match="src must be an integer"):
        model(src.float(), src_lengths, tgt_in)
    with pytest.raises(ValueError, match="tgt_in must have B = 3 rows"):
        model(src, src_lengths, tgt_in[:2])
    state = model.start_decoding(src, src_lengths)
    with pytest.raises(ValueError, match=r"tokens must have shape \(B,\) = \(3,\)"):
        model.decode_step(tgt_in[:2, 0], state)
    with pytest.raises(ValueError, match=r"index values must be in \[0, 3\)"):
        model.reorder_state(state, torch.tensor([0, 3]))
