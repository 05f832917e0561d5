"""What every ``attnkit vision`` part shares: threads, batches from uint8 images, a training
loop over epochs with a time cap, accuracy, and mean/spread over seeds.

The loop is plain Adam with a cosine decay of the learning rate to 0 over the planned
updates; a model's loss comes from ``loss_fn(model, images, labels) -> (loss, logits)``, so
RAM's hybrid loss and the CNNs' cross-entropy share it. Validation accuracy is measured after
every epoch (the learning curve); the test split is only scored by the caller, once, at the
end.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["save_model", "set_threads", "as_batch", "TrainResult", "train_epochs", "accuracy",
           "cross_entropy_loss", "mean_spread", "count_parameters", "log"]

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
LogitsFn = Callable[[nn.Module, torch.Tensor], torch.Tensor]


def log(message: str, enabled: bool = True) -> None:
    """One progress line on stderr."""
    if enabled:
        print(message, file=sys.stderr, flush=True)


def set_threads(threads: int | None) -> None:
    """``torch.set_num_threads(threads)`` unless None."""
    if threads is not None:
        torch.set_num_threads(threads)


def as_batch(images: np.ndarray, index: np.ndarray | slice) -> torch.Tensor:
    """uint8 ``images (N, H, W)`` rows ``index`` -> float32 ``(B, 1, H, W)`` in ``[0, 1]``."""
    batch = np.array(images[index], dtype=np.uint8, copy=True)  # writable, contiguous
    return torch.from_numpy(batch).float().div_(255.0)[:, None]


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def cross_entropy_loss(model: nn.Module, images: torch.Tensor,
                       labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of a model returning logits ``(B, classes)``."""
    logits = model(images)
    return F.cross_entropy(logits, labels), logits


@torch.no_grad()
def accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray, *,
             logits_fn: LogitsFn = lambda m, x: m(x), batch_size: int = 500) -> float:
    """Fraction of ``images (N, H, W)`` uint8 classified as ``labels (N,)`` (eval mode)."""
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, len(images), batch_size):
        logits = logits_fn(model, as_batch(images, slice(start, start + batch_size)))
        target = torch.from_numpy(labels[start:start + batch_size])
        correct += int((logits.argmax(dim=1) == target).sum())
    model.train(was_training)
    return correct / max(1, len(images))


@dataclass
class TrainResult:
    """What :func:`train_epochs` did."""

    epochs_done: int = 0  # whole epochs completed
    updates: int = 0
    stopped_by_time: bool = False  # the time cap ended training before the last epoch
    val_curve: list[float] = field(default_factory=list)  # validation accuracy per epoch
    train_loss: list[float] = field(default_factory=list)  # mean loss per epoch


def train_epochs(model: nn.Module, loss_fn: LossFn, train: tuple[np.ndarray, np.ndarray],
                 val: tuple[np.ndarray, np.ndarray], *, epochs: int, batch_size: int,
                 lr: float, seed: int, seconds: float, logits_fn: LogitsFn = lambda m, x: m(x),
                 label: str = "", progress: bool = True) -> TrainResult:
    """Train ``model`` for ``epochs`` passes (or until ``seconds`` pass), Adam + cosine decay.

    Args:
        model: the classifier (put in train mode here).
        loss_fn: ``(model, images (B, 1, H, W), labels (B,)) -> (loss, logits)``.
        train, val: uint8 images ``(N, H, W)`` and int64 labels ``(N,)``.
        epochs, batch_size, lr: the schedule.
        seed: the batch order (the model's initialization is the caller's).
        seconds: wall-clock cap.
        logits_fn: ``(model, images) -> logits`` for validation.
        label: prefix of the progress lines.
        progress: print one line per epoch.
    """
    images, labels = train
    rng = np.random.default_rng(seed)
    per_epoch = math.ceil(len(images) / batch_size)
    total = per_epoch * epochs
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total) / total)))
    result = TrainResult()
    deadline = time.monotonic() + seconds
    model.train()
    for epoch in range(epochs):
        order = rng.permutation(len(images))
        losses = []
        for start in range(0, len(images), batch_size):
            index = np.sort(order[start:start + batch_size])
            loss, _ = loss_fn(model, as_batch(images, index), torch.from_numpy(labels[index]))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            result.updates += 1
            losses.append(float(loss.detach()))
            if time.monotonic() > deadline:
                result.stopped_by_time = True
                break
        result.train_loss.append(float(np.mean(losses)))
        result.val_curve.append(accuracy(model, *val, logits_fn=logits_fn))
        if not result.stopped_by_time:
            result.epochs_done = epoch + 1
        log(f"{label} epoch {epoch + 1}/{epochs}: loss {result.train_loss[-1]:.3f}, "
            f"val accuracy {result.val_curve[-1]:.2%}"
            + (" (time cap reached)" if result.stopped_by_time else ""), progress)
        if result.stopped_by_time:
            break
    model.eval()
    return result


def save_model(model: nn.Module, folder: Path, name: str, config: Any) -> Path:
    """The trained ``model`` as a checkpoint directory ``folder/checkpoints/name``
    (model.safetensors + state.json with ``config``), written atomically."""
    from attnkit.train import save_checkpoint

    target = folder / "checkpoints" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    return save_checkpoint(target, model=model, config=config)


def mean_spread(values: list[float]) -> dict[str, float]:
    """``mean``, sample ``std`` (0 for one value), ``min``, ``max`` and ``n`` of ``values``."""
    array = np.asarray(values, dtype=np.float64)
    return {"mean": float(array.mean()),
            "std": float(array.std(ddof=1)) if len(array) > 1 else 0.0,
            "min": float(array.min()), "max": float(array.max()), "n": int(len(array))}
