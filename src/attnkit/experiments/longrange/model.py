"""The four models of the comparison, from attnkit's own models, at matched parameter counts.

The Transformer (:class:`attnkit.models.Transformer`, Vaswani et al. 2017, arXiv:1706.03762:
pre-norm, sinusoidal positions, one shared embedding matrix, heads of ``d_model // heads``
features) sets the budget of parameters. Each recurrent model
(:func:`attnkit.models.build_rnn_seq2seq`: a bidirectional GRU encoder and a GRU decoder,
one layer each, embeddings of ``d_model`` features) gets the even hidden size whose parameter
count comes closest to the Transformer's, so no model wins by being bigger:

- ``rnn-none``: the fixed-vector encoder-decoder (Cho et al. 2014, arXiv:1406.1078);
- ``rnn-attention``: Bahdanau et al.'s additive attention (arXiv:1409.0473);
- ``rnn-luong``: Luong et al.'s global "general" attention with input feeding
  (arXiv:1508.04025).

No dropout: the training windows are drawn afresh from 2.8M characters, so the runs are far
from overfitting, and dropout would only slow them down.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import torch

from attnkit._validate import check_choice, check_int
from attnkit.data import PAD_ID
from attnkit.experiments.longrange.config import MODEL_KINDS
from attnkit.models import RNNSeq2SeqConfig, Transformer, TransformerConfig, build_rnn_seq2seq

__all__ = ["build_model", "num_parameters", "transformer_config", "matched_rnn_config",
           "source_embedding"]

_MAX_HIDDEN = 1 << 14


def num_parameters(model: torch.nn.Module) -> int:
    """Distinct parameters (a tied matrix counts once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def transformer_config(vocab_size: int, *, d_model: int, layers: int, heads: int,
                       max_len: int) -> TransformerConfig:
    """The Transformer of the comparison (module docstring)."""
    return TransformerConfig(
        src_vocab_size=vocab_size, tgt_vocab_size=vocab_size, d_model=d_model, num_heads=heads,
        num_encoder_layers=layers, num_decoder_layers=layers, ffn_dim=4 * d_model, dropout=0.0,
        norm_first=True, share_embeddings=True, positional="sinusoidal", max_len=max_len,
        pad_id=PAD_ID)


def _rnn_config(vocab_size: int, embed_dim: int, hidden: int) -> RNNSeq2SeqConfig:
    return RNNSeq2SeqConfig(src_vocab_size=vocab_size, tgt_vocab_size=vocab_size,
                            embed_dim=embed_dim, hidden_dim=hidden, num_layers=1, cell="gru",
                            bidirectional=True, dropout=0.0, pad_id=PAD_ID)


def _rnn_parameters(kind: str, vocab_size: int, embed_dim: int, hidden: int) -> int:
    return num_parameters(build_rnn_seq2seq(_rnn_config(vocab_size, embed_dim, hidden),
                                            MODEL_KINDS[kind]))


def matched_rnn_config(kind: str, vocab_size: int, embed_dim: int,
                       target: int) -> RNNSeq2SeqConfig:
    """The config of recurrent model ``kind`` whose (even) hidden size brings its parameter
    count closest to ``target`` (the count grows with the hidden size: doubling, then bisection)."""
    check_choice(kind, "kind", [k for k in MODEL_KINDS if k != "transformer"])
    check_int(target, "target", minimum=1)
    high = 1  # hidden = 2 * half; grow until the count reaches the target, then bisect
    while (high < _MAX_HIDDEN // 2
           and _rnn_parameters(kind, vocab_size, embed_dim, 2 * high) < target):
        high *= 2
    low = max(high // 2, 1)
    while low < high:
        mid = (low + high) // 2
        if _rnn_parameters(kind, vocab_size, embed_dim, 2 * mid) < target:
            low = mid + 1
        else:
            high = mid
    candidates = [2 * h for h in (low - 1, low) if h >= 1]
    best = min(candidates, key=lambda hidden: abs(
        _rnn_parameters(kind, vocab_size, embed_dim, hidden) - target))
    return _rnn_config(vocab_size, embed_dim, best)


def build_model(kind: str, vocab_size: int, *, d_model: int, layers: int, heads: int,
                max_len: int) -> tuple[torch.nn.Module, dict[str, Any]]:
    """A freshly initialized model of ``kind`` (uses torch's global RNG).

    Args:
        kind: a key of :data:`~attnkit.experiments.longrange.config.MODEL_KINDS`.
        vocab_size: the character vocabulary's size (specials included).
        d_model, layers, heads: the Transformer's width, layers (encoder and decoder each)
            and heads; ``d_model`` is also the recurrent models' embedding size.
        max_len: the Transformer's position table (longest source or target + BOS/EOS).

    Returns:
        the model and a JSON-able description (config, parameters, hidden size for RNNs).
    """
    check_choice(kind, "kind", sorted(MODEL_KINDS))
    check_int(vocab_size, "vocab_size", minimum=PAD_ID + 1)
    transformer = transformer_config(vocab_size, d_model=d_model, layers=layers, heads=heads,
                                     max_len=max_len)
    if kind == "transformer":
        model = Transformer(transformer)
        return model, {"config": asdict(transformer), "parameters": num_parameters(model)}
    with torch.random.fork_rng(devices=[]):  # measuring the target draws random numbers
        target = num_parameters(Transformer(transformer))
        config = matched_rnn_config(kind, vocab_size, d_model, target)
    model = build_rnn_seq2seq(config, MODEL_KINDS[kind])
    return model, {"config": asdict(config), "attention": MODEL_KINDS[kind],
                   "hidden": config.hidden_dim, "parameters": num_parameters(model)}


def source_embedding(model: torch.nn.Module) -> torch.nn.Embedding:
    """The ``nn.Embedding`` that embeds the source tokens (the input of the gradient probe)."""
    if isinstance(model, Transformer):
        return model.src_embed.token
    embedding = getattr(model, "src_embed", None)
    if not isinstance(embedding, torch.nn.Embedding):
        raise TypeError(f"model: expected a Transformer or an RNNSeq2Seq, got "
                        f"{type(model).__name__}")
    return embedding
