"""Context parallelism on ``torch.distributed``: one sequence split across processes.

* :func:`ring_attention` - exact attention over a sequence sharded across a process
  group (ring attention, arXiv:2310.01889), forward and backward, with attnkit's
  structured masks skipping whole blocks across ranks;
* :func:`shard` / :func:`unshard` / :func:`shard_positions` - the ``contiguous`` and
  ``zigzag`` layouts (:mod:`attnkit.distributed.layout`);
* :func:`ring_schedule` - which blocks each rank computes (no communication);
* :class:`ContextParallelGPT`, :func:`context_parallel_loss`, :func:`sync_gradients` -
  training an :class:`attnkit.models.gpt.GPT` with its sequence split over the ranks.

Runs on any backend torch.distributed offers for point-to-point operations: gloo on
CPU processes, NCCL on GPUs. Shapes: ``W`` ranks, full length ``L``, shard ``n = L / W``.
"""

from attnkit.distributed.context import (
           ContextParallelGPT,
           context_parallel_loss,
           shard_batch,
           sync_gradients,
)
from attnkit.distributed.layout import LAYOUTS, segments, shard, shard_positions, unshard
from attnkit.distributed.local_masks import SUPPORTED as SUPPORTED_MASKS
from attnkit.distributed.ring import Block, ring_attention, ring_schedule

__all__ = ["ring_attention", "ring_schedule", "Block", "shard", "unshard", "shard_positions",
           "segments", "LAYOUTS", "SUPPORTED_MASKS", "ContextParallelGPT",
           "context_parallel_loss", "shard_batch", "sync_gradients"]
