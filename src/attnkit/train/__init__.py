"""Training loop, checkpoints, schedules, distributed training and decoding.

:class:`Trainer` runs any model given ``batch_fn(step, rank, world_size)`` and
``loss_fn(model, batch) -> (loss_sum, num_tokens)``; checkpoints are safetensors + JSON
and resume exactly. :func:`greedy_decode` and :func:`beam_search` decode any model with the
seq2seq decoding protocol. Distributed helpers live in :mod:`attnkit.train.distributed`.
"""

from attnkit.train.checkpoint import (
    Checkpoint,
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from attnkit.train.decoding import DecodeResult, beam_search, greedy_decode
from attnkit.train.losses import (
    linear_cross_entropy,
    lm_loss_fn,
    seq2seq_loss_fn,
    token_cross_entropy,
)
from attnkit.train.schedule import WarmupSchedule
from attnkit.train.trainer import TrainConfig, Trainer

__all__ = [
    "Trainer", "TrainConfig", "WarmupSchedule",
    "save_checkpoint", "load_checkpoint", "latest_checkpoint", "Checkpoint", "CheckpointError",
    "token_cross_entropy", "linear_cross_entropy", "seq2seq_loss_fn", "lm_loss_fn",
    "greedy_decode", "beam_search", "DecodeResult",
]
