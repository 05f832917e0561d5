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
from attnkit.kernels import cpu_ext
from attnkit.models import RNNSeq2SeqConfig, Transformer, TransformerConfig, build_rnn_seq2seq

__all__ = ["build_model", "max_source_tokens", "num_parameters"]

_TRANSFORMER_MAX_LEN = 512  # positions of the sinusoidal encoding (source and target)


# size -> (width, layers, dropout); the translate config's width/layers/dropout override them
# small: width 192 and no dropout won the defaults sweep (benchmarks/translate_sweep.py)
_TRANSFORMER_SIZES = {"tiny": (32, 1, 0.1), "small": (192, 3, 0.0)}
_RNN_SIZES = {"tiny": (64, 1, 0.1), "small": (384, 1, 0.1)}  # width = GRU hidden size
_RNN_EMBED = {"tiny": 32, "small": 256}


def _transformer(vocab: int, size: str, width: int | None, layers: int | None,
                 dropout: float | None) -> tuple[torch.nn.Module, dict[str, Any]]:
    default_width, default_layers, default_dropout = _TRANSFORMER_SIZES[size]
    width = default_width if width is None else width
    heads = max(width // 64, 2)  # heads of 64 features, as the paper's base model
    if width % heads:
        raise ValueError(f"width: the Transformer splits it into {heads} heads of 64 "
                         f"features, so it must be a multiple of 64 (or 32), got {width}")
    config = TransformerConfig(
        src_vocab_size=vocab, tgt_vocab_size=vocab, d_model=width, num_heads=heads,
        num_encoder_layers=default_layers if layers is None else layers,
        num_decoder_layers=default_layers if layers is None else layers, ffn_dim=4 * width,
        dropout=default_dropout if dropout is None else dropout, norm_first=True,
        share_embeddings=True, positional="sinusoidal", max_len=_TRANSFORMER_MAX_LEN)
    return Transformer(config), {"config": asdict(config)}


def _rnn(vocab: int, size: str, attention: str, width: int | None, layers: int | None,
         dropout: float | None) -> tuple[torch.nn.Module, dict[str, Any]]:
    hidden, num_layers, rate = _RNN_SIZES[size]
    config = RNNSeq2SeqConfig(src_vocab_size=vocab, tgt_vocab_size=vocab,
                              embed_dim=_RNN_EMBED[size],
                              hidden_dim=hidden if width is None else width,
                              num_layers=num_layers if layers is None else layers, cell="gru",
                              bidirectional=True, dropout=rate if dropout is None else dropout)
    # the recurrent models' CPU kernels (fused loops, the loss) compile on first use (about
    # a minute, once per machine): now, before any training clock starts
    cpu_ext.load()
    return build_rnn_seq2seq(config, attention), {"config": asdict(config),
                                                  "attention": attention}


def build_model(kind: str, vocab_size: int, size: str, *, width: int | None = None,
                layers: int | None = None, dropout: float | None = None
                ) -> tuple[torch.nn.Module, dict[str, Any]]:
    """A freshly initialized model of ``kind`` for a ``vocab_size`` joint vocabulary.

    Args:
        kind, vocab_size, size: the model kind, vocabulary and size preset.
        width, layers, dropout: override the size's model width (Transformer: d_model, with
            heads of 64 features; RNNs: the GRU hidden size), layers (encoder and decoder
            each) and dropout rate.

    Returns:
        the model and a JSON-able description of it (stored in checkpoints).
    """
    check_choice(kind, "kind", sorted(MODEL_KINDS))
    check_int(vocab_size, "vocab_size", minimum=MIN_VOCAB)
    check_choice(size, "size", SIZES)
    for name, value in (("width", width), ("layers", layers)):
        if value is not None:
            check_int(value, name, minimum=1)
    if kind == "transformer":
        return _transformer(vocab_size, size, width, layers, dropout)
    return _rnn(vocab_size, size, MODEL_KINDS[kind], width, layers, dropout)


def max_source_tokens(model: torch.nn.Module) -> int | None:
    """The longest sequence ``model`` has positions for (None: no limit, a recurrent model)."""
    return model.config.max_len if isinstance(model, Transformer) else None


def num_parameters(model: torch.nn.Module) -> int:
    """Distinct parameters (a tied matrix counts once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
