"""Training and scoring of one pairs model: Adam on the binary cross-entropy, valid accuracy
a few times per epoch, the best valid state kept (model selection never sees test), and the
bootstrap interval of test accuracy over English sentences."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from attnkit.experiments.pairs.config import PairsConfig
from attnkit.experiments.pairs.data import EncodedSplit, batches, collate
from attnkit.models.bigru_pair import BiGRUPairClassifier, BiGRUPairConfig
from attnkit.models.decomposable import DecomposableAttention, DecomposableConfig

__all__ = ["build_model", "count_parameters", "logits_of", "predict", "train_model",
           "bootstrap_accuracy", "paired_bootstrap"]


def build_model(kind: str, vocab_size: int, config: PairsConfig) -> nn.Module:
    """A fresh model of ``kind`` (a :data:`MODEL_KINDS` key) sized by ``config``."""
    if kind == "bigru":
        return BiGRUPairClassifier(BiGRUPairConfig(
            vocab_size, embed_dim=config.embed_dim, hidden=config.gru_hidden,
            dropout=config.dropout, exact_match=config.exact_match))
    return DecomposableAttention(DecomposableConfig(
        vocab_size, embed_dim=config.embed_dim, hidden=config.hidden, dropout=config.dropout,
        intra=kind == "decomposable-intra", exact_match=config.exact_match,
        aggregate=config.aggregate))


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Trainable parameters: ``total``, ``embedding`` (the token table) and ``other``."""
    total = sum(p.numel() for p in model.parameters() if p.requires_grad)
    embedding = model.embed.weight.numel()
    return {"total": total, "embedding": embedding, "other": total - embedding}


def logits_of(model: nn.Module, a, a_mask, b, b_mask) -> torch.Tensor:
    """``(B,)`` logits of either model kind."""
    out = model(a, a_mask, b, b_mask)
    return out if isinstance(out, torch.Tensor) else out.logits


@torch.no_grad()
def predict(model: nn.Module, split: EncodedSplit, batch_size: int = 256) -> torch.Tensor:
    """``(N,)`` probabilities that each example of ``split`` is a real pair (eval mode)."""
    was_training = model.training
    model.eval()
    out = [torch.sigmoid(logits_of(model, *collate(split, index)[:4]))
           for index in batches(split, batch_size)]
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0)


def _accuracy(probabilities: torch.Tensor, labels: torch.Tensor) -> float:
    return float(((probabilities > 0.5).float() == labels).float().mean())


def train_model(model: nn.Module, train: EncodedSplit, valid: EncodedSplit, config: PairsConfig,
                *, budget_s: float, log: Callable[[str], None] = print,
                name: str = "model") -> dict[str, Any]:
    """Train for ``config.epochs`` epochs, ``budget_s`` seconds of ``config.clock`` (process
    CPU time or wall time; valid checks included; read after every update) or
    ``config.max_minutes`` of wall time, whichever ends first; load the state of the best
    valid accuracy back into ``model``. Returns the training record: ``steps``, ``epochs``
    reached, ``stopped_by`` ("epochs", "budget" or "wall cap"), ``elapsed_s`` (wall),
    ``cpu_s`` (process CPU time, all threads), ``budget_s``, ``clock``, the ``best`` valid
    point and the ``curve``."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    loss_fn = nn.BCEWithLogitsLoss()
    steps_per_epoch = -(-len(train) // config.batch_size)
    eval_every = max(1, steps_per_epoch // config.evals_per_epoch)
    budget, cap = budget_s, config.max_minutes * 60.0
    clock = time.process_time if config.clock == "cpu" else time.perf_counter
    started, cpu_started = time.perf_counter(), time.process_time()
    best = {"valid_accuracy": -1.0, "step": 0, "epoch": 0.0}
    best_state = copy.deepcopy(model.state_dict())
    curve, step, loss_sum, loss_n, stopped = [], 0, 0.0, 0, "epochs"

    def evaluate() -> None:
        nonlocal loss_sum, loss_n, best_state
        acc = _accuracy(predict(model, valid), valid.labels)
        point = {"step": step, "epoch": step / steps_per_epoch, "valid_accuracy": acc,
                 "train_loss": loss_sum / max(loss_n, 1),
                 "minutes": (time.perf_counter() - started) / 60.0,
                 "cpu_minutes": (time.process_time() - cpu_started) / 60.0}
        curve.append(point)
        loss_sum, loss_n = 0.0, 0
        if acc > best["valid_accuracy"]:
            best.update(valid_accuracy=acc, step=step, epoch=point["epoch"])
            best_state = copy.deepcopy(model.state_dict())
        if config.progress:
            log(f"  {name}: epoch {point['epoch']:.2f}, step {step}, train loss "
                f"{point['train_loss']:.4f}, valid accuracy {acc:.4f}, "
                f"{point['minutes']:.1f} min wall, {point['cpu_minutes']:.1f} min CPU")

    model.train()
    for _ in range(config.epochs):
        for index in batches(train, config.batch_size, rng):
            a, a_mask, b, b_mask, labels = collate(train, index)
            loss = loss_fn(logits_of(model, a, a_mask, b, b_mask), labels)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            step += 1
            loss_sum += loss.item() * len(index)
            loss_n += len(index)
            if step % eval_every == 0:
                evaluate()
            if clock() - (cpu_started if config.clock == "cpu" else started) > budget:
                stopped = "budget"
            elif time.perf_counter() - started > cap:
                stopped = "wall cap"
            if stopped != "epochs":
                break
        if stopped != "epochs":
            break
    if not curve or curve[-1]["step"] != step:
        evaluate()
    model.load_state_dict(best_state)
    return {"steps": step, "epochs": step / steps_per_epoch, "stopped_by": stopped,
            "elapsed_s": time.perf_counter() - started,
            "cpu_s": time.process_time() - cpu_started, "budget_s": budget,
            "clock": config.clock, "best": best,
            "curve": curve}


def bootstrap_accuracy(correct: torch.Tensor, groups: torch.Tensor, *, resamples: int,
                       seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the accuracy, resampling whole groups (the English
    sentences, each with its positive and its negative) with replacement.

    Args:
        correct: ``(N,)`` 0/1 per example.
        groups: ``(N,)`` group id per example.
    """
    keys, inverse = torch.unique(groups, return_inverse=True)
    hits = torch.zeros(len(keys)).index_add_(0, inverse, correct.float())  # (G,)
    sizes = torch.zeros(len(keys)).index_add_(0, inverse, torch.ones(len(correct)))
    rng = np.random.default_rng(seed)
    draws = torch.from_numpy(rng.integers(0, len(keys), (resamples, len(keys))))
    acc = hits[draws].sum(1) / sizes[draws].sum(1)  # (resamples,)
    low, high = torch.quantile(acc.double(), torch.tensor([0.025, 0.975], dtype=torch.float64))
    return float(low), float(high)


def paired_bootstrap(correct_a: torch.Tensor, correct_b: torch.Tensor, groups: torch.Tensor,
                     *, resamples: int, seed: int = 0) -> dict[str, float]:
    """Accuracy of a minus b with its 95% group-bootstrap interval and the share of
    resamples where a is not above b."""
    diff = correct_a.float() - correct_b.float()  # (N,) in {-1, 0, 1}
    keys, inverse = torch.unique(groups, return_inverse=True)
    sums = torch.zeros(len(keys)).index_add_(0, inverse, diff)
    sizes = torch.zeros(len(keys)).index_add_(0, inverse, torch.ones(len(diff)))
    rng = np.random.default_rng(seed)
    draws = torch.from_numpy(rng.integers(0, len(keys), (resamples, len(keys))))
    deltas = (sums[draws].sum(1) / sizes[draws].sum(1)).double()
    low, high = torch.quantile(deltas, torch.tensor([0.025, 0.975], dtype=torch.float64))
    return {"difference": float(diff.mean()), "low": float(low), "high": float(high),
            "p_not_above": float((deltas <= 0).double().mean())}
