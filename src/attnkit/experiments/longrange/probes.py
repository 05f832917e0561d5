"""The two measurements besides accuracy: gradient flow by distance, and step time by length.

Gradient flow. For a batch of ``R`` test windows of one length ``L``, row ``r`` scores one
output position ``i_r = r mod L`` (its token's cross-entropy under teacher forcing, eval
mode); one backward pass gives ``d loss_r / d e_{r,j}`` for every source embedding ``e_{r,j}``
of that row (rows do not interact, so one pass serves all rows). Its L2 norm is averaged
over all ``(r, j)`` at the same distance ``d = (L - j) + i_r`` (the distance of
:mod:`~attnkit.experiments.longrange.data`), ``d`` in ``[1, 2L - 1]``. The embedding is the
output of the source ``nn.Embedding`` (for the Transformer before its ``sqrt(d_model)``
scale and positions). A recurrent path shrinks the gradient with every step it crosses; an
attention path is one hop at any distance.

Step time. A fresh model of each kind takes AdamW training steps (the trainer's optimizer,
forward, backward, clipping, update) on batches of ``timing_tokens // L`` copy windows of
length ``L``, the same number of source tokens at every ``L``; the median of
``timing_repeats`` timed steps after one warm-up step. At a fixed token count the
Transformer's matrix products stay the same size while its attention grows with ``L``; a
recurrent layer runs ``L`` sequential steps on ever fewer rows.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from attnkit._validate import check_choice, check_int
from attnkit.data import PAD_ID
from attnkit.experiments.longrange.data import TextStream, source_index, task_batch
from attnkit.experiments.longrange.model import source_embedding
from attnkit.train import TrainConfig, seq2seq_loss_fn
from attnkit.train.trainer import build_optimizer

__all__ = ["gradient_flow", "step_times", "sequential_steps", "sequential_formula"]


def gradient_flow(model: torch.nn.Module, stream: TextStream, task: str, *, length: int,
                  rows: int, seed: int) -> dict[str, Any]:
    """Mean ``||d loss_i / d e_j||`` by distance ``d`` (module docstring).

    Returns:
        ``length``, ``rows``, ``distances`` (``1 .. 2 length - 1``), ``norm`` (the mean norm
        at each distance), ``at_copied`` (mean norm at the source token the scored output
        copies) and ``elsewhere`` (at every other source token).
    """
    check_choice(task, "task", ("copy", "reverse"))
    check_int(length, "length", minimum=2)
    check_int(rows, "rows", minimum=1)
    device = next(model.parameters()).device
    batch = task_batch(stream.random_windows(np.random.default_rng(seed), rows, length), task)
    batch = {k: v.to(device) for k, v in batch.items()}
    positions = torch.arange(rows, device=device) % length  # (R,) scored output position
    row_ids = torch.arange(rows, device=device)
    captured: list[torch.Tensor] = []
    handle = source_embedding(model).register_forward_hook(
        lambda module, inputs, output: captured.append(output))
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            logits = model(batch["src"], batch["src_lengths"], batch["tgt_in"])  # (R, L+1, V)
            loss = F.cross_entropy(logits[row_ids, positions],
                                   batch["tgt_out"][row_ids, positions], reduction="sum")
            (grad,) = torch.autograd.grad(loss, captured[0])  # (R, L, E)
    finally:
        handle.remove()
        model.train(was_training)
    norms = grad.double().norm(dim=-1).cpu()  # (R, L)
    positions = positions.cpu()
    distance = length - torch.arange(length)[None, :] + positions[:, None]  # (R, L) in [1, 2L-1]
    sums = torch.zeros(2 * length, dtype=torch.float64).index_add_(0, distance.flatten(),
                                                                   norms.flatten())
    counts = torch.bincount(distance.flatten(), minlength=2 * length)
    copied = torch.tensor([source_index(task, int(i), length) for i in positions])  # (R,)
    at_copied = norms[torch.arange(rows), copied]  # (R,)
    others = norms.sum() - at_copied.sum()
    return {"length": length, "rows": rows, "distances": list(range(1, 2 * length)),
            "norm": (sums[1:] / counts[1:]).tolist(),
            "at_copied": float(at_copied.mean()),
            "elsewhere": float(others / max(rows * (length - 1), 1))}


def step_times(build: Callable[[], torch.nn.Module], stream: TextStream, *,
               lengths: Sequence[int], tokens: int, repeats: int, lr: float,
               seed: int) -> list[dict[str, Any]]:
    """Seconds per training step of a fresh ``build()`` model at each length (module
    docstring); one entry per length: ``length``, ``rows``, ``seconds_per_step`` (median),
    ``all_seconds``."""
    check_int(tokens, "tokens", minimum=max(lengths))
    check_int(repeats, "repeats", minimum=1)
    model = build()
    device = next(model.parameters()).device
    optimizer = build_optimizer(model, TrainConfig(lr=lr))
    loss_fn = seq2seq_loss_fn(pad_id=PAD_ID)
    rng = np.random.default_rng(seed)
    model.train()
    out = []
    for length in lengths:
        rows = tokens // length
        timings = []
        for attempt in range(repeats + 1):  # the first step warms up allocator and caches
            batch = task_batch(stream.random_windows(rng, rows, length), "copy")
            batch = {k: v.to(device) for k, v in batch.items()}
            started = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            loss_sum, count = loss_fn(model, batch)
            (loss_sum / count).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if attempt:
                timings.append(time.perf_counter() - started)
        out.append({"length": length, "rows": rows, "seconds_per_step": statistics.median(timings),
                    "all_seconds": timings})
    return out


def sequential_steps(kind: str, length: int) -> dict[str, int]:
    """Operations per layer that must run one after another for a source of ``length``
    tokens and its ``length + 1`` output positions (Vaswani et al. 2017, Table 1): a
    recurrent layer steps through its sequence; a self-attention layer sees all positions
    at once. ``decoder_generation``: generating the output, where every model steps."""
    check_int(length, "length", minimum=1)
    recurrent = kind != "transformer"
    return {"encoder": length if recurrent else 1,
            "decoder_training": length + 1 if recurrent else 1,
            "decoder_generation": length + 1}


def sequential_formula(kind: str) -> dict[str, str]:
    """:func:`sequential_steps` as formulas in the source length ``L``."""
    check_choice(kind, "kind", ("rnn-none", "rnn-attention", "rnn-luong", "transformer"))
    recurrent = kind != "transformer"
    return {"encoder": "L" if recurrent else "1",
            "decoder_training": "L + 1" if recurrent else "1",
            "decoder_generation": "L + 1"}
