"""Training and evaluation of one MemN2N on jointly encoded bAbI-style tasks.

Sukhbaatar et al. (2015), arXiv 1503.08895, section 4.2, with these deviations: Adam instead
of plain SGD (fewer epochs fit the CPU budget), learning rate halved every ``anneal_every``
epochs, linear start ended when the validation loss stops falling or after ``ls_epochs``;
the model kept is the epoch with the best validation accuracy.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from attnkit.data.babi import EncodedSet
from attnkit.models.memn2n import MemN2N, MemN2NConfig, insert_empty_memories

__all__ = ["batches", "evaluate", "train_model"]


def batches(data: EncodedSet, batch_size: int, generator: torch.Generator):
    """Shuffled batches of indices, grouped by story length so padding stays small."""
    order = torch.randperm(len(data), generator=generator)
    chunk = batch_size * 50
    out = []
    for start in range(0, len(order), chunk):
        part = order[start:start + chunk]
        part = part[torch.argsort(data.lengths[part], stable=True)]
        out += list(part.split(batch_size))
    return [out[k] for k in torch.randperm(len(out), generator=generator).tolist()]


def _trim(data: EncodedSet, index: torch.Tensor):
    """The rows ``index`` with the memory axis cut to the longest story among them."""
    lengths = data.lengths[index]
    slots = max(1, int(lengths.max()))
    return data.stories[index, :slots], lengths, data.queries[index], data.answers[index]


def _mask(lengths: torch.Tensor, slots: int) -> torch.Tensor:
    return torch.arange(slots)[None, :] < lengths[:, None]  # (B, M)


@torch.no_grad()
def evaluate(model: MemN2N, data: EncodedSet, *, linear: bool = False,
             batch_size: int = 500) -> dict[str, Any]:
    """Loss, accuracy and predictions of ``model`` on ``data``."""
    model.eval()
    loss, predictions = 0.0, []
    order = torch.argsort(data.lengths, stable=True)
    for index in order.split(batch_size):
        stories, lengths, queries, answers = _trim(data, index)
        logits, _ = model(stories, queries, _mask(lengths, stories.shape[1]), linear=linear)
        loss += float(F.cross_entropy(logits, answers, reduction="sum"))
        predictions.append(logits.argmax(-1))
    predicted = torch.empty(len(data), dtype=torch.long)
    predicted[order] = torch.cat(predictions)
    return {"loss": loss / len(data),
            "accuracy": float((predicted == data.answers).float().mean()),
            "predicted": predicted}


def train_model(config, model_config: MemN2NConfig, train: EncodedSet, valid: EncodedSet,
                *, seed: int, log: Callable[[str], None] = print) -> tuple[MemN2N, dict]:
    """Train one model; return it (at its best validation epoch) and its history."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = MemN2N(model_config)
    optimizer = (torch.optim.SGD(model.parameters(), lr=config.lr) if config.optimizer == "sgd"
                 else torch.optim.Adam(model.parameters(), lr=config.lr))
    linear = config.ls_epochs > 0
    best, best_state, history = -1.0, None, []
    best_linear_loss = math.inf
    started = time.perf_counter()
    softmax_epochs = 0  # the annealing schedule counts epochs with the softmax in place
    for epoch in range(1, config.epochs + 1):
        lr = config.ls_lr if linear else \
            config.lr * 0.5 ** (softmax_epochs // config.anneal_every)
        softmax_epochs += not linear
        for group in optimizer.param_groups:
            group["lr"] = lr
        model.train()
        total, seen = 0.0, 0
        for index in batches(train, config.batch_size, generator):
            stories, lengths, queries, answers = _trim(train, index)
            if config.noise > 0:
                stories, lengths = insert_empty_memories(stories, lengths, config.noise,
                                                         model_config.memory_size, generator)
            logits, _ = model(stories, queries, _mask(lengths, stories.shape[1]),
                              linear=linear)
            loss = F.cross_entropy(logits, answers)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
            optimizer.step()
            with torch.no_grad():  # keep the padding rows at zero (Adam moves them otherwise)
                for table in model.embeddings:
                    table.weight[0].zero_()
            total += float(loss.detach()) * len(index)
            seen += len(index)
        result = evaluate(model, valid, linear=linear)
        elapsed = time.perf_counter() - started
        history.append({"epoch": epoch, "lr": lr, "linear_start": linear,
                        "train_loss": total / seen, "valid_loss": result["loss"],
                        "valid_accuracy": result["accuracy"], "elapsed_s": elapsed})
        log(f"  hops={model_config.hops} epoch {epoch:3d}{' LS' if linear else '   '} "
            f"train loss {total / seen:.3f}  valid loss {result['loss']:.3f}  "
            f"valid acc {result['accuracy']:.3f}  ({elapsed:.0f} s)")
        if linear:
            rose = not config.ls_fixed and result["loss"] >= best_linear_loss
            if rose or epoch >= config.ls_epochs:
                linear = False  # re-insert the softmax
            best_linear_loss = min(best_linear_loss, result["loss"])
        elif result["accuracy"] > best:
            best, best_state = result["accuracy"], copy.deepcopy(model.state_dict())
        if elapsed > config.minutes * 60:
            log(f"  hops={model_config.hops}: the {config.minutes:g}-minute cap ended training "
                f"after epoch {epoch}")
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    stopped_linear = linear
    return model, {"history": history, "best_valid_accuracy": best,
                   "epochs_run": len(history), "ended_in_linear_start": stopped_linear,
                   "elapsed_s": time.perf_counter() - started}
