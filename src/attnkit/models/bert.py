"""BERT-style encoder that loads Hugging Face BERT weights.

BERT: Devlin, Chang, Lee & Toutanova 2018, "BERT: Pre-training of Deep
Bidirectional Transformers for Language Understanding" (arXiv:1810.04805).

Embeddings are word + learned absolute position + token type (segment), then
LayerNorm and dropout. Every layer is post-norm, as in the paper::

    x = LayerNorm(x + Dropout(SelfAttention(x)))
    x = LayerNorm(x + Dropout(Linear(GELU(Linear(x)))))

Self-attention is :class:`attnkit.nn.MultiHeadAttention`, so it runs on any attnkit
backend (SDPA by default; the reference backend when attention weights are asked for).

``BertEncoder.from_pretrained`` reads a Hugging Face BERT folder (``config.json``
and ``model.safetensors``) and maps every tensor name onto this module's parameters
explicitly; it never unpickles (the Hugging Face side lives in
:mod:`attnkit.models.bert_hf`). :func:`mean_pool` turns the encoder output into
sentence embeddings.

Padding: a right-padded ``attention_mask`` (ones, then zeros, the tokenizers' default)
becomes ``attnkit.masks.key_padding(lengths)``, a structured mask whose padded tiles the
tiled and Triton kernels skip; any other 0/1 pattern (e.g. left padding) stays a dense
``(B, 1, 1, L)`` mask.

Deviations from the paper's model: the encoder only (no pooler, no masked-LM or
next-sentence heads; their tensors in a checkpoint are skipped); only absolute
positions; a sequence whose ``attention_mask`` is all zeros attends to nothing, so
its attention outputs are zeros (attnkit's empty-row rule), where Hugging Face
spreads the weights over the masked keys.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from attnkit import masks
from attnkit._validate import check_bool, check_choice, check_float, check_int
from attnkit.models.bert_hf import HFConfigMixin, HFWeightsMixin
from attnkit.nn._inputs import check_token_ids
from attnkit.nn.multihead import MultiHeadAttention
from attnkit.nn.positional import LearnedPositionalEmbedding

__all__ = ["BertConfig", "BertOutput", "BertEncoder", "mean_pool"]

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "gelu": nn.GELU,  # exact erf form, the one BERT was trained with
    "gelu_new": functools.partial(nn.GELU, approximate="tanh"),
    "gelu_pytorch_tanh": functools.partial(nn.GELU, approximate="tanh"),
    "relu": nn.ReLU,
}
_WHO = "BertConfig"


@dataclass
class BertConfig(HFConfigMixin):
    """Sizes and options of a :class:`BertEncoder`; field names are those of a
    Hugging Face BERT ``config.json`` (the defaults are bert-base's)."""

    vocab_size: int = 30522  # rows of the word-embedding table
    hidden_size: int = 768  # H, the width of every hidden state
    num_hidden_layers: int = 12  # number of encoder layers
    num_attention_heads: int = 12  # heads per layer; must divide hidden_size
    intermediate_size: int = 3072  # hidden units of each feed-forward block
    hidden_act: str = "gelu"  # feed-forward activation: a key of _ACTIVATIONS
    hidden_dropout_prob: float = 0.1  # dropout on embeddings, attention and FFN outputs
    attention_probs_dropout_prob: float = 0.1  # dropout on the attention weights
    max_position_embeddings: int = 512  # longest input (rows of the position table)
    type_vocab_size: int = 2  # number of token types (segments A and B)
    layer_norm_eps: float = 1e-12  # epsilon of every LayerNorm
    pad_token_id: int | None = 0  # word-embedding row kept out of training; None: none
    initializer_range: float = 0.02  # std of the normal init of a fresh (unloaded) model

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings", "type_vocab_size"):
            check_int(getattr(self, name), name, minimum=1, owner=_WHO)
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"{_WHO}: num_attention_heads ({self.num_attention_heads}) must "
                             f"divide hidden_size ({self.hidden_size})")
        check_choice(self.hidden_act, "hidden_act", sorted(_ACTIVATIONS), owner=_WHO)
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            setattr(self, name, check_float(getattr(self, name), name, low=0.0, high=1.0,
                                            high_open=True, owner=_WHO))
        self.layer_norm_eps = check_float(self.layer_norm_eps, "layer_norm_eps", low=0.0,
                                          low_open=True, owner=_WHO)
        self.initializer_range = check_float(self.initializer_range, "initializer_range",
                                             low=0.0, owner=_WHO)
        if self.pad_token_id is not None:
            check_int(self.pad_token_id, "pad_token_id", minimum=0, owner=_WHO)
            if self.pad_token_id >= self.vocab_size:
                raise ValueError(f"{_WHO}: pad_token_id ({self.pad_token_id}) must be < vocab_size "
                                 f"({self.vocab_size})")

class BertOutput(NamedTuple):
    """What :meth:`BertEncoder.forward` returns.

    Fields:
        last_hidden_state: ``(B, L, H)``, the last layer's output.
        hidden_states: ``num_hidden_layers + 1`` tensors ``(B, L, H)``: the embeddings,
            then each layer's output (Hugging Face's ``output_hidden_states``).
        attentions: ``num_hidden_layers`` tensors ``(B, heads, L, L)``, each layer's
            softmax weights before dropout; None unless ``return_attentions``.
    """

    last_hidden_state: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...]
    attentions: tuple[torch.Tensor, ...] | None


def _valid_positions(attention_mask: object, shape: tuple[int, int]) -> torch.Tensor:
    """``attention_mask (B, L)`` of 0/1 or bool -> bool ``(B, L)``, True = real token."""
    if not isinstance(attention_mask, torch.Tensor):
        raise TypeError(f"attention_mask must be a torch.Tensor or None, got "
                        f"{type(attention_mask).__name__}")
    if tuple(attention_mask.shape) != tuple(shape):
        raise ValueError(f"attention_mask must have shape (B, L) = {tuple(shape)}, got "
                         f"{tuple(attention_mask.shape)}")
    if attention_mask.dtype == torch.bool:
        return attention_mask
    if attention_mask.is_complex():
        raise TypeError(f"attention_mask must be bool or hold 0/1, got dtype "
                        f"{attention_mask.dtype}")
    if not ((attention_mask == 0) | (attention_mask == 1)).all():
        raise ValueError(f"attention_mask must hold only 0 (padding) and 1 (real token), or "
                         f"be bool; got values {attention_mask.unique()[:8].tolist()}")
    return attention_mask != 0


def _padding_mask(valid: torch.Tensor) -> masks.MaskMod | torch.Tensor:
    """``valid (B, L)`` bool -> ``masks.key_padding(lengths)`` when every row is right-padded
    (its real tokens come first), else the dense ``(B, 1, 1, L)`` mask."""
    lengths = valid.sum(dim=-1)  # (B,)
    positions = torch.arange(valid.shape[1], device=valid.device)  # (L,)
    if bool((valid == (positions < lengths[:, None])).all()):
        return masks.key_padding(lengths)
    return valid[:, None, None, :]  # (B, 1, 1, L)


class BertEmbeddings(nn.Module):
    """word + position + token type embeddings, then LayerNorm and dropout."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        width = config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, width,
                                            padding_idx=config.pad_token_id)
        self.position_embeddings = LearnedPositionalEmbedding(config.max_position_embeddings,
                                                              width)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, width)
        self.norm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        """``input_ids (B, L)``, ``token_type_ids (B, L)`` -> ``(B, L, H)``."""
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.norm(self.position_embeddings(x)))  # (B, L, H)


class BertFeedForward(nn.Module):
    """``down_proj(act(up_proj(x)))``: ``(B, L, H) -> (B, L, H)``."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size)
        self.activation = _ACTIVATIONS[config.hidden_act]()
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.activation(self.up_proj(x)))


class BertLayer(nn.Module):
    """One post-norm encoder layer: self-attention block, then feed-forward block."""

    def __init__(self, config: BertConfig, backend: str) -> None:
        super().__init__()
        self.attention = MultiHeadAttention(config.hidden_size, config.num_attention_heads,
                                            dropout=config.attention_probs_dropout_prob,
                                            backend=backend)
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.feed_forward = BertFeedForward(config)
        self.feed_forward_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, mask: masks.MaskMod | torch.Tensor | None,
                return_weights: bool):
        """``x (B, L, H)``, ``mask`` (``masks.key_padding(lengths)``, a ``(B, 1, 1, L)``
        bool tensor or None) ->
        ``(x (B, L, H), weights (B, heads, L, L) or None)``."""
        attended, weights = self.attention(x, mask=mask, return_weights=return_weights)
        x = self.attention_norm(x + self.dropout(attended))  # (B, L, H)
        x = self.feed_forward_norm(x + self.dropout(self.feed_forward(x)))  # (B, L, H)
        return x, weights


class BertEncoder(HFWeightsMixin, nn.Module):
    """BERT encoder: embeddings and ``num_hidden_layers`` post-norm layers.

    Args:
        config: a :class:`BertConfig`.
        backend: attention backend for every layer, passed to
            :class:`~attnkit.nn.MultiHeadAttention` (``"auto"``, ``"reference"``,
            ``"sdpa"``, ...).

    Example (all-MiniLM-L6-v2 sentence embeddings; needs the ``attnkit[hf]`` extra)::

        model = BertEncoder.from_pretrained(minilm_path())
        out = model(input_ids, attention_mask)          # input_ids, attention_mask: (B, L)
        sentences = mean_pool(out.last_hidden_state, attention_mask)  # (B, 384)
    """

    config_class = BertConfig  # what from_pretrained builds from config.json

    def __init__(self, config: BertConfig, *, backend: str = "auto") -> None:
        super().__init__()
        if not isinstance(config, BertConfig):
            raise TypeError(f"BertEncoder: config must be a BertConfig, got "
                            f"{type(config).__name__}")
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.layers = nn.ModuleList(BertLayer(config, backend)
                                    for _ in range(config.num_hidden_layers))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """BERT's init: weights ``N(0, initializer_range^2)``, biases 0, LayerNorms 1/0,
        the padding embedding row 0."""
        std = self.config.initializer_range
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=std)
                nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.Embedding, LearnedPositionalEmbedding)):
                nn.init.normal_(module.weight, std=std)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if self.config.pad_token_id is not None:
            with torch.no_grad():
                self.embeddings.word_embeddings.weight[self.config.pad_token_id].zero_()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        *,
        return_attentions: bool = False,
    ) -> BertOutput:
        """Encode a batch of token ids.

        Args:
            input_ids: ``(B, L)`` int64/int32 token ids in ``[0, vocab_size)``;
                ``L <= max_position_embeddings``.
            attention_mask: ``(B, L)``, 1/True = real token, 0/False = padding
                (Hugging Face's convention); padding is hidden from every query as a
                key. None: no padding. Padded positions still get hidden states.
            token_type_ids: ``(B, L)`` segment ids in ``[0, type_vocab_size)``;
                None: all 0.
            return_attentions: also return every layer's attention weights.

        Returns:
            :class:`BertOutput` with ``last_hidden_state (B, L, H)``,
            ``hidden_states`` (``num_hidden_layers + 1`` of ``(B, L, H)``) and
            ``attentions`` (``num_hidden_layers`` of ``(B, heads, L, L)``, or None).
        """
        config = self.config
        check_token_ids(input_ids, "input_ids", vocab_size=config.vocab_size, who="BertEncoder")
        shape = tuple(input_ids.shape)
        if shape[1] > config.max_position_embeddings:
            raise ValueError(f"BertEncoder: input_ids has length {shape[1]} but the model has "
                             f"max_position_embeddings={config.max_position_embeddings}")
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        check_token_ids(token_type_ids, "token_type_ids", vocab_size=config.type_vocab_size,
                        who="BertEncoder")
        if tuple(token_type_ids.shape) != shape:
            raise ValueError(f"BertEncoder: token_type_ids must have shape (B, L) = {shape} "
                             f"(as input_ids), got {tuple(token_type_ids.shape)}")
        mask = None
        if attention_mask is not None:
            mask = _padding_mask(_valid_positions(attention_mask, shape))
        check_bool(return_attentions, "return_attentions", owner="BertEncoder")

        x = self.embeddings(input_ids, token_type_ids)  # (B, L, H)
        hidden_states, attentions = [x], []
        for layer in self.layers:
            x, weights = layer(x, mask, return_attentions)  # (B, L, H), (B, heads, L, L)|None
            hidden_states.append(x)
            attentions.append(weights)
        return BertOutput(x, tuple(hidden_states),
                          tuple(attentions) if return_attentions else None)

def mean_pool(last_hidden_state: torch.Tensor,
              attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Average of the real tokens' hidden states: sentence-transformers' mean pooling.

    all-MiniLM-L6-v2's sentence embedding is this, L2-normalized.

    Args:
        last_hidden_state: ``(B, L, H)``.
        attention_mask: ``(B, L)`` 0/1 or bool, 1/True = real token; None: every
            position counts.

    Returns:
        ``(B, H)``; a row without real tokens gives zeros.
    """
    if not isinstance(last_hidden_state, torch.Tensor):
        raise TypeError(f"mean_pool: last_hidden_state must be a (B, L, H) tensor, got "
                        f"{type(last_hidden_state).__name__}")
    if last_hidden_state.dim() != 3:
        raise ValueError(f"mean_pool: last_hidden_state must be (B, L, H), got shape "
                         f"{tuple(last_hidden_state.shape)}")
    if attention_mask is None:
        return last_hidden_state.mean(dim=1)
    valid = _valid_positions(attention_mask, tuple(last_hidden_state.shape[:2]))
    weights = valid.to(last_hidden_state.dtype).unsqueeze(-1)  # (B, L, 1)
    total = (last_hidden_state * weights).sum(dim=1)  # (B, H)
    return total / weights.sum(dim=1).clamp(min=1)  # counts are whole numbers; 0 -> zeros


