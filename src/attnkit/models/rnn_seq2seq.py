"""RNN encoder-decoder with a pluggable attention mechanism.

Papers:

* Cho et al. (2014), "Learning Phrase Representations using RNN Encoder-Decoder
  for Statistical Machine Translation", arXiv:1406.1078, and Sutskever, Vinyals &
  Le (2014), "Sequence to Sequence Learning with Neural Networks",
  arXiv:1409.3215: the fixed-length vector baseline (``attention=None``).
* Bahdanau, Cho & Bengio (2014), "Neural Machine Translation by Jointly Learning
  to Align and Translate", arXiv:1409.0473: attend with the previous decoder
  state, feed the context into the RNN.
* Luong, Pham & Manning (2015), "Effective Approaches to Attention-based Neural
  Machine Translation", arXiv:1508.04025: attend with the current state, the
  attentional hidden state ``h~_t = tanh(W_c [c_t; h_t])``, input feeding.

Encoder: embeddings, then a (bi)directional GRU/LSTM run on packed sequences
(``enforce_sorted=False``), so padding reaches neither the states of the real
positions nor the final states. Its states are the attention's keys and values.
A bridge ``tanh(W [h_fwd; h_bwd])`` per layer maps the encoder's final states to
the decoder's initial state (hidden and, for LSTM, cell state).

Decoder styles (``H`` = hidden_dim, ``E y`` = embedding of the previous token)::

    bahdanau:  c_i = attend(s_{i-1})               s_i = RNN([E y; c_i (; o_{i-1})], s_{i-1})
               o_i = tanh(W_o [s_i; c_i; E y])     logits_i = W_s o_i
    luong:     h_t = RNN([E y (; o_{t-1})], h_{t-1})
               c_t = attend(h_t)                   o_t = tanh(W_c [c_t; h_t])   logits_t = W_s o_t

``(; o_{i-1})`` is input feeding: the previous attentional vector joins the RNN
input (zeros at the first step). With several layers, the top layer's hidden state
is the attention query; for LSTM the hidden state ``h`` (not the cell) is used.

The style follows the mechanism's paper, which each mechanism states as its
``decoder_style``: Luong's global and local attention (:class:`~attnkit.nn.LuongAttention`,
:class:`~attnkit.nn.LocalAttention`) get the Luong decoder; additive (Bahdanau),
location-sensitive (Chorowski et al. 2015), monotonic (Raffel et al. 2017) and hard
attention (Xu et al. 2015), all defined on the previous decoder state, get the Bahdanau
decoder, and so does ``attention=None``. The ``style=`` argument of :class:`RNNSeq2Seq`
overrides this. Mechanisms are built by name from the registry
:data:`~attnkit.nn.seq2seq.registry.ATTENTION_KINDS` (:func:`build_rnn_seq2seq`).
``input_feeding=None`` (default) means on for the Luong style, as in Luong's best
systems, and off for the Bahdanau style, where the context already enters the RNN.

``attention=None`` is the baseline of Bahdanau et al.'s comparison (Cho et al.'s
RNNencdec): the decoder sees the source only through one fixed vector, the top
encoder layer's final states ``c = [h_fwd; h_bwd]``. ``c`` initializes the decoder
(through the bridge) and is the context of every step.

Choices and deviations:

* Encoder states have ``H`` features in total: ``H // 2`` per direction when
  bidirectional (as OpenNMT does; Bahdanau et al. use ``H`` per direction). Keys,
  values and queries then all have size ``H``, so Luong's ``dot`` score applies.
* Bahdanau's output layer is a maxout layer over ``s_{i-1}``; this uses one tanh
  layer over ``s_i`` (the main text's eq. 4 conditions on ``s_i``).
* Dropout (one rate) acts on the embeddings, between stacked RNN layers and on
  ``o`` before the output projection.
* Teacher forcing: in training mode, ``teacher_forcing_ratio < 1`` replaces each
  gold input token (after the first) by the model's own greedy prediction from the
  previous step with probability ``1 - ratio``, independently per row and step
  (scheduled sampling, Bengio et al. 2015, arXiv:1506.03099, with a constant rate).
  Coins come from ``torch.rand``, so runs repeat under ``torch.manual_seed``. Eval
  mode always feeds the gold tokens.
* Teacher-forced ``forward`` (the training path) computes the same equations as
  :meth:`RNNSeq2Seq.decode_step` run ``T`` times, arranged so that only what is recurrent
  runs step by step. The target embeddings, the first RNN layer's input projection of
  ``E y`` and the vocabulary projection ``W_s`` are each one matrix product over all
  ``T`` steps; so is the output layer ``tanh(W_o ...)`` unless input feeding makes ``o_t``
  an input of step ``t + 1``. Luong style without input feeding runs the RNN over the
  whole target in one call and attends with all ``T`` queries at once (every mechanism
  treats ``Lq`` rows as ``Lq`` steps); ``attention=None`` without input feeding runs the
  decoder as one ``nn.GRU``/``nn.LSTM`` call over ``[E y_t; c]``, as ``c`` is constant.
  With a one-layer GRU, two configurations run their recurrence as one autograd function
  with a hand-written backward (weight gradients as one matrix product over all steps,
  nothing kept per step but the gates): Bahdanau style with additive attention and no
  input feeding (:mod:`attnkit.nn.seq2seq.additive_gru`), and Luong style with ``dot`` or
  ``general`` attention and input feeding (:mod:`attnkit.nn.seq2seq.luong_gru`); only
  while autograd records (their gain is the backward), outside autocast, and not while a
  forward hook watches the attention module (as :func:`attnkit.interp.capture` does: the
  fused paths never call it). Everything else
  loops over the steps with the RNN cell's equations written out on ``nn.GRU``/
  ``nn.LSTM``'s own weights. Parameter names, hence checkpoints, are the same on every
  path.
  Scheduled sampling (``teacher_forcing_ratio < 1``) needs each step's logits for the next
  input, so it runs :meth:`RNNSeq2Seq.decode_step`'s code step by step. Dropout draws its
  masks per call, so in training mode the two arrangements draw different (identically
  distributed) masks; in eval mode they agree to rounding (tested in float64).
* :func:`build_rnn_seq2seq` builds hard attention with the Gumbel straight-through
  estimator, which trains from the task loss alone; REINFORCE (the paper's) needs
  the attention state, which ``forward`` does not return.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from attnkit._validate import check_bool, check_choice, check_float, check_int
from attnkit.nn._inputs import check_row_index, check_source, check_token_ids
from attnkit.nn.dropout import FastDropout
from attnkit.nn.seq2seq.additive import AdditiveAttention
from attnkit.nn.seq2seq.additive_gru import additive_gru_decode
from attnkit.nn.seq2seq.base import Seq2SeqAttention, State, source_padding_mask
from attnkit.nn.seq2seq.gru_scan import gru_scan
from attnkit.nn.seq2seq.luong import LuongAttention
from attnkit.nn.seq2seq.luong_gru import luong_gru_decode
from attnkit.nn.seq2seq.registry import ATTENTION_KINDS, build_attention

__all__ = ["RNNSeq2SeqConfig", "RNNSeq2Seq", "RNNDecodeState", "ATTENTION_KINDS",
           "build_rnn_seq2seq"]

CELLS: dict[str, type[nn.RNNBase]] = {"gru": nn.GRU, "lstm": nn.LSTM}
STYLES = ("bahdanau", "luong")
_WHO = "RNNSeq2SeqConfig"


@dataclass
class RNNSeq2SeqConfig:
    """Hyperparameters of :class:`RNNSeq2Seq` (checked on construction)."""

    src_vocab_size: int  # source vocabulary size
    tgt_vocab_size: int  # target vocabulary size V (logits width)
    embed_dim: int = 256  # E, token embedding size (source and target)
    hidden_dim: int = 512  # H, decoder state and encoder state size (H // 2 per direction)
    num_layers: int = 1  # stacked RNN layers, in the encoder and in the decoder
    cell: str = "gru"  # "gru" or "lstm"
    bidirectional: bool = True  # bidirectional encoder (needs an even hidden_dim)
    dropout: float = 0.1  # on embeddings, between stacked layers and before the output layer
    input_feeding: bool | None = None  # feed o_{t-1} to the RNN; None: Luong style on, else off
    teacher_forcing_ratio: float = 1.0  # training: chance of feeding the gold token, in [0, 1]
    pad_id: int = 0  # padding token id in source and target

    def __post_init__(self) -> None:
        for name in ("src_vocab_size", "tgt_vocab_size", "embed_dim", "hidden_dim",
                     "num_layers"):
            check_int(getattr(self, name), name, minimum=1, owner=_WHO)
        check_choice(self.cell, "cell", sorted(CELLS), owner=_WHO)
        check_bool(self.bidirectional, "bidirectional", owner=_WHO)
        if self.bidirectional and self.hidden_dim % 2:
            raise ValueError(f"{_WHO}: a bidirectional encoder splits hidden_dim over two "
                             f"directions, so it must be even, got {self.hidden_dim}")
        if self.input_feeding is not None:
            check_bool(self.input_feeding, "input_feeding (None, True or False)", owner=_WHO)
        self.dropout = check_float(self.dropout, "dropout", low=0.0, high=1.0, high_open=True,
                                   owner=_WHO)
        self.teacher_forcing_ratio = check_float(self.teacher_forcing_ratio,
                                                 "teacher_forcing_ratio", low=0.0, high=1.0,
                                                 owner=_WHO)
        check_int(self.pad_id, "pad_id", minimum=0, owner=_WHO)
        if self.pad_id >= min(self.src_vocab_size, self.tgt_vocab_size):
            raise ValueError(f"{_WHO}: pad_id must be a valid id in both vocabularies "
                             f"(< {min(self.src_vocab_size, self.tgt_vocab_size)}), got "
                             f"{self.pad_id}")


@dataclass
class RNNDecodeState:
    """Everything :meth:`RNNSeq2Seq.decode_step` carries between steps (``B`` rows)."""

    memory: torch.Tensor  # (B, S, H) encoder states: the attention's keys and values
    src_mask: torch.Tensor  # (B, S) bool, True = real source token
    hidden: torch.Tensor  # (num_layers, B, H) decoder hidden state
    cell: torch.Tensor | None  # (num_layers, B, H) LSTM cell state; None for GRU
    feed: torch.Tensor | None  # (B, H) previous attentional vector o; None without input feeding
    attention: State  # the mechanism's recurrent state; every tensor has batch dim 0
    fixed_context: torch.Tensor | None  # (B, H) the encoder summary (attention=None only)

    def index_select(self, index: torch.Tensor) -> RNNDecodeState:
        """New row ``j`` = old row ``index[j]``; ``index`` ``(B',)`` long."""
        def rows(t: torch.Tensor | None, dim: int = 0) -> torch.Tensor | None:
            return None if t is None else t.index_select(dim, index)

        return RNNDecodeState(
            memory=rows(self.memory), src_mask=rows(self.src_mask),
            hidden=rows(self.hidden, 1), cell=rows(self.cell, 1), feed=rows(self.feed),
            attention={name: t.index_select(0, index) for name, t in self.attention.items()},
            fixed_context=rows(self.fixed_context))


class RNNSeq2Seq(nn.Module):
    """(Bi)GRU/LSTM encoder and an attentional GRU/LSTM decoder (module docstring).

    Args:
        config: :class:`RNNSeq2SeqConfig`.
        attention: a :class:`~attnkit.nn.seq2seq.base.Seq2SeqAttention` with
            ``query_dim = key_dim = value_dim = config.hidden_dim``, or None for the
            fixed-vector baseline. :func:`build_rnn_seq2seq` builds one by name.
        style: ``"bahdanau"`` or ``"luong"`` decoder; None picks by mechanism.

    Implements the attnkit seq2seq protocol: ``forward`` (teacher-forced logits),
    ``start_decoding``, ``decode_step`` and ``reorder_state``. Shapes: ``src (B, S)``
    long padded with ``pad_id``, ``src_lengths (B,)`` long in ``[1, S]``, ``tgt_in
    (B, T)`` long (BOS + target).

    Example::

        >>> model = build_rnn_seq2seq(RNNSeq2SeqConfig(10, 12, embed_dim=8, hidden_dim=8))
        >>> src, lengths = torch.randint(4, 10, (2, 5)), torch.tensor([5, 3])
        >>> model(src, lengths, torch.randint(4, 12, (2, 4))).shape
        torch.Size([2, 4, 12])
    """

    def __init__(self, config: RNNSeq2SeqConfig, attention: Seq2SeqAttention | None = None, *,
                 style: str | None = None) -> None:
        super().__init__()
        if not isinstance(config, RNNSeq2SeqConfig):
            raise TypeError(f"RNNSeq2Seq: config must be an RNNSeq2SeqConfig, got "
                            f"{type(config).__name__}")
        if attention is not None and not isinstance(attention, Seq2SeqAttention):
            raise TypeError(f"RNNSeq2Seq: attention must be a Seq2SeqAttention or None, got "
                            f"{type(attention).__name__}")
        if style is None:
            style = "bahdanau" if attention is None else attention.decoder_style
        check_choice(style, "style", STYLES, owner="RNNSeq2Seq")
        if style == "luong" and attention is None:
            raise ValueError("RNNSeq2Seq: style 'luong' attends after the RNN step and needs an "
                             "attention module; attention=None uses style 'bahdanau'")
        self.config, self.style, self.attention = config, style, attention
        self.input_feeding = (style == "luong" if config.input_feeding is None
                              else config.input_feeding)
        hidden, embed, layers = config.hidden_dim, config.embed_dim, config.num_layers
        rnn = CELLS[config.cell]
        between = config.dropout if layers > 1 else 0.0  # nn.RNNBase warns on 1 layer
        directions = 2 if config.bidirectional else 1
        self.src_embed = nn.Embedding(config.src_vocab_size, embed, padding_idx=config.pad_id)
        self.tgt_embed = nn.Embedding(config.tgt_vocab_size, embed, padding_idx=config.pad_id)
        self.encoder = rnn(embed, hidden // directions, layers, batch_first=True,
                           bidirectional=config.bidirectional, dropout=between)
        self.bridge = nn.Linear(hidden, hidden)
        self.bridge_cell = nn.Linear(hidden, hidden) if config.cell == "lstm" else None
        context_in = hidden if style == "bahdanau" else 0  # c_i in the RNN input
        feed_in = hidden if self.input_feeding else 0  # o_{t-1} in the RNN input
        self.decoder = rnn(embed + context_in + feed_in, hidden, layers,
                           batch_first=True, dropout=between)
        out_in = 2 * hidden + (embed if style == "bahdanau" else 0)  # [s; c; Ey] or [c; h]
        self.output_proj = nn.Linear(out_in, hidden, bias=False)  # W_o / W_c
        self.generator = nn.Linear(hidden, config.tgt_vocab_size)  # W_s
        self.dropout = FastDropout(config.dropout)  # nn.Dropout with a cheaper mask on CPU

    # ----------------------------------------------------------------- encoder
    def start_decoding(self, src: torch.Tensor, src_lengths: torch.Tensor) -> RNNDecodeState:
        """Encode once: ``src (B, S)`` long, ``src_lengths (B,)`` -> the first decoder state."""
        batch, src_len = check_source(src, src_lengths, vocab_size=self.config.src_vocab_size,
                                      who="RNNSeq2Seq")
        embedded = self.dropout(self.src_embed(src))  # (B, S, E)
        if self._fused_encoder(embedded):
            memory, final = self._encode_scan(embedded, src_lengths)
        else:
            packed = pack_padded_sequence(embedded, src_lengths.cpu().long(), batch_first=True,
                                          enforce_sorted=False)
            packed_out, final = self.encoder(packed)
            memory, _ = pad_packed_sequence(packed_out, batch_first=True,
                                            total_length=src_len)  # (B, S, H), 0 past lengths
        final_h, final_c = final if isinstance(final, tuple) else (final, None)
        final_h = self._join_directions(final_h)  # (layers, B, H)
        hidden = torch.tanh(self.bridge(final_h))
        cell = None
        if final_c is not None:
            cell = torch.tanh(self.bridge_cell(self._join_directions(final_c)))
        src_mask = source_padding_mask(src_lengths, src_len)  # (B, S)
        attn_state = {} if self.attention is None else \
            self.attention.init_state(memory, memory, src_mask)
        feed = memory.new_zeros(batch, self.config.hidden_dim) if self.input_feeding else None
        return RNNDecodeState(memory=memory, src_mask=src_mask, hidden=hidden, cell=cell,
                              feed=feed, attention=attn_state,
                              fixed_context=final_h[-1] if self.attention is None else None)

    def _fused_encoder(self, embedded: torch.Tensor) -> bool:
        """Whether :meth:`_encode_scan` computes this encoder: a one-layer GRU, under the
        conditions of :func:`_fused_pays` (training, outside autocast, unwatched)."""
        return (self.config.cell == "gru" and self.encoder.num_layers == 1
                and _fused_pays(self.encoder, embedded))

    def _encode_scan(self, embedded: torch.Tensor, src_lengths: torch.Tensor,
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """The one-layer GRU encoder as :func:`~attnkit.nn.seq2seq.gru_scan.gru_scan` (both
        directions in one loop, a hand-written backward): ``embedded (B, S, E)`` ->
        ``memory (B, S, H)`` (zeros past each length) and the final states ``(D, B, H / D)``,
        what ``nn.GRU`` gives on the packed batch. The reverse direction reads each row from
        its last real token back, as the packed sequence does."""
        rnn, (batch, steps, _) = self.encoder, embedded.shape
        lengths = src_lengths.to(embedded.device)
        positions = torch.arange(steps, device=embedded.device)[:, None]  # (S, 1)
        mask = positions < lengths  # (S, B)
        inputs = embedded.transpose(0, 1)  # (S, B, E)
        if rnn.bidirectional:
            weight_ih = torch.cat([rnn.weight_ih_l0, rnn.weight_ih_l0_reverse])
            bias_ih = torch.cat([rnn.bias_ih_l0, rnn.bias_ih_l0_reverse])
            gates = F.linear(inputs, weight_ih, bias_ih)  # (S, B, 6h), one product
            forward, backward = gates.chunk(2, -1)
            # row b's step t reads position L_b - 1 - t (t < L_b); an involution on (S, B)
            reverse = torch.where(mask, lengths - 1 - positions, positions)[:, :, None]
            backward = backward.gather(0, reverse.expand_as(backward))
            gates = torch.stack([forward, backward], 1)  # (S, 2, B, 3h)
            weight_hh = torch.stack([rnn.weight_hh_l0, rnn.weight_hh_l0_reverse])
            bias_hh = torch.stack([rnn.bias_hh_l0, rnn.bias_hh_l0_reverse])
        else:
            gates = F.linear(inputs, rnn.weight_ih_l0, rnn.bias_ih_l0)[:, None]  # (S, 1, B, 3h)
            weight_hh, bias_hh = rnn.weight_hh_l0[None], rnn.bias_hh_l0[None]
        hidden = embedded.new_zeros(gates.shape[1], batch, rnn.hidden_size)
        states = gru_scan(gates, hidden, weight_hh, bias_hh, mask)  # (S, D, B, h)
        outputs = states[:, 0]
        if rnn.bidirectional:
            back = states[:, 1].gather(0, reverse.expand_as(states[:, 1]))
            outputs = torch.cat([outputs, back], -1)  # (S, B, H)
        memory = (outputs * mask[:, :, None]).transpose(0, 1)  # (B, S, H)
        return memory, states[-1]

    def _join_directions(self, final: torch.Tensor) -> torch.Tensor:
        """``(layers * dirs, B, H / dirs)`` final states -> ``(layers, B, H)``, [fwd; bwd]."""
        directions = 2 if self.config.bidirectional else 1
        layers_dirs, batch, size = final.shape
        final = final.view(layers_dirs // directions, directions, batch, size)  # (L, D, B, H/D)
        return final.permute(0, 2, 1, 3).reshape(layers_dirs // directions, batch,
                                                 directions * size)  # (L, B, H)

    # ----------------------------------------------------------------- decoder
    def _rnn(self, inputs: torch.Tensor, state: RNNDecodeState,
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Run the decoder RNN on ``inputs (B, T, in)`` from ``state``; returns the top
        layer's outputs ``(B, T, H)`` and the new hidden and cell states."""
        if state.cell is None:
            out, hidden = self.decoder(inputs, state.hidden)
            return out, hidden, None
        out, (hidden, cell) = self.decoder(inputs, (state.hidden, state.cell))
        return out, hidden, cell

    def _attend(self, query: torch.Tensor, state: RNNDecodeState,
                ) -> tuple[torch.Tensor, torch.Tensor | None, State]:
        """``query (B, Lq, H)`` -> context ``(B, Lq, H)``, weights ``(B, Lq, S)`` or None,
        and the next attention state."""
        if self.attention is None:
            return state.fixed_context[:, None].expand_as(query), None, state.attention
        return self.attention(query, state.memory, mask=state.src_mask, state=state.attention)

    def _step(self, embedded: torch.Tensor, state: RNNDecodeState,
              ) -> tuple[torch.Tensor, RNNDecodeState, torch.Tensor | None]:
        """One decoder step: the embedded input ``(B, 1, E)`` (dropout applied) ->
        attentional vector ``o (B, H)``, the next state and the weights ``(B, S)`` (None
        without attention)."""
        feed = [] if state.feed is None else [state.feed[:, None]]
        if self.style == "luong":
            top, hidden, cell = self._rnn(torch.cat([embedded, *feed], -1), state)  # (B, 1, H)
            context, weights, attn_state = self._attend(top, state)
            out = torch.tanh(self.output_proj(torch.cat([context, top], -1)))  # (B, 1, H)
        else:
            context, weights, attn_state = self._attend(state.hidden[-1][:, None], state)
            top, hidden, cell = self._rnn(torch.cat([embedded, context, *feed], -1), state)
            out = torch.tanh(self.output_proj(torch.cat([top, context, embedded], -1)))
        out = out[:, 0]  # (B, H)
        next_state = replace(state, hidden=hidden, cell=cell, attention=attn_state,
                             feed=out if self.input_feeding else None)
        return out, next_state, None if weights is None else weights[:, 0]

    def _embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens (B, ...)`` long -> embeddings ``(B, ..., E)`` after dropout."""
        return self.dropout(self.tgt_embed(tokens))

    def decode_step(self, tokens: torch.Tensor, state: RNNDecodeState, *,
                    return_alignment: bool = False,
                    ) -> tuple[torch.Tensor, RNNDecodeState, torch.Tensor | None]:
        """Feed ``tokens (B,)`` long; returns logits ``(B, V)``, the next state and, with
        ``return_alignment``, the attention weights ``(B, S)`` of this step, else None.
        Padded positions get 0. Rows sum to 1 for the softmax mechanisms; local-m rows are
        zero once the window leaves the source, local-p rows sum to less than 1 and
        monotonic rows to at most 1 (see their modules). Without attention: always None."""
        if not isinstance(state, RNNDecodeState):
            raise TypeError(f"RNNSeq2Seq: state must come from start_decoding, got "
                            f"{type(state).__name__}")
        batch = state.memory.shape[0]
        check_token_ids(tokens, "tokens", layout="(B,)", vocab_size=self.config.tgt_vocab_size,
                        who="RNNSeq2Seq")
        if tuple(tokens.shape) != (batch,):
            raise ValueError(f"RNNSeq2Seq: tokens must have shape (B,) = ({batch},) (the "
                             f"state's batch), got {tuple(tokens.shape)}")
        out, state, weights = self._step(self._embed(tokens)[:, None], state)
        logits = self.generator(self.dropout(out))  # (B, V)
        return logits, state, weights if return_alignment else None

    def reorder_state(self, state: RNNDecodeState, index: torch.Tensor) -> RNNDecodeState:
        """New row ``j`` = old row ``index[j]``; ``index (B',)`` long (beam search)."""
        if not isinstance(state, RNNDecodeState):
            raise TypeError(f"RNNSeq2Seq: state must come from start_decoding, got "
                            f"{type(state).__name__}")
        index = check_row_index(index, state.memory.shape[0], who="RNNSeq2Seq")
        return state.index_select(index.to(state.memory.device))

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor, *,
                teacher_forcing_ratio: float | None = None) -> torch.Tensor:
        """Teacher-forced logits ``(B, T, V)``.

        Args:
            src: ``(B, S)`` long, padded with ``pad_id``.
            src_lengths: ``(B,)`` long, each in ``[1, S]``.
            tgt_in: ``(B, T)`` long, BOS + target.
            teacher_forcing_ratio: overrides ``config.teacher_forcing_ratio`` (training
                mode only; eval mode always feeds ``tgt_in``).
        """
        ratio = self._ratio(teacher_forcing_ratio)
        if self.training and ratio < 1.0:
            state = self._start_checked(src, src_lengths, tgt_in)
            return self._forward_sampled(tgt_in, state, ratio)
        return self.generator(self._features(src, src_lengths, tgt_in))  # one projection

    def output_features(self, src: torch.Tensor, src_lengths: torch.Tensor,
                        tgt_in: torch.Tensor, *, teacher_forcing_ratio: float | None = None,
                        ) -> torch.Tensor | None:
        """The output layer's input ``(B, T, H)`` (after dropout), so that
        ``generator(output_features(...))`` is ``forward(...)``; arguments as
        :meth:`forward`. None while training with scheduled sampling (ratio < 1), where
        the output layer runs inside the step loop: call :meth:`forward` then.
        :func:`attnkit.train.seq2seq_loss_fn` uses it to fuse the output layer with the
        loss."""
        ratio = self._ratio(teacher_forcing_ratio)
        if self.training and ratio < 1.0:
            return None
        return self._features(src, src_lengths, tgt_in)

    def _ratio(self, teacher_forcing_ratio: float | None) -> float:
        if teacher_forcing_ratio is None:
            return self.config.teacher_forcing_ratio
        return check_float(teacher_forcing_ratio, "teacher_forcing_ratio", low=0.0, high=1.0,
                           owner="RNNSeq2Seq")

    def _start_checked(self, src: torch.Tensor, src_lengths: torch.Tensor,
                       tgt_in: torch.Tensor) -> RNNDecodeState:
        state = self.start_decoding(src, src_lengths)
        check_token_ids(tgt_in, "tgt_in", layout="(B, T)", vocab_size=self.config.tgt_vocab_size,
                        who="RNNSeq2Seq")
        if tgt_in.shape[0] != src.shape[0]:
            raise ValueError(f"RNNSeq2Seq: tgt_in must have B = {src.shape[0]} rows (as src), "
                             f"got shape {tuple(tgt_in.shape)}")
        return state

    def _features(self, src: torch.Tensor, src_lengths: torch.Tensor,
                  tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher-forced attentional vectors of all steps, after dropout: ``(B, T, H)``."""
        state = self._start_checked(src, src_lengths, tgt_in)
        embedded = self._embed(tgt_in)  # (B, T, E)
        if self.style == "luong" and not self.input_feeding:
            out = self._decode_parallel(embedded, state)
        elif self.attention is None and not self.input_feeding:
            out = self._decode_fixed(embedded, state)
        elif self._fused_additive(embedded):
            out = self._decode_additive(embedded, state)
        elif self._fused_luong(embedded):
            out = self._decode_luong(embedded, state)
        else:
            out = self._decode_loop(embedded, state)
        return self.dropout(out)

    # The teacher-forced decoders below return the attentional vectors o (B, T, H) of all
    # steps; forward applies the output layer to all of them at once.

    def _decode_parallel(self, embedded: torch.Tensor, state: RNNDecodeState) -> torch.Tensor:
        """Luong style without input feeding: all ``T`` steps in one RNN and one attention
        call (equal to stepping, as every mechanism treats ``Lq`` rows as ``Lq`` steps)."""
        top, _, _ = self._rnn(embedded, state)  # (B, T, H)
        context, _, _ = self._attend(top, state)  # (B, T, H)
        return torch.tanh(self.output_proj(torch.cat([context, top], -1)))  # (B, T, H)

    def _decode_fixed(self, embedded: torch.Tensor, state: RNNDecodeState) -> torch.Tensor:
        """``attention=None`` without input feeding: the context ``c`` is the same at every
        step, so the decoder is one RNN over ``[E y_t; c]``. While training a one-layer GRU,
        the recurrence is :func:`~attnkit.nn.seq2seq.gru_scan.gru_scan`, and ``c``'s part of
        the input gates and of the output layer is computed once per sentence, not per
        step (the same sums, fewer products)."""
        rnn, hidden, embed_dim = self.decoder, self.config.hidden_dim, embedded.shape[2]
        fixed = state.fixed_context  # (B, H)
        if not (self.config.cell == "gru" and rnn.num_layers == 1
                and _fused_pays(rnn, embedded)):
            context = fixed[:, None].expand(-1, embedded.shape[1], -1)  # (B, T, H)
            top, _, _ = self._rnn(torch.cat([embedded, context], -1), state)  # (B, T, H)
            return torch.tanh(self.output_proj(torch.cat([top, context, embedded], -1)))
        per_sentence = F.linear(fixed, rnn.weight_ih_l0[:, embed_dim:], rnn.bias_ih_l0)
        gates = F.linear(embedded.transpose(0, 1), rnn.weight_ih_l0[:, :embed_dim])
        gates = gates.add_(per_sentence)  # (T, B, 3H)
        top = gru_scan(gates[:, None], state.hidden, rnn.weight_hh_l0[None],
                       rnn.bias_hh_l0[None])[:, 0].transpose(0, 1)  # (B, T, H)
        weight = self.output_proj.weight  # (H, 2H + E), acting on [s; c; E y]
        out = F.linear(torch.cat([top, embedded], -1),
                       torch.cat([weight[:, :hidden], weight[:, 2 * hidden:]], 1))
        out = out.add_(F.linear(fixed, weight[:, hidden:2 * hidden])[:, None])  # (B, T, H)
        return torch.tanh(out)

    def _fused_additive(self, embedded: torch.Tensor) -> bool:
        """Whether :func:`~attnkit.nn.seq2seq.additive_gru.additive_gru_decode` computes this
        model's recurrence: Bahdanau style with additive attention, a one-layer GRU, no input
        feeding, outside autocast (where the step modules cast per operation)."""
        return (self.style == "bahdanau" and type(self.attention) is AdditiveAttention
                and self.config.cell == "gru" and self.decoder.num_layers == 1
                and not self.input_feeding and _fused_pays(self.attention, embedded))

    def _decode_additive(self, embedded: torch.Tensor, state: RNNDecodeState) -> torch.Tensor:
        """The Bahdanau decoder with additive attention and a one-layer GRU: the recurrence
        as one fused autograd function with a hand-written backward (fewer, larger matrix
        products; see :mod:`attnkit.nn.seq2seq.additive_gru`), the output layer on all steps
        after it."""
        embed_dim, rnn, attention = embedded.shape[2], self.decoder, self.attention
        input_gates = F.linear(embedded.transpose(0, 1), rnn.weight_ih_l0[:, :embed_dim],
                               rnn.bias_ih_l0)  # (T, B, 3H), time-major
        states, contexts = additive_gru_decode(
            input_gates, state.hidden[0], state.memory, state.attention["key_proj"],
            state.src_mask, rnn.weight_hh_l0, rnn.bias_hh_l0, attention.query_proj.weight,
            rnn.weight_ih_l0[:, embed_dim:], attention.score_vector)  # (T, B, H) each
        parts = [states.transpose(0, 1), contexts.transpose(0, 1), embedded]
        return torch.tanh(self.output_proj(torch.cat(parts, -1)))  # (B, T, H)

    def _fused_luong(self, embedded: torch.Tensor) -> bool:
        """Whether :func:`~attnkit.nn.seq2seq.luong_gru.luong_gru_decode` computes this
        model's recurrence: Luong style with global ``dot``/``general`` attention (no score
        scale), a one-layer GRU and input feeding, outside autocast."""
        attention = self.attention
        return (self.style == "luong" and type(attention) is LuongAttention
                and attention.mode in ("dot", "general") and attention.score_scale is None
                and self.config.cell == "gru" and self.decoder.num_layers == 1
                and self.input_feeding and _fused_pays(attention, embedded))

    def _decode_luong(self, embedded: torch.Tensor, state: RNNDecodeState) -> torch.Tensor:
        """The Luong decoder with input feeding and a one-layer GRU: the recurrence, the
        attention and the output layer ``o_t`` (an input of step ``t + 1``) as one fused
        autograd function (:mod:`attnkit.nn.seq2seq.luong_gru`)."""
        embed_dim, rnn = embedded.shape[2], self.decoder
        input_gates = F.linear(embedded.transpose(0, 1), rnn.weight_ih_l0[:, :embed_dim],
                               rnn.bias_ih_l0)  # (T, B, 3H), time-major
        outputs = luong_gru_decode(
            input_gates, state.hidden[0], state.feed, state.memory, state.attention["key_proj"],
            state.src_mask, rnn.weight_hh_l0, rnn.bias_hh_l0, rnn.weight_ih_l0[:, embed_dim:],
            self.output_proj.weight)  # (T, B, H)
        return outputs.transpose(0, 1)  # (B, T, H)

    def _decode_loop(self, embedded: torch.Tensor, state: RNNDecodeState) -> torch.Tensor:
        """Every configuration with a step-to-step dependence beyond the RNN itself (an
        attention read, input feeding). The loop holds only what is recurrent: the RNN
        update, the attention read and, with input feeding, the output layer. The first
        RNN layer's input projection of ``E y`` for all steps is one matrix product before
        the loop; without input feeding the output layer runs on all steps after it."""
        embed_dim = embedded.shape[2]
        rnn, bahdanau, feeding = self.decoder, self.style == "bahdanau", self.input_feeding
        emb_gates = F.linear(embedded, rnn.weight_ih_l0[:, :embed_dim],
                             rnn.bias_ih_l0)  # (B, T, G H)
        # the rest of W_ih acts on [c_i (; o_{i-1})] (Bahdanau) or on o_{t-1} (Luong)
        rest_weight = rnn.weight_ih_l0[:, embed_dim:].t()  # (H or 2H, G H)
        fixed = self.attention is None  # the context is the same at every step
        if fixed:
            context = state.fixed_context  # (B, H)
            emb_gates = emb_gates + (context @ rest_weight[:context.shape[1]])[:, None]
            rest_weight = rest_weight[context.shape[1]:]
        hidden = list(state.hidden.unbind(0))  # layers x (B, H)
        cell = None if state.cell is None else list(state.cell.unbind(0))
        attn_state, feed = state.attention, state.feed
        tops, contexts, outs = [], [], []
        # unbind: one backward node for all steps (indexing emb_gates[:, i] in the loop
        # would allocate a zero (B, T, G H) gradient per step)
        for step_gates, step_embedded in zip(emb_gates.unbind(1), embedded.unbind(1),
                                             strict=True):
            rest = []
            if bahdanau and not fixed:
                context, attn_state = self._read(hidden[-1], state, attn_state)  # (B, H)
                rest.append(context)
            if feeding:
                rest.append(feed)
            gates = step_gates if not rest else torch.addmm(
                step_gates, rest[0] if len(rest) == 1 else torch.cat(rest, -1), rest_weight)
            hidden, cell = self._cell_update(gates, hidden, cell)  # gates: (B, G H)
            top = hidden[-1]  # (B, H)
            if not bahdanau:
                context, attn_state = self._read(top, state, attn_state)
            if feeding:  # o_t is the next step's input: the output layer stays in the loop
                parts = [context, top] if not bahdanau else [top, context, step_embedded]
                feed = torch.tanh(self.output_proj(torch.cat(parts, -1)))  # (B, H)
                outs.append(feed)
            else:
                tops.append(top)
                contexts.append(context)
        if feeding:
            return torch.stack(outs, 1)  # (B, T, H)
        top, context = torch.stack(tops, 1), torch.stack(contexts, 1)  # (B, T, H) each
        parts = [context, top] if not bahdanau else [top, context, embedded]
        return torch.tanh(self.output_proj(torch.cat(parts, -1)))  # (B, T, H)

    def _read(self, query: torch.Tensor, state: RNNDecodeState, attn_state: State,
              ) -> tuple[torch.Tensor, State]:
        """One attention read with ``query (B, H)`` -> context ``(B, H)`` and the next
        attention state (the fixed vector without attention)."""
        if self.attention is None:
            return state.fixed_context, attn_state
        context, _, attn_state = self.attention(query[:, None], state.memory,
                                                mask=state.src_mask, state=attn_state)
        return context[:, 0], attn_state

    def _cell_update(self, gates: torch.Tensor, hidden: list[torch.Tensor],
                     cell: list[torch.Tensor] | None,
                     ) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
        """One step of the stacked decoder RNN, with the first layer's input projection
        ``W_ih x + b_ih`` given as ``gates (B, G H)``; the equations of ``nn.GRU`` /
        ``nn.LSTM`` with their weights (and their dropout between layers)."""
        rnn = self.decoder
        new_hidden, new_cell = [], None if cell is None else []
        for layer in range(rnn.num_layers):
            if layer > 0:
                below = F.dropout(new_hidden[-1], rnn.dropout, self.training)
                gates = F.linear(below, getattr(rnn, f"weight_ih_l{layer}"),
                                 getattr(rnn, f"bias_ih_l{layer}"))
            recurrent = F.linear(hidden[layer], getattr(rnn, f"weight_hh_l{layer}"),
                                 getattr(rnn, f"bias_hh_l{layer}"))  # (B, G H)
            if cell is None:  # GRU: reset r, update z, candidate n
                x_r, x_z, x_n = gates.chunk(3, 1)
                h_r, h_z, h_n = recurrent.chunk(3, 1)
                reset = torch.sigmoid(x_r + h_r)
                update = torch.sigmoid(x_z + h_z)
                candidate = torch.tanh(x_n + reset * h_n)
                new_hidden.append(candidate + update * (hidden[layer] - candidate))
            else:  # LSTM: input, forget, cell candidate, output
                in_gate, forget, candidate, out_gate = (gates + recurrent).chunk(4, 1)
                c = torch.sigmoid(forget) * cell[layer] + \
                    torch.sigmoid(in_gate) * torch.tanh(candidate)
                new_cell.append(c)
                new_hidden.append(torch.sigmoid(out_gate) * torch.tanh(c))
        return new_hidden, new_cell

    def _forward_sampled(self, tgt_in: torch.Tensor, state: RNNDecodeState,
                         ratio: float) -> torch.Tensor:
        """Scheduled sampling: each step's input may be the previous step's greedy token,
        so the vocabulary projection stays inside the loop."""
        logits, tokens = [], tgt_in[:, 0]
        for i in range(tgt_in.shape[1]):
            if i > 0:
                gold = torch.rand(tokens.shape, device=tokens.device) < ratio
                tokens = torch.where(gold, tgt_in[:, i], logits[-1].argmax(-1))
            out, state, _ = self._step(self._embed(tokens)[:, None], state)
            logits.append(self.generator(self.dropout(out)))  # (B, V)
        return torch.stack(logits, dim=1)  # (B, T, V)


def _fused_pays(attention: nn.Module, embedded: torch.Tensor) -> bool:
    """The fused decoders run where they pay and change nothing observable: while autograd
    records (their gain is the hand-written backward), outside autocast (where the step
    modules cast per operation), and not while a hook watches the attention module. Without
    gradients (evaluation, :func:`attnkit.interp.capture`) the step loop runs, so capturing
    leaves outputs bitwise unchanged; with gradients the two paths agree to rounding."""
    return (torch.is_grad_enabled() and not _observed(attention)
            and not torch.is_autocast_enabled(embedded.device.type))


def _observed(module: nn.Module) -> bool:
    """Whether forward hooks (the module's own or global ones) would see ``module`` run; the
    fused decoders compute its equations without calling it, so they step aside."""
    from torch.nn.modules import module as torch_module

    return bool(module._forward_hooks or module._forward_pre_hooks
                or torch_module._global_forward_hooks
                or torch_module._global_forward_pre_hooks)


def build_rnn_seq2seq(config: RNNSeq2SeqConfig, attention: str = "bahdanau",
                      **attention_options: object) -> RNNSeq2Seq:
    """An :class:`RNNSeq2Seq` with the attention named ``attention``.

    Args:
        config: :class:`RNNSeq2SeqConfig`.
        attention: a key of :data:`ATTENTION_KINDS`: ``"bahdanau"``, ``"luong-dot"``,
            ``"luong-general"``, ``"luong-concat"``, ``"luong-location"`` (needs
            ``max_source_len=``), ``"local-m"``, ``"local-p"``, ``"location"``
            (location-sensitive), ``"monotonic"``, ``"hard"`` (Gumbel straight-through
            by default) or ``"none"`` (fixed-vector baseline).
        **attention_options: keyword arguments for the attention's constructor, e.g.
            ``window=4`` for local attention or ``kernel_size=5`` for ``"location"``.
    """
    if not isinstance(config, RNNSeq2SeqConfig):
        raise TypeError(f"build_rnn_seq2seq: config must be an RNNSeq2SeqConfig, got "
                        f"{type(config).__name__}")
    return RNNSeq2Seq(config, build_attention(attention, config.hidden_dim, **attention_options))
