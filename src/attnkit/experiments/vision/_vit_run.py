"""``attnkit vision vit``'s work: train a small ViT per seed, score it, roll its attention out.

Dosovitskiy et al. 2020 (arXiv:2010.11929) for the model; Abnar & Zuidema 2020
(arXiv:2005.00928) for the rollout. Training: AdamW, linear warm-up over the first 5% of
the updates and cosine decay to 0, for a fixed number of epochs (or until the time cap).
Validation accuracy after each epoch; test accuracy (official 10,000 images) once at the
end. The rollout is checked with one number: the share of the class token's rollout that
falls on patches holding part of the item (any pixel > 0.1), against the share of such
patches (what a uniform map would give), beside the same share for the last layer's raw
attention.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from attnkit.data.images import load_fashion_mnist
from attnkit.experiments.vision._vit_config import VitRunConfig
from attnkit.interp.capture import capture
from attnkit.interp.rollout import attention_rollout, class_token_rollout
from attnkit.models.vision.vit import VisionTransformer, ViTConfig

__all__ = ["run_vit", "foreground_share"]

INK = 0.1      # a pixel above this (in [0, 1]) belongs to the item
WARMUP = 0.05  # share of the updates spent warming the learning rate up


def _pixels(images: np.ndarray) -> torch.Tensor:
    return torch.tensor(images, dtype=torch.float32).div_(255.0)[:, None]  # (N, 1, 28, 28)


def _model(config: VitRunConfig) -> VisionTransformer:
    return VisionTransformer(ViTConfig(patch_size=config.patch_size, d_model=config.d_model,
                                       num_layers=config.num_layers,
                                       num_heads=config.num_heads, ffn_dim=config.ffn_dim))


@torch.no_grad()
def accuracy(model: VisionTransformer, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy, in batches of 500."""
    model.eval()
    hits = sum((model(images[s:s + 500]).argmax(-1) == labels[s:s + 500]).sum().item()
               for s in range(0, len(labels), 500))
    return hits / len(labels)


def train_one(config: VitRunConfig, seed: int, data: dict, deadline: float,
              log: Callable[[str], None]) -> tuple[VisionTransformer, dict]:
    """Train one ViT; returns it (eval mode) and its training record."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = _model(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    images, labels = data["train"]
    per_epoch = math.ceil(len(labels) / config.batch_size)
    total = per_epoch * config.epochs
    warmup = max(1, int(WARMUP * total))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    curve, steps, stopped = [], 0, False
    for epoch in range(config.epochs):
        model.train()
        order = torch.randperm(len(labels), generator=gen)
        for start in range(0, len(order), config.batch_size):
            index = order[start:start + config.batch_size]
            loss = F.cross_entropy(model(images[index]), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            steps += 1
            if time.perf_counter() >= deadline:
                stopped = True
                break
        val = accuracy(model, *data["val"])
        curve.append({"epoch": epoch + 1, "steps": steps, "val_accuracy": val,
                      "train_loss": loss.item()})
        if config.progress:
            log(f"  seed {seed} epoch {epoch + 1}/{config.epochs}: loss {loss.item():.3f}, "
                f"val accuracy {val:.3f}")
        if stopped:
            break
    model.eval()
    return model, {"steps": steps, "epochs": len(curve) if not stopped else len(curve) - 1,
                   "stopped_by_time": stopped, "curve": curve}


def foreground_share(maps: torch.Tensor, images: torch.Tensor, patch: int) -> tuple[float, float]:
    """Share of ``maps (N, g, g)`` (rows summing to 1) on patches holding item pixels, and
    the share of such patches (a uniform map's share); ``images (N, 1, S, S)``."""
    ink = F.max_pool2d(images, patch)[:, 0] > INK  # (N, g, g)
    on_item = (maps * ink).flatten(1).sum(-1)  # (N,)
    return on_item.mean().item(), ink.flatten(1).float().mean(-1).mean().item()


@torch.no_grad()
def rollout_stats(model: VisionTransformer, images: torch.Tensor, config: VitRunConfig,
                  limit: int = 1000) -> dict[str, float]:
    """Foreground share of the rollout and of the last layer's class-token attention."""
    images = images[:limit]
    rolled, last = [], []
    for s in range(0, len(images), 250):
        batch = images[s:s + 250]
        with capture(model, store=("weights",)) as cap:
            model(batch)
        layers = [cap.weights(name) for name in cap.names]  # each (B, H, T, T)
        row = attention_rollout(layers, residual=config.residual,
                                head_fusion=config.head_fusion)[:, 0, 1:]  # (B, g*g)
        rolled.append(row / row.sum(-1, keepdim=True))
        raw = layers[-1].mean(1)[:, 0, 1:]  # (B, g*g): last layer, heads averaged
        last.append(raw / raw.sum(-1, keepdim=True).clamp_min(1e-12))
    grid = model.config.grid
    rolled = torch.cat(rolled).view(-1, grid, grid)
    last = torch.cat(last).view(-1, grid, grid)
    share, uniform = foreground_share(rolled, images, config.patch_size)
    last_share, _ = foreground_share(last, images, config.patch_size)
    return {"rollout_on_item": share, "last_layer_on_item": last_share,
            "uniform_on_item": uniform}


def _stats(values: list[float]) -> dict[str, Any]:
    mean = sum(values) / len(values)
    spread = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) \
        if len(values) > 1 else 0.0
    return {"mean": mean, "std": spread, "min": min(values), "max": max(values),
            "values": values}


def run_vit(config: VitRunConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Every seed; returns metrics (figure data under ``"_figures"``)."""
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    started = time.perf_counter()
    train = load_fashion_mnist("train", config.data_dir).subset(config.train_images)
    limit = config.eval_images or 10 ** 9
    val = load_fashion_mnist("val", config.data_dir).subset(limit)
    test = load_fashion_mnist("test", config.data_dir).subset(limit)
    data = {name: (_pixels(part.images), torch.tensor(part.labels))
            for name, part in (("train", train), ("val", val), ("test", test))}
    log(f"data: train {len(train)}, val {len(val)}, test {len(test)} Fashion-MNIST images")
    per_seed = config.minutes * 60.0 / len(config.seeds)
    runs, figures = [], {}
    for s, seed in enumerate(config.seeds):
        model, info = train_one(config, seed, data, started + (s + 1) * per_seed, log)
        info["test_accuracy"] = accuracy(model, *data["test"])
        info["rollout"] = rollout_stats(model, data["test"][0], config)
        runs.append(info)
        log(f"seed {seed}: test accuracy {info['test_accuracy']:.3f}; rollout on the item "
            f"{info['rollout']['rollout_on_item']:.2f} (uniform "
            f"{info['rollout']['uniform_on_item']:.2f})")
        if s == 0 and config.maps:
            images = data["test"][0][:config.maps]
            logits, maps = class_token_rollout(model, images, grid=model.config.grid,
                                               residual=config.residual,
                                               head_fusion=config.head_fusion)
            figures = {"images": images[:, 0].numpy(), "maps": maps.numpy(),
                       "predicted": logits.argmax(-1).tolist(),
                       "labels": data["test"][1][:config.maps].tolist()}
    parameters = sum(p.numel() for p in model.parameters())
    summary = {"val_accuracy": _stats([r["curve"][-1]["val_accuracy"] for r in runs]),
               "test_accuracy": _stats([r["test_accuracy"] for r in runs])}
    for key in ("rollout_on_item", "last_layer_on_item", "uniform_on_item"):
        summary[key] = _stats([r["rollout"][key] for r in runs])
    return {"config": asdict(config), "parameters": parameters, "runs": runs,
            "data": {"train": len(train), "val": len(val), "test": len(test)},
            "summary": summary, "elapsed_s": time.perf_counter() - started,
            "machine": {"threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                        "load_average_1min": os.getloadavg()[0]},
            "_figures": figures}
