"""The network behind each model kind of :data:`~attnkit.experiments.translate.config.MODEL_KINDS`.

``tiny`` is for tests and ``--quick``; ``small`` is the reported size. The recurrent models'
``small`` widths keep their parameter count near the Transformer's (most of it is the three
vocabulary-sized matrices: two embeddings and the output layer).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import torch

from attnkit._validate import check_choice, check_int
from attnkit.experiments.translate.config import MIN_VOCAB, MODEL_KINDS, SIZES
from attnkit.models import RNNSeq2SeqConfig, Transformer, TransformerConfig, build_rnn_seq2seq

__all__ = ["build_model", "max_source_tokens", "num_parameters"]

_TRANSFORMER_MAX_LEN = 512  # positions of the sinusoidal encoding (source and target)


def _transformer(vocab: int, size: str) -> tuple[torch.nn.Module, dict[str, Any]]:
    width = {"tiny": 32, "small": 256}[size]
    layers = 3 if size == "small" else 1
    config = TransformerConfig(
        src_vocab_size=vocab, tgt_vocab_size=vocab, d_model=width,
        num_heads=4 if size == "small" else 2, num_encoder_layers=layers,
        num_decoder_layers=layers, ffn_dim=4 * width, dropout=0.1, norm_first=True,
        share_embeddings=True, positional="sinusoidal", max_len=_TRANSFORMER_MAX_LEN)
    return Transformer(config), {"config": asdict(config)}


def _rnn(vocab: int, size: str, attention: str) -> tuple[torch.nn.Module, dict[str, Any]]:
    embed, hidden = {"tiny": (32, 64), "small": (256, 384)}[size]
    config = RNNSeq2SeqConfig(src_vocab_size=vocab, tgt_vocab_size=vocab, embed_dim=embed,
                              hidden_dim=hidden, num_layers=1, cell="gru", bidirectional=True,
                              dropout=0.1)
    return build_rnn_seq2seq(config, attention), {"config": asdict(config),
                                                  "attention": attention}


def build_model(kind: str, vocab_size: int, size: str) -> tuple[torch.nn.Module, dict[str, Any]]:
    """A freshly initialized model of ``kind`` for a ``vocab_size`` joint vocabulary.

    Returns:
        the model and a JSON-able description of it (stored in checkpoints).
    """
    check_choice(kind, "kind", sorted(MODEL_KINDS))
    check_int(vocab_size, "vocab_size", minimum=MIN_VOCAB)
    check_choice(size, "size", SIZES)
    if kind == "transformer":
        return _transformer(vocab_size, size)
    return _rnn(vocab_size, size, MODEL_KINDS[kind])


def max_source_tokens(model: torch.nn.Module) -> int | None:
    """The longest sequence ``model`` has positions for (None: no limit, a recurrent model)."""
    return model.config.max_len if isinstance(model, Transformer) else None


def num_parameters(model: torch.nn.Module) -> int:
    """Distinct parameters (a tied matrix counts once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
