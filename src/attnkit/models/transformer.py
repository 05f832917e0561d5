"""The Transformer encoder-decoder of Vaswani et al. 2017, "Attention Is All You Need"
(arXiv:1706.03762), for sequence-to-sequence tasks such as translation.

The encoder reads the source with self-attention (source padding masked out);
the decoder predicts each target token from the earlier ones (causal
self-attention) and from the encoder output (cross-attention, padding masked).
It implements the seq2seq decoding protocol used by :mod:`attnkit.train.decoding`:
``start_decoding`` / ``decode_step`` / ``reorder_state``, with a
:class:`~attnkit.nn.KVCache` per decoder self-attention and a
:class:`~attnkit.nn.StaticKVCache` per cross-attention (the source is projected once).

Deviations and choices:

* ``norm_first=True`` (pre-norm, Xiong et al. 2020, arXiv:2002.04745) is the
  default because it trains without a long warm-up; ``False`` is the paper's post-norm.
* Grouped-query attention (``num_kv_heads``) and rotary positions are options the
  paper does not have; ``positional="sinusoidal"`` is the paper's.
* Initialization: Xavier-uniform linear weights and zero biases (as the
  reference tensor2tensor code), token embeddings ``N(0, 1/d_model)`` so that
  after the paper's ``sqrt(d_model)`` scaling they have unit variance (as fairseq);
  the padding row is zero. Learned position tables keep their ``N(0, 0.02^2)``.
* ``share_embeddings`` ties the source embedding, the target embedding and the
  output projection (the paper's shared BPE vocabulary); otherwise all three are
  separate. The output projection has no bias.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from attnkit import masks
from attnkit._validate import check_bool, check_choice, check_int
from attnkit.models._blocks import (
    ACTIVATIONS,
    DecoderLayer,
    EncoderLayer,
    TokenEmbedding,
    check_common,
    make_rotary,
)
from attnkit.nn._inputs import check_lengths, check_row_index, check_source, check_token_ids
from attnkit.nn.kv_cache import KVCache, StaticKVCache

__all__ = ["TransformerConfig", "Transformer", "TransformerDecodeState"]

_WHO = "TransformerConfig"


@dataclass
class TransformerConfig:
    """Hyper-parameters of :class:`Transformer` (defaults: the paper's base model,
    except pre-norm). Invalid values raise ValueError/TypeError naming the field."""

    src_vocab_size: int  # source vocabulary size (token ids in [0, src_vocab_size))
    tgt_vocab_size: int  # target vocabulary size; equal to src_vocab_size to share embeddings
    d_model: int = 512  # model width E
    num_heads: int = 8  # query heads per attention; must divide d_model
    num_kv_heads: int | None = None  # key/value heads (None: num_heads; fewer: GQA/MQA)
    num_encoder_layers: int = 6  # encoder layers
    num_decoder_layers: int = 6  # decoder layers
    ffn_dim: int = 2048  # hidden width of the feed-forward sub-layers
    dropout: float = 0.1  # on embeddings, attention weights and sub-layer outputs
    norm_first: bool = True  # pre-norm (True) or the paper's post-norm (False)
    share_embeddings: bool = False  # tie source/target embeddings and output projection
    positional: str = "sinusoidal"  # "sinusoidal" | "learned" | "rotary"
    max_len: int = 1024  # longest source/target for sinusoidal/learned positions
    pad_id: int = 0  # padding token id (its embedding row is zero and gets no gradient)
    activation: str = "relu"  # feed-forward activation: "relu" (the paper) or "gelu"
    rotary_base: float = 10000.0  # frequency base of rotary positions (Llama 3: 500000)

    def __post_init__(self) -> None:
        for field in ("src_vocab_size", "tgt_vocab_size", "max_len", "num_encoder_layers",
                      "num_decoder_layers"):
            check_int(getattr(self, field), field, minimum=1, owner=_WHO)
        check_common(_WHO, self)
        for field in ("norm_first", "share_embeddings"):
            check_bool(getattr(self, field), field, owner=_WHO)
        if self.share_embeddings and self.src_vocab_size != self.tgt_vocab_size:
            raise ValueError(f"{_WHO}: share_embeddings=True needs one vocabulary, got "
                             f"src_vocab_size={self.src_vocab_size} and "
                             f"tgt_vocab_size={self.tgt_vocab_size}")
        check_int(self.pad_id, "pad_id", minimum=0, owner=_WHO)
        if self.pad_id >= min(self.src_vocab_size, self.tgt_vocab_size):
            raise ValueError(f"{_WHO}: pad_id ({self.pad_id}) must be a token id below both "
                             f"vocabulary sizes")
        check_choice(self.activation, "activation", sorted(ACTIVATIONS), owner=_WHO)

    def to_dict(self) -> dict:
        """JSON-able fields (for checkpoints); ``TransformerConfig(**d)`` rebuilds it."""
        return dataclasses.asdict(self)


@dataclass
class TransformerDecodeState:
    """What :meth:`Transformer.decode_step` carries between steps (mutated in place)."""

    memory: torch.Tensor | None  # (B, S, E) encoder output; None once the cross caches hold it
    src_lengths: torch.Tensor  # (B,) real source tokens per row (the cross-attention mask)
    self_caches: list[KVCache]  # one per decoder layer: keys/values of decoded tokens
    cross_caches: list[StaticKVCache]  # one per decoder layer: projected memory
    step: int = 0  # tokens decoded so far (the next token's position)

    @property
    def batch_size(self) -> int:
        return self.src_lengths.shape[0]


_WHO_MODEL = "Transformer"


class Transformer(nn.Module):
    """Encoder-decoder Transformer.

    Shapes: ``B`` batch, ``S`` source length, ``T`` target length, ``E`` d_model,
    ``V`` target vocabulary. Sources are right-padded; ``src_lengths`` says how many
    positions of each row are real (the rest are masked out everywhere).

    Example:
        >>> import torch
        >>> from attnkit.models.transformer import Transformer, TransformerConfig
        >>> model = Transformer(TransformerConfig(11, 13, d_model=16, num_heads=2,
        ...     num_encoder_layers=1, num_decoder_layers=1, ffn_dim=32))
        >>> src, tgt_in = torch.randint(4, 11, (2, 5)), torch.randint(4, 13, (2, 3))
        >>> model(src, torch.tensor([5, 3]), tgt_in).shape
        torch.Size([2, 3, 13])
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        if not isinstance(config, TransformerConfig):
            raise TypeError(f"config must be a TransformerConfig, got {type(config).__name__}")
        self.config = c = config
        embed = dict(positional=c.positional, max_len=c.max_len, dropout=c.dropout, scale=True,
                     padding_idx=c.pad_id)
        self.src_embed = TokenEmbedding(c.src_vocab_size, c.d_model, **embed)
        self.tgt_embed = TokenEmbedding(c.tgt_vocab_size, c.d_model, **embed)
        rotary = make_rotary(c.positional, c.d_model // c.num_heads, c.rotary_base)
        layer = dict(num_kv_heads=c.num_kv_heads, dropout=c.dropout, norm_first=c.norm_first,
                     activation=c.activation, rotary=rotary)
        self.encoder = nn.ModuleList(EncoderLayer(c.d_model, c.num_heads, c.ffn_dim, **layer)
                                     for _ in range(c.num_encoder_layers))
        self.decoder = nn.ModuleList(DecoderLayer(c.d_model, c.num_heads, c.ffn_dim, **layer)
                                     for _ in range(c.num_decoder_layers))
        # Pre-norm leaves the residual stream unnormalized: one LayerNorm after each stack.
        self.encoder_norm = nn.LayerNorm(c.d_model) if c.norm_first else nn.Identity()
        self.decoder_norm = nn.LayerNorm(c.d_model) if c.norm_first else nn.Identity()
        self.output = nn.Linear(c.d_model, c.tgt_vocab_size, bias=False)
        self._init_weights()
        if c.share_embeddings:
            self.tgt_embed.token.weight = self.src_embed.token.weight
            self.output.weight = self.src_embed.token.weight

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for embed in (self.src_embed, self.tgt_embed):
            nn.init.normal_(embed.token.weight, std=self.config.d_model ** -0.5)
            with torch.no_grad():
                embed.token.weight[self.config.pad_id].zero_()

    # ------------------------------------------------------------------ full passes

    def source_mask(self, src: torch.Tensor, src_lengths: torch.Tensor) -> masks.MaskMod:
        """The source key-padding mask ``attnkit.masks.key_padding(src_lengths)``: keys at
        positions ``>= src_lengths[b]`` are hidden. A structured mask (not a dense
        ``(B, 1, 1, S)`` tensor), so the tiled and Triton kernels skip the padded tiles.

        Args:
            src: ``(B, S)`` token ids (checked; only their shape and device are used).
            src_lengths: ``(B,)`` integer, each in ``[1, S]``.
        """
        check_source(src, src_lengths, vocab_size=self.config.src_vocab_size, who=_WHO_MODEL)
        return masks.key_padding(src_lengths)

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> torch.Tensor:
        """Encode a right-padded source batch.

        Args:
            src: ``(B, S)`` long token ids.
            src_lengths: ``(B,)`` long, real tokens per row, each in ``[1, S]``.

        Returns:
            memory ``(B, S, E)``; padded positions hold values that nothing attends to.
        """
        mask = self.source_mask(src, src_lengths)
        x = self.src_embed(src)  # (B, S, E)
        for layer in self.encoder:
            x = layer(x, mask=mask)
        return self.encoder_norm(x)

    def decode(self, tgt_in: torch.Tensor, memory: torch.Tensor,
               src_lengths: torch.Tensor) -> torch.Tensor:
        """Teacher-forced decoder pass.

        Args:
            tgt_in: ``(B, T)`` long, BOS + target tokens.
            memory: ``(B, S, E)`` from :meth:`encode`.
            src_lengths: ``(B,)`` long, real source tokens per row, each in ``[1, S]``.

        Returns:
            logits ``(B, T, V)``; position ``t`` sees ``tgt_in[:, :t + 1]`` only.
        """
        check_token_ids(tgt_in, "tgt_in", layout="(B, T)", vocab_size=self.config.tgt_vocab_size,
                        who=_WHO_MODEL)
        self._check_memory(memory)
        if tgt_in.shape[0] != memory.shape[0]:
            raise ValueError(f"{_WHO_MODEL}: tgt_in must have B = {memory.shape[0]} rows (as "
                             f"the source), got shape {tuple(tgt_in.shape)}")
        check_lengths(src_lengths, batch=memory.shape[0], width=memory.shape[1],
                      device=memory.device, who=_WHO_MODEL)
        mask = masks.key_padding(src_lengths)
        y = self.tgt_embed(tgt_in)  # (B, T, E)
        for layer in self.decoder:
            y, _ = layer(y, memory, memory_mask=mask)
        return self.output(self.decoder_norm(y))  # (B, T, V)

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor,
                tgt_in: torch.Tensor) -> torch.Tensor:
        """``src (B, S)``, ``src_lengths (B,)``, ``tgt_in (B, T)`` -> logits ``(B, T, V)``."""
        return self.decode(tgt_in, self.encode(src, src_lengths), src_lengths)

    def _check_memory(self, memory: object) -> None:
        E = self.config.d_model
        if not isinstance(memory, torch.Tensor):
            raise TypeError(f"{_WHO_MODEL}: memory must be a torch.Tensor, got "
                            f"{type(memory).__name__}")
        if memory.dim() != 3 or memory.shape[2] != E or 0 in memory.shape:
            raise ValueError(f"{_WHO_MODEL}: memory must be (B >= 1, S >= 1, E={E}), got "
                             f"shape {tuple(memory.shape)}")

    # ------------------------------------------------------------------ incremental decoding

    def start_decoding(self, src: torch.Tensor, src_lengths: torch.Tensor
                       ) -> TransformerDecodeState:
        """Encode ``src (B, S)`` with ``src_lengths (B,)`` once and return empty caches."""
        memory = self.encode(src, src_lengths)  # (B, S, E)
        layers = len(self.decoder)
        return TransformerDecodeState(
            memory=memory, src_lengths=src_lengths,
            self_caches=[KVCache() for _ in range(layers)],
            cross_caches=[StaticKVCache() for _ in range(layers)],
        )

    def decode_step(self, tokens: torch.Tensor, state: TransformerDecodeState, *,
                    return_alignment: bool = False
                    ) -> tuple[torch.Tensor, TransformerDecodeState, torch.Tensor | None]:
        """Feed one token per row and get the next-token logits.

        Equal (up to rounding) to :meth:`decode` on the whole prefix, taking its last
        position. The caches in ``state`` are updated in place; ``state`` is returned.

        Args:
            tokens: ``(B,)`` long, the previous token of each row (BOS first).
            state: from :meth:`start_decoding` (or the previous step / :meth:`reorder_state`).
            return_alignment: also return the last decoder layer's cross-attention
                weights averaged over heads.

        Returns:
            ``(logits (B, V), state, alignment (B, S) or None)``; padded source
            positions get alignment 0.
        """
        if not isinstance(state, TransformerDecodeState):
            raise TypeError(f"{_WHO_MODEL}: state must come from start_decoding(), got "
                            f"{type(state).__name__}")
        check_token_ids(tokens, "tokens", layout="(B,)", vocab_size=self.config.tgt_vocab_size,
                        who=_WHO_MODEL)
        if tokens.shape[0] != state.batch_size:
            raise ValueError(f"{_WHO_MODEL}: tokens must have shape ({state.batch_size},) (the "
                             f"state's batch), got {tuple(tokens.shape)}")
        memory_mask = masks.key_padding(state.src_lengths)
        y = self.tgt_embed(tokens[:, None], offset=state.step)  # (B, 1, E)
        last = len(self.decoder) - 1
        weights = None
        for i, layer in enumerate(self.decoder):
            y, weights = layer(y, state.memory, memory_mask=memory_mask,
                               self_cache=state.self_caches[i], cross_cache=state.cross_caches[i],
                               return_weights=return_alignment and i == last)
        logits = self.output(self.decoder_norm(y))[:, 0]  # (B, V)
        state.memory = None  # projected into the cross caches by the first step
        state.step += 1
        alignment = None if weights is None else weights.mean(dim=1)[:, 0]  # (B, S)
        return logits, state, alignment

    def reorder_state(self, state: TransformerDecodeState, index: torch.Tensor
                      ) -> TransformerDecodeState:
        """Select/reorder batch rows for beam search: new row ``j`` = old row ``index[j]``.

        Rows may repeat or be dropped. Updates ``state`` (and its caches) in place and
        returns it.

        Args:
            state: a decoding state with batch ``B``.
            index: ``(B',)`` long, each in ``[0, B)``.
        """
        if not isinstance(state, TransformerDecodeState):
            raise TypeError(f"{_WHO_MODEL}: state must come from start_decoding(), got "
                            f"{type(state).__name__}")
        index = check_row_index(index, state.batch_size, who=_WHO_MODEL)
        index = index.to(state.src_lengths.device)
        state.src_lengths = state.src_lengths.index_select(0, index)  # (B',)
        if state.memory is not None:
            state.memory = state.memory.index_select(0, index)  # (B', S, E)
        for cache in (*state.self_caches, *state.cross_caches):
            cache.index_select(index)
        return state
