"""``attnkit vision caption``'s work: data, encoder pre-training, decoders, scores.

Per seed: a :class:`~attnkit.models.vision.show_attend_tell.CanvasEncoder` is trained to
classify single Fashion-MNIST items (shifted up to 4 pixels; Adam with a cosine decay of
the learning rate), then frozen, as Xu et al.
froze their VGG; its feature maps of every canvas are computed once, and one
Show-Attend-Tell decoder per attention kind (soft, hard) is trained on them. Scores:

* sequence accuracy: the greedy caption equals the reference (every word, in order, and
  the end at the right place);
* word accuracy: share of reference words predicted at their position (greedy);
* pointing accuracy: with the reference caption fed in (teacher forcing), the attention map
  of each word's step, upsampled bilinearly from the ``h x w`` grid (cell = 8 x 8 pixels)
  to the canvas, has its maximum inside the named item's box.

The weights for the scores and figures are recorded with :func:`attnkit.interp.capture`.
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

from attnkit.data.images import CAPTION_VOCAB, EOS, PAD, canvases, load_fashion_mnist
from attnkit.experiments.vision._caption_config import CaptionConfig
from attnkit.interp.capture import capture
from attnkit.models.vision.show_attend_tell import (
    CanvasEncoder,
    ShowAttendTell,
    ShowAttendTellConfig,
    caption_loss,
)

__all__ = ["run_caption", "prepare", "pointing_hits", "upsample_maps"]

STRIDE = 8  # pixels per feature cell of CanvasEncoder (three 2x2 poolings)
SHIFT = 4   # largest item shift (pixels) in encoder pre-training


def _pixels(images: np.ndarray) -> torch.Tensor:
    """uint8 ``(N, H, W)`` -> float ``(N, 1, H, W)`` in [0, 1]."""
    return torch.tensor(images, dtype=torch.float32).div_(255.0)[:, None]


def prepare(config: CaptionConfig, log: Callable[[str], None]) -> dict[str, Any]:
    """Items for the encoder and canvases for train/val/test (built from the train, val and
    official test splits of Fashion-MNIST; layouts fixed by ``data_seed``)."""
    train = load_fashion_mnist("train", config.data_dir)
    val = load_fashion_mnist("val", config.data_dir)
    test = load_fashion_mnist("test", config.data_dir)
    sets = {
        "train": canvases(train, count=config.train_canvases, seed=config.data_seed),
        "val": canvases(val, count=config.val_canvases, seed=config.data_seed + 1),
        "test": canvases(test, count=config.test_canvases, seed=config.data_seed + 2),
    }
    items = train.subset(config.encoder_items)
    log(f"data: {len(items)} items for the encoder; canvases train {config.train_canvases}, "
        f"val {config.val_canvases}, test {config.test_canvases} "
        f"({sets['train'].images.shape[1]}x{sets['train'].images.shape[2]} pixels)")
    return {"items": items, "val_items": val, "canvases": sets}


def _deadline_passed(deadline: float) -> bool:
    return time.perf_counter() >= deadline


def train_encoder(config: CaptionConfig, items, seed: int, deadline: float,
                  log: Callable[[str], None]) -> tuple[CanvasEncoder, dict]:
    """Pre-train the encoder as an item classifier; returns it frozen (eval mode)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    encoder = CanvasEncoder()
    optimizer = torch.optim.Adam(encoder.parameters(), lr=config.lr)
    images, labels = _pixels(items.images), torch.tensor(items.labels)
    batch = 2 * config.batch_size
    total = config.encoder_epochs * math.ceil(len(labels) / batch)
    # cosine decay to 0: the last weights are not a random point of a constant-rate walk
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total) / total)))
    steps, epochs_done, stopped = 0, 0, False
    for epoch in range(config.encoder_epochs):
        order = torch.randperm(len(labels), generator=gen)
        for start in range(0, len(order), batch):
            index = order[start:start + batch]
            dx, dy = torch.randint(-SHIFT, SHIFT + 1, (2,), generator=gen).tolist()
            shifted = torch.roll(images[index], shifts=(dy, dx), dims=(2, 3))
            loss = F.cross_entropy(encoder.classify(shifted), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            steps += 1
            if _deadline_passed(deadline):
                stopped = True
                break
        if stopped:
            break
        epochs_done = epoch + 1
        if config.progress:
            log(f"  encoder epoch {epoch + 1}/{config.encoder_epochs}: loss {loss.item():.3f}")
    encoder.eval()
    for parameter in encoder.parameters():
        parameter.requires_grad_(False)
    return encoder, {"steps": steps, "epochs": epochs_done, "stopped_by_time": stopped}


@torch.no_grad()
def item_accuracy(encoder: CanvasEncoder, items, limit: int = 5000) -> float:
    """Classification accuracy of the encoder's pre-training head on single items."""
    images, labels = _pixels(items.images[:limit]), torch.tensor(items.labels[:limit])
    hits = sum((encoder.classify(images[s:s + 500]).argmax(-1) == labels[s:s + 500]).sum().item()
               for s in range(0, len(labels), 500))
    return hits / len(labels)


@torch.no_grad()
def annotations(encoder: CanvasEncoder, canvas_set) -> tuple[torch.Tensor, tuple[int, int]]:
    """``(N, L, D)`` annotation vectors of every canvas and the grid ``(h, w)``."""
    images = _pixels(canvas_set.images)
    maps = [encoder(images[s:s + 256]) for s in range(0, len(images), 256)]
    feature_map = torch.cat(maps)  # (N, D, h, w)
    return ShowAttendTell.annotations(feature_map), tuple(feature_map.shape[2:])


def train_decoder(config: CaptionConfig, attention: str, features: torch.Tensor,
                  captions: torch.Tensor, seed: int, deadline: float,
                  log: Callable[[str], None]) -> tuple[ShowAttendTell, dict]:
    """Train one decoder on cached ``features (N, L, D)`` and ``captions (N, T + 1)``."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    model = ShowAttendTell(ShowAttendTellConfig(vocab_size=len(CAPTION_VOCAB),
                                                feature_dim=features.shape[-1],
                                                num_locations=features.shape[1],
                                                attention=attention))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    model.train()
    steps, epochs_done, stopped, last = 0, 0, False, {}
    for epoch in range(config.epochs):
        order = torch.randperm(len(captions), generator=gen)
        for start in range(0, len(order), config.batch_size):
            index = order[start:start + config.batch_size]
            losses = caption_loss(model, features[index], captions[index], pad=PAD,
                                  doubly_stochastic=config.doubly_stochastic,
                                  entropy_weight=config.entropy_weight,
                                  reward=config.hard_reward)
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            steps += 1
            last = losses
            if _deadline_passed(deadline):
                stopped = True
                break
        if stopped:
            break
        epochs_done = epoch + 1
        if config.progress:
            log(f"  {attention} epoch {epoch + 1}/{config.epochs}: nll {last['nll'].item():.3f}")
    model.eval()
    return model, {"steps": steps, "epochs": epochs_done, "stopped_by_time": stopped}


def upsample_maps(alphas: torch.Tensor, grid: tuple[int, int],
                  canvas: tuple[int, int]) -> torch.Tensor:
    """``alphas (N, T, h * w)`` -> ``(N, T, H, W)`` maps on the canvas: bilinear upsampling
    of the grid by :data:`STRIDE` (cell ``(r, c)`` covers pixels ``8r..8r+7``,
    ``8c..8c+7``), zero-padded to the canvas where the floor of the poolings lost pixels."""
    n, t, _ = alphas.shape
    h, w = grid
    maps = F.interpolate(alphas.reshape(n * t, 1, h, w), size=(h * STRIDE, w * STRIDE),
                         mode="bilinear", align_corners=False)  # (N*T, 1, 8h, 8w)
    maps = F.pad(maps, (0, canvas[1] - w * STRIDE, 0, canvas[0] - h * STRIDE))
    return maps.view(n, t, *canvas)


def pointing_hits(alphas: torch.Tensor, grid: tuple[int, int], boxes: np.ndarray,
                  num_items: np.ndarray, canvas: tuple[int, int]) -> tuple[int, int]:
    """Words whose upsampled attention maximum lies inside their item's box.

    Args:
        alphas: ``(N, T >= max_items, h * w)``; step ``k`` names item ``k``.
        boxes: ``(N, max_items, 4)`` ``(x0, y0, x1, y1)``, exclusive ends.
        num_items: ``(N,)``.

    Returns:
        ``(hits, words)``.
    """
    items = boxes.shape[1]
    maps = upsample_maps(alphas[:, :items], grid, canvas)  # (N, K, H, W)
    flat = maps.flatten(2).argmax(-1)  # (N, K)
    ys, xs = (flat // canvas[1]).numpy(), (flat % canvas[1]).numpy()
    real = np.arange(items)[None] < num_items[:, None]  # (N, K)
    inside = (xs >= boxes[..., 0]) & (xs < boxes[..., 2]) & (ys >= boxes[..., 1]) & \
        (ys < boxes[..., 3])
    return int((inside & real).sum()), int(real.sum())


@torch.no_grad()
def evaluate(model: ShowAttendTell, features: torch.Tensor, canvas_set,
             grid: tuple[int, int]) -> dict[str, float]:
    """Sequence, word and pointing accuracy on one canvas set."""
    captions = torch.tensor(canvas_set.tokens)  # (N, K + 2)
    targets = captions[:, 1:]
    generated, _ = model.generate(features, max_len=targets.shape[1])
    real = targets != PAD
    # positions after <eos> are <pad> in the reference and <eos> in the output
    same = (generated == targets) | ~real
    ended = (generated == EOS) | real
    sequence = (same.all(1) & ended.all(1)).float().mean().item()
    words = targets >= 3
    word = ((generated == targets) & words).sum().item() / words.sum().item()
    with capture(model, store=("weights",)) as cap:
        model(features, captions[:, :-1])
    alphas = cap.weights("attention")[:, 0]  # (N, T, L)
    hits, total = pointing_hits(alphas, grid, canvas_set.boxes, canvas_set.num_items,
                                tuple(canvas_set.images.shape[1:]))
    return {"sequence_accuracy": sequence, "word_accuracy": word,
            "pointing_accuracy": hits / total}


@torch.no_grad()
def overlay_data(model: ShowAttendTell, features: torch.Tensor, canvas_set, grid,
                 count: int) -> list[dict]:
    """Per-word attention (greedy decoding, captured) of the first ``count`` canvases."""
    if count == 0:
        return []
    with capture(model, store=("weights",)) as cap:
        tokens, _ = model.generate(features[:count], max_len=canvas_set.tokens.shape[1] - 1)
    alphas = cap.weights("attention")[:, 0]  # (count, T, L)
    maps = upsample_maps(alphas, grid, tuple(canvas_set.images.shape[1:]))
    out = []
    for n in range(count):
        row = tokens[n].tolist()
        length = row.index(EOS) if EOS in row else len(row)
        out.append({"image": canvas_set.images[n], "boxes": canvas_set.boxes[n],
                    "words": [CAPTION_VOCAB[t] for t in row[:length]],
                    "reference": canvas_set.caption(n), "maps": maps[n, :length].numpy()})
    return out


def _stats(values: list[float]) -> dict[str, float]:
    mean = sum(values) / len(values)
    spread = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) \
        if len(values) > 1 else 0.0
    return {"mean": mean, "std": spread, "min": min(values), "max": max(values),
            "values": values}


def run_caption(config: CaptionConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Every seed and attention kind; returns metrics (and figure data under ``"_figures"``)."""
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    started = time.perf_counter()
    data = prepare(config, log)
    sets = data["canvases"]
    budget = config.minutes * 60.0
    per_seed = budget / len(config.seeds)
    runs: dict[str, list[dict]] = {kind: [] for kind in config.attentions}
    encoders, figures = [], {}
    for s, seed in enumerate(config.seeds):
        seed_start = started + s * per_seed
        shares = np.cumsum([0.35] + [0.65 / len(config.attentions)] * len(config.attentions))
        log(f"seed {seed}: pre-training the encoder")
        encoder, enc_info = train_encoder(config, data["items"], seed,
                                          seed_start + shares[0] * per_seed, log)
        enc_info["val_item_accuracy"] = item_accuracy(
            encoder, data["val_items"], limit=min(5000, 10 * config.val_canvases))
        encoders.append(enc_info)
        log(f"seed {seed}: encoder item accuracy (val) {enc_info['val_item_accuracy']:.3f}")
        feats, grid = {}, None
        for split, canvas_set in sets.items():
            feats[split], grid = annotations(encoder, canvas_set)
        captions = torch.tensor(sets["train"].tokens)
        for k, kind in enumerate(config.attentions):
            model, info = train_decoder(config, kind, feats["train"], captions, seed,
                                        seed_start + shares[k + 1] * per_seed, log)
            info["val"] = evaluate(model, feats["val"], sets["val"], grid)
            info["test"] = evaluate(model, feats["test"], sets["test"], grid)
            runs[kind].append(info)
            log(f"seed {seed} {kind}: val sequence {info['val']['sequence_accuracy']:.3f}, "
                f"pointing {info['val']['pointing_accuracy']:.3f}; test sequence "
                f"{info['test']['sequence_accuracy']:.3f}, pointing "
                f"{info['test']['pointing_accuracy']:.3f} ({info['epochs']} epochs)")
            if s == 0:
                figures[kind] = overlay_data(model, feats["test"], sets["test"], grid,
                                             config.overlays)
    summary = {kind: {split: {metric: _stats([r[split][metric] for r in rows])
                              for metric in rows[0][split]}
                      for split in ("val", "test")} for kind, rows in runs.items()}
    encoder_acc = _stats([e["val_item_accuracy"] for e in encoders])
    config_dict = asdict(config)
    return {"config": config_dict, "grid": list(grid), "runs": runs, "encoders": encoders,
            "encoder_item_accuracy": encoder_acc, "summary": summary,
            "elapsed_s": time.perf_counter() - started,
            "machine": {"threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                        "load_average_1min": os.getloadavg()[0]},
            "_figures": figures}
