"""The glimpse part's run: CNN vs soft spatial attention vs RAM on cluttered 60x60 images.

Data: :func:`attnkit.data.images.cluttered` of Fashion-MNIST (one real item at a random
place of a 60x60 canvas plus 4 random 8x8 fragments of other items), the training,
validation and test images built from the matching splits with fixed data seeds, the same
for every model and model seed. Models: :class:`~attnkit.models.vision.CNN` (the baseline,
global average pooling, its own trunk widths ``cnn_widths``),
:class:`~attnkit.models.vision.SoftSpatialClassifier` (trunk ``widths``, attention pooling)
and :class:`~attnkit.models.vision.RAM` (Mnih et al., 2014, arXiv:1406.6247; core width
``ram_hidden``, glimpse layers half as wide). The goal: each attention model's test error
and parameter count at most the CNN's (the defaults give the CNN the most parameters).
Besides accuracy the run measures where attention goes: the fraction of RAM's glimpse
centres inside the item's square, and the soft attention mass on it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from attnkit.data.images import CLASS_NAMES, Composed, cluttered, load_fashion_mnist
from attnkit.experiments.vision.common import (
    accuracy,
    count_parameters,
    cross_entropy_loss,
    log,
    mean_spread,
    save_model,
    set_threads,
    train_epochs,
)
from attnkit.experiments.vision.config import GlimpseConfig
from attnkit.experiments.vision.glimpse_report import write_report
from attnkit.models.vision import CNN, RAM, RAMConfig, SoftSpatialClassifier, ram_loss

__all__ = ["run_glimpse", "build_model", "cluttered_splits", "attention_on_item"]

DATA_SEEDS = {"train": 1, "val": 2, "test": 3}  # fixed: the data never changes with --seed


def cluttered_splits(config: GlimpseConfig) -> dict[str, Composed]:
    """The cluttered training, validation and test images."""
    sizes = {"train": config.train_size, "val": config.val_size, "test": config.test_size}
    out = {}
    for split, size in sizes.items():
        source = load_fashion_mnist(split, config.data_dir)
        if size is not None:
            source = source.subset(size)
        out[split] = cluttered(source, size=config.image_size, fragments=config.fragments,
                               seed=DATA_SEEDS[split])
    return out


def build_model(name: str, config: GlimpseConfig) -> nn.Module:
    """``cnn``, ``soft`` or ``ram`` for ``config``."""
    classes = len(CLASS_NAMES)
    if name == "cnn":
        return CNN(classes, config.cnn_widths)
    if name == "soft":
        return SoftSpatialClassifier(classes, config.widths, image_size=config.image_size)
    return RAM(RAMConfig(num_classes=classes, glimpses=config.glimpses,
                         hidden=config.ram_hidden,
                         glimpse_hidden=max(1, config.ram_hidden // 2)))


def _ram_loss(model: nn.Module, images: torch.Tensor,
              labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    output = model(images)
    return ram_loss(output, labels)[0], output.logits


def _ram_logits(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    return model(images).logits


@torch.no_grad()
def attention_on_item(model: nn.Module, data: Composed, count: int = 1000) -> dict[str, Any]:
    """Where the attention of ``model`` goes on the first ``count`` images of ``data``.

    RAM: the fraction of glimpse centres inside the item's 28x28 square, and per step.
    Soft attention: the mean attention mass on cells whose centre is inside the square.
    """
    images = torch.from_numpy(data.images[:count]).float().div_(255.0)[:, None]
    boxes = torch.from_numpy(data.boxes[:count]).float()  # (N, 4) x0, y0, x1, y1
    side = data.images.shape[-1]
    model.eval()
    if isinstance(model, RAM):
        locations = model(images).locations  # (N, T, 2) in [-1, 1]
        pixels = (locations + 1) / 2 * side  # (N, T, 2) x, y
        inside = ((pixels[..., 0] >= boxes[:, None, 0]) & (pixels[..., 0] < boxes[:, None, 2])
                  & (pixels[..., 1] >= boxes[:, None, 1]) & (pixels[..., 1] < boxes[:, None, 3]))
        return {"glimpses_on_item": float(inside.float().mean()),
                "glimpses_on_item_by_step": inside.float().mean(dim=0).tolist()}
    if isinstance(model, SoftSpatialClassifier):
        weights = model.attend(images)[1].mean(dim=1)  # (N, h, w)
        h, w = weights.shape[1:]
        ys = (torch.arange(h).float() + 0.5) * side / h
        xs = (torch.arange(w).float() + 0.5) * side / w
        in_x = (xs[None, :] >= boxes[:, 0:1]) & (xs[None, :] < boxes[:, 2:3])  # (N, w)
        in_y = (ys[None, :] >= boxes[:, 1:2]) & (ys[None, :] < boxes[:, 3:4])  # (N, h)
        mask = in_y[:, :, None] & in_x[:, None, :]  # (N, h, w)
        area = float(mask.float().mean())
        return {"attention_mass_on_item": float((weights * mask).sum(dim=(1, 2)).mean()),
                "item_area_fraction": area}
    return {}


def run_glimpse(config: GlimpseConfig) -> dict[str, Any]:
    """Train every model for every seed, score the test set, write the report; the metrics."""
    set_threads(config.threads)
    data = cluttered_splits(config)
    train, val, test = data["train"], data["val"], data["test"]
    share = config.minutes * 60 / (len(config.models) * config.seeds)
    runs, kept = [], {}
    for index in range(config.seeds):
        seed = config.seed + index
        for name in config.models:
            torch.manual_seed(seed)
            model = build_model(name, config)
            is_ram = name == "ram"
            label = f"[glimpse] {name} seed {seed}"
            result = train_epochs(
                model, _ram_loss if is_ram else cross_entropy_loss,
                (train.images, train.labels), (val.images, val.labels),
                epochs=config.ram_epochs if is_ram else config.epochs,
                batch_size=config.batch_size, lr=config.ram_lr if is_ram else config.lr,
                seed=seed, seconds=share, logits_fn=_ram_logits if is_ram else _plain,
                label=label, progress=config.progress)
            test_acc = accuracy(model, test.images, test.labels,
                                logits_fn=_ram_logits if is_ram else _plain)
            log(f"{label}: test error {1 - test_acc:.2%}", config.progress)
            runs.append({"model": name, "seed": seed, "seed_index": index,
                         "parameters": count_parameters(model), "test_accuracy": test_acc,
                         "test_error": 1 - test_acc, "epochs_done": result.epochs_done,
                         "epochs_planned": config.ram_epochs if is_ram else config.epochs,
                         "updates": result.updates, "stopped_by_time": result.stopped_by_time,
                         "val_curve": result.val_curve, "train_loss": result.train_loss,
                         "attention": attention_on_item(model, test)})
            if index == 0:
                kept[name] = model
                save_model(model, config.report_dir, f"{name}-seed{seed}", dict(vars(config)))
    metrics = _metrics(config, runs, {k: len(v) for k, v in data.items()})
    write_report(config, metrics, kept, test)
    return metrics


def _plain(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    return model(images)


def _metrics(config: GlimpseConfig, runs: list[dict[str, Any]],
             sizes: dict[str, int]) -> dict[str, Any]:
    summary = {}
    for name in config.models:
        mine = [r for r in runs if r["model"] == name]
        attention: dict[str, float] = {}
        for key in mine[0]["attention"]:
            if not key.endswith("_by_step"):
                attention[key] = float(np.mean([r["attention"][key] for r in mine]))
        summary[name] = {"test_error": mean_spread([r["test_error"] for r in mine]),
                         "final_val_accuracy": mean_spread([r["val_curve"][-1] for r in mine]),
                         "parameters": mine[0]["parameters"],
                         "epochs_done": [r["epochs_done"] for r in mine],
                         "attention": attention}
    checks = []
    if "cnn" in summary:
        cnn = summary["cnn"]
        for name in (m for m in config.models if m != "cnn"):
            error, parameters = summary[name]["test_error"]["mean"], summary[name]["parameters"]
            error_ok = bool(error <= cnn["test_error"]["mean"])
            parameters_ok = bool(parameters <= cnn["parameters"])
            checks.append({"model": name, "error": error, "cnn_error": cnn["test_error"]["mean"],
                           "parameters": parameters, "cnn_parameters": cnn["parameters"],
                           "error_ok": error_ok, "parameters_ok": parameters_ok,
                           "met": error_ok and parameters_ok})
    return {"part": "glimpse", "config": dict(vars(config)),
            "data": {f"{k}_images": v for k, v in sizes.items()}
            | {"source": "cluttered 60x60 compositions of Fashion-MNIST images"},
            "summary": summary,
            "goal": {"checks": checks, "met": bool(checks) and all(c["met"] for c in checks)},
            "runs": runs}
