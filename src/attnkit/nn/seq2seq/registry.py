"""The registry of encoder-decoder attention mechanisms: name -> factory.

A factory builds a mechanism for an RNN decoder of width ``H`` (queries, keys and values
all have ``H`` features): ``factory(H, **options) -> Seq2SeqAttention`` (``None`` for the
fixed-vector baseline ``"none"``). The options override the defaults shown here.
:func:`attnkit.models.build_rnn_seq2seq` and the ``translate`` experiment look mechanisms
up by these names.

Adding a mechanism: write its module in this package (a
:class:`~attnkit.nn.seq2seq.base.Seq2SeqAttention` subclass; set ``decoder_style =
"luong"`` if it attends with the current decoder state) and add one line below.
"""

from __future__ import annotations

from collections.abc import Callable

from attnkit._validate import check_choice
from attnkit.nn.seq2seq.additive import AdditiveAttention
from attnkit.nn.seq2seq.base import Seq2SeqAttention
from attnkit.nn.seq2seq.hard import HardAttention
from attnkit.nn.seq2seq.local import LocalAttention
from attnkit.nn.seq2seq.location_sensitive import LocationSensitiveAttention
from attnkit.nn.seq2seq.luong import LuongAttention
from attnkit.nn.seq2seq.monotonic import MonotonicAttention

__all__ = ["ATTENTION_KINDS", "build_attention"]

Factory = Callable[..., Seq2SeqAttention | None]


def _luong(mode: str) -> Factory:
    return lambda dim, **options: LuongAttention(dim, dim, mode=mode, **options)


def _local(mode: str) -> Factory:
    return lambda dim, **options: LocalAttention(dim, dim, mode=mode, **options)


def _no_attention(dim: int, **options: object) -> None:
    if options:
        raise ValueError(f"attention 'none' takes no options, got {sorted(options)}")
    return None


ATTENTION_KINDS: dict[str, Factory] = {
    "bahdanau": lambda dim, **options: AdditiveAttention(dim, dim, dim, **options),
    "luong-dot": _luong("dot"),
    "luong-general": _luong("general"),
    "luong-concat": _luong("concat"),
    "luong-location": _luong("location"),  # needs max_source_len=
    "local-m": _local("monotonic"),
    "local-p": _local("predictive"),
    "location": lambda dim, **options: LocationSensitiveAttention(dim, dim, dim, **options),
    "monotonic": lambda dim, **options: MonotonicAttention(dim, dim, dim, **options),
    # Gumbel straight-through trains from the task loss alone; REINFORCE needs the state.
    "hard": lambda dim, **options: HardAttention(dim, dim, dim,
                                                 **{"estimator": "gumbel", **options}),
    "none": _no_attention,
}


def build_attention(name: str, dim: int, **options: object) -> Seq2SeqAttention | None:
    """The mechanism registered as ``name`` for width ``dim`` (None for ``"none"``).

    Args:
        name: a key of :data:`ATTENTION_KINDS`.
        dim: ``H``, the size of queries, keys and values.
        **options: keyword arguments for the mechanism's constructor (e.g. ``window=4``
            for local attention, ``kernel_size=5`` for ``"location"``).
    """
    check_choice(name, "attention", sorted(ATTENTION_KINDS))
    return ATTENTION_KINDS[name](dim, **options)
