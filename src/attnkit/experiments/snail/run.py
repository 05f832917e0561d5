"""One ``attnkit snail`` run: the glyph splits, then per (ways, shots) and model: training on
training-alphabet episodes for the same number of updates, model selection on validation
alphabets, accuracy on test-alphabet episodes with a 95% interval; then the report.
"""

from __future__ import annotations

import copy
import math
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import torch
import torch.nn.functional as F

from attnkit._validate import output_dir
from attnkit.data.glyphs import BLOCKS, Episodes, find_unifont, load_glyph_sets, split_blocks
from attnkit.experiments.snail.config import SnailRunConfig
from attnkit.experiments.snail.report import write_report
from attnkit.models.protonet import ProtoNet
from attnkit.models.snail import SNAIL, SnailConfig
from attnkit.train import TrainConfig, Trainer

__all__ = ["run", "build_model", "accuracy_interval", "evaluate", "GOAL"]

#: the issue's goal: at (5, 1), SNAIL's test accuracy above each of these
GOAL = {"setting": (5, 1), "model": "snail", "above": ["tc-only", "attention-only", "protonet"]}
_LAYOUT = {"snail": "snail", "tc-only": "tc", "attention-only": "attention"}
# Fixed seeds of the evaluation episodes: the same episodes whatever --seed trains with.
_VALID_SEED, _TEST_SEED = 1001, 1002
_EVAL_BATCH = 50  # episodes per forward pass at evaluation


def build_model(kind: str, ways: int, shots: int, config: SnailRunConfig) -> torch.nn.Module:
    """The model ``kind`` (a MODEL_KINDS key) for ``ways``-way ``shots``-shot episodes."""
    if kind == "protonet":
        return ProtoNet(ways, channels=config.channels)
    return SNAIL(SnailConfig(ways=ways, shots=shots, layout=_LAYOUT[kind], width=config.width,
                             channels=config.channels))


def _loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    logits = model(batch["support"], batch["support_labels"], batch["query"])  # (E, Q, N)
    labels = batch["query_labels"]
    return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="sum"), \
        labels.numel()


@torch.no_grad()
def evaluate(model: torch.nn.Module, episodes: Episodes, count: int) -> list[float]:
    """Accuracy of each of the first ``count`` episodes (fraction of its queries right)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out: list[float] = []
    for start in range(0, count, _EVAL_BATCH):
        batch = episodes.batch(list(range(start, min(start + _EVAL_BATCH, count))))
        batch = {key: value.to(device) for key, value in batch.items()}
        logits = model(batch["support"], batch["support_labels"], batch["query"])
        right = (logits.argmax(-1) == batch["query_labels"]).float().mean(-1)  # (E,)
        out += right.tolist()
    model.train(was_training)
    return out


def accuracy_interval(per_episode: list[float]) -> dict[str, float]:
    """Mean accuracy and the half-width of its normal 95% interval over episodes."""
    count = len(per_episode)
    mean = sum(per_episode) / count
    var = sum((a - mean) ** 2 for a in per_episode) / max(count - 1, 1)
    return {"accuracy": mean, "ci95": 1.96 * math.sqrt(var / count), "episodes": count}


def _machine() -> dict[str, Any]:
    return {"torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def _train_one(config: SnailRunConfig, kind: str, ways: int, shots: int, splits,
               log: Callable[[str], None]) -> dict[str, Any]:
    torch.manual_seed(config.seed)
    model = build_model(kind, ways, shots, config)
    if torch.cuda.is_available():
        model = model.cuda()
    episodes = {split: Episodes(splits[split], ways=ways, shots=shots, queries=config.queries,
                                rotations=config.rotations, strength=config.strength,
                                seed=seed)
                for split, seed in (("train", config.seed), ("valid", _VALID_SEED),
                                    ("test", _TEST_SEED))}
    per_step = config.episodes_per_step
    best: dict[str, Any] = {"accuracy": -1.0, "step": 0, "state": None}
    steps_done = [0]

    def batches(index: int, rank: int = 0, world_size: int = 1):
        steps_done[0] = index + 1
        return episodes["train"].batch(list(range(index * per_step + rank,
                                                  (index + 1) * per_step, world_size)))

    def validate(m: torch.nn.Module) -> dict[str, float]:
        accuracy = sum(evaluate(m, episodes["valid"], config.valid_episodes)) / \
            config.valid_episodes
        if accuracy > best["accuracy"]:
            best.update(accuracy=accuracy, step=steps_done[0],
                        state=copy.deepcopy(m.state_dict()))
        log(f"  {kind} update {steps_done[0]}: validation accuracy {accuracy:.3f} "
            f"({time.perf_counter() - began:.0f} s)")
        return {"valid_accuracy": accuracy}

    train_config = TrainConfig(
        max_steps=config.steps, max_time_s=config.minutes * 60.0, lr=config.lr,
        warmup_steps=min(config.warmup_steps, config.steps - 1), schedule="cosine",
        eval_every=max(1, config.steps // config.eval_points), seed=config.seed,
        log_every=max(1, config.steps // 10), progress=config.progress, amp="off",
        weight_decay=0.0, betas=(0.9, 0.999))
    parameters = sum(p.numel() for p in model.parameters())
    log(f"[{ways}-way {shots}-shot] {kind}: {parameters:,} parameters, {config.steps} updates "
        f"of {per_step} episodes (cap {config.minutes:g} min)")
    began = time.perf_counter()
    summary = Trainer(model, train_config, batches, _loss, eval_fn=validate).fit()
    if summary.get("interrupted"):
        raise KeyboardInterrupt
    model.load_state_dict(best["state"])
    test = accuracy_interval(evaluate(model, episodes["test"], config.test_episodes))
    log(f"[{ways}-way {shots}-shot] {kind}: {summary['step']} updates, best valid "
        f"{best['accuracy']:.3f} at update {best['step']}; test {test['accuracy']:.3f} "
        f"+- {test['ci95']:.3f}")
    curve = [{"step": r["step"], "valid_accuracy": r["valid_accuracy"]}
             for r in summary["metrics"] if r.get("event") == "eval"]
    return {"parameters": parameters, "description": kind,
            "training": {"steps": summary["step"], "elapsed_s": summary["elapsed"],
                         "capped": summary["step"] < config.steps, "loss": summary["loss"],
                         "curve": curve},
            "selected": {"step": best["step"], "valid_accuracy": best["accuracy"]},
            "test": test}


def _goal_check(settings: dict[str, Any]) -> dict[str, Any] | None:
    ways, shots = GOAL["setting"]
    runs = settings.get(f"{ways}-way {shots}-shot", {})
    if GOAL["model"] not in runs:
        return None
    mine = runs[GOAL["model"]]["test"]
    rows = []
    for other in GOAL["above"]:
        if other in runs:
            theirs = runs[other]["test"]
            rows.append({"other": other, "snail": mine["accuracy"],
                         "measured": theirs["accuracy"],
                         "met": mine["accuracy"] > theirs["accuracy"],
                         "intervals_overlap": abs(mine["accuracy"] - theirs["accuracy"])
                         <= mine["ci95"] + theirs["ci95"]})
    return {"setting": f"{ways}-way {shots}-shot", "rows": rows,
            "met": bool(rows) and all(r["met"] for r in rows)}


def run(config: SnailRunConfig, *, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train and test every model at every setting, write the report; return the metrics.

    Raises:
        UserError: an unusable report directory or no unifont.hex (checked before work).
        KeyboardInterrupt: a training run was interrupted.
    """
    if not isinstance(config, SnailRunConfig):
        raise TypeError(f"config: expected a SnailRunConfig, got {type(config).__name__}")
    report_dir = output_dir(config.report_dir, "--out")
    path = find_unifont(config.data_dir)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    started = time.perf_counter()
    machine = _machine()
    splits = load_glyph_sets(path)
    classes = {s: len(g) * (4 if config.rotations else 1) for s, g in splits.items()}
    data = {"path": str(path), "blocks_listed": len(BLOCKS), "alphabets": split_blocks(),
            "glyphs": {s: len(g) for s, g in splits.items()}, "classes": classes}
    log(f"unifont glyphs from {path}: " + ", ".join(
        f"{s} {len(g)} glyphs ({classes[s]} classes)" for s, g in splits.items()))
    settings: dict[str, dict[str, Any]] = {}
    for ways, shots in config.settings:
        settings[f"{ways}-way {shots}-shot"] = {
            kind: _train_one(config, kind, ways, shots, splits, log) for kind in config.models}
    machine["load_average_1min_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    metrics = {"config": asdict(config), "data": data, "machine": machine,
               "settings": settings, "goal": _goal_check(settings),
               "wall_s": time.perf_counter() - started}
    write_report(report_dir, metrics, splits, config)
    log(f"wrote {report_dir}/ (metrics.json, README.md, report.html and the figures)")
    return metrics
