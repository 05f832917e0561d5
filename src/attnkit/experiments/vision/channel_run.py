"""The channel part's run: CNN, CNN+SE, CNN+CBAM on Fashion-MNIST at equal epochs.

Models: :class:`attnkit.models.vision.CNN` with no gate, :func:`~attnkit.models.vision.se_gate`
(Hu et al., 2018, arXiv:1709.01507) and :func:`~attnkit.models.vision.cbam_gate` (Woo et al.,
2018, arXiv:1807.06521) in every block. Every model sees the same training images in the
same order for the same number of epochs with the same optimizer; seeds change the
initialization and the order. The 10,000 test images are scored once per run, after
training; the validation split (carved from the 60,000 training images) gives the curves.
"""

from __future__ import annotations

from typing import Any

import torch

from attnkit.data.images import CLASS_NAMES, load_fashion_mnist
from attnkit.experiments.report import Report
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
from attnkit.experiments.vision.config import CHANNEL_MODELS, ChannelConfig
from attnkit.experiments.vision.report import curves_figure, machine, pct_spread
from attnkit.models.vision import CNN, cbam_gate, se_gate

__all__ = ["run_channel", "build_model", "GOAL_POINTS"]

GOAL_POINTS = 0.3  # the goal: CBAM at least 0.3 accuracy points above the plain CNN


def build_model(name: str, config: ChannelConfig) -> CNN:
    """The CNN of ``name`` (a key of CHANNEL_MODELS)."""
    gates = {"cnn": None, "cnn-se": se_gate(config.reduction),
             "cnn-cbam": cbam_gate(config.reduction)}
    return CNN(len(CLASS_NAMES), config.widths, gate=gates[name])


def run_channel(config: ChannelConfig) -> dict[str, Any]:
    """Train every model for every seed, score the test set, write the report; the metrics."""
    set_threads(config.threads)
    train = load_fashion_mnist("train", config.data_dir).subset(config.train_size)
    val = load_fashion_mnist("val", config.data_dir).subset(config.val_size)
    test = load_fashion_mnist("test", config.data_dir)
    if config.test_size is not None:
        test = test.subset(config.test_size)
    share = config.minutes * 60 / (len(config.models) * config.seeds)
    runs = []
    for index in range(config.seeds):
        seed = config.seed + index
        for name in config.models:
            torch.manual_seed(seed)
            model = build_model(name, config)
            label = f"[channel] {name} seed {seed}"
            result = train_epochs(model, cross_entropy_loss, (train.images, train.labels),
                                  (val.images, val.labels), epochs=config.epochs,
                                  batch_size=config.batch_size, lr=config.lr, seed=seed,
                                  seconds=share, label=label, progress=config.progress)
            test_acc = accuracy(model, test.images, test.labels)
            log(f"{label}: test accuracy {test_acc:.2%}", config.progress)
            if index == 0:
                save_model(model, config.report_dir, f"{name}-seed{seed}", dict(vars(config)))
            runs.append({"model": name, "seed": seed, "seed_index": index,
                         "parameters": count_parameters(model), "test_accuracy": test_acc,
                         "epochs_done": result.epochs_done, "updates": result.updates,
                         "stopped_by_time": result.stopped_by_time,
                         "val_curve": result.val_curve, "train_loss": result.train_loss})
    metrics = _metrics(config, runs, len(train), len(val), len(test))
    write_report(config, metrics)
    return metrics


def _metrics(config: ChannelConfig, runs: list[dict[str, Any]], n_train: int, n_val: int,
             n_test: int) -> dict[str, Any]:
    summary = {}
    for name in config.models:
        mine = [r for r in runs if r["model"] == name]
        summary[name] = {"test_accuracy": mean_spread([r["test_accuracy"] for r in mine]),
                         "final_val_accuracy": mean_spread([r["val_curve"][-1] for r in mine]),
                         "parameters": mine[0]["parameters"],
                         "epochs_done": [r["epochs_done"] for r in mine]}
    goal: dict[str, Any] = {"cbam_minus_cnn_points": float("nan"), "met": False,
                            "equal_epochs": len({r["epochs_done"] for r in runs}) == 1
                            and not any(r["stopped_by_time"] for r in runs)}
    if "cnn" in summary and "cnn-cbam" in summary:
        diff = 100 * (summary["cnn-cbam"]["test_accuracy"]["mean"]
                      - summary["cnn"]["test_accuracy"]["mean"])
        goal.update(cbam_minus_cnn_points=diff,
                    met=bool(diff >= GOAL_POINTS and goal["equal_epochs"]))
        by_seed = {r["seed"]: {} for r in runs}
        for r in runs:
            by_seed[r["seed"]][r["model"]] = r["test_accuracy"]
        goal["paired_points_by_seed"] = {
            str(seed): 100 * (acc["cnn-cbam"] - acc["cnn"]) for seed, acc in by_seed.items()}
    if "cnn" in summary and "cnn-se" in summary:
        goal["se_minus_cnn_points"] = 100 * (summary["cnn-se"]["test_accuracy"]["mean"]
                                             - summary["cnn"]["test_accuracy"]["mean"])
    return {"part": "channel", "config": {k: v for k, v in vars(config).items()},
            "data": {"train_images": n_train, "val_images": n_val, "test_images": n_test,
                     "source": "Fashion-MNIST (Debian dataset-fashion-mnist)"},
            "machine": machine(config.threads), "summary": summary, "goal": goal,
            "runs": runs}


def write_report(config: ChannelConfig, metrics: dict[str, Any]) -> None:
    """README.md, report.html, metrics.json and the learning-curve PNG."""
    report = Report(config.report_dir, title="attnkit vision channel: SE and CBAM in a CNN "
                                              "on Fashion-MNIST")
    data, goal = metrics["data"], metrics["goal"]
    report.add_list([
        f"data: {data['train_images']} training images (of the 55,000-image training split), "
        f"{data['val_images']} validation images for the curves, {data['test_images']} test "
        f"images scored once after training",
        f"models: CNN widths {config.widths} (conv3x3-BN-ReLU-[gate]-maxpool per block, "
        f"global average pooling); SE and CBAM with reduction {config.reduction}",
        f"training: {config.epochs} epochs for every model (equal epochs: "
        f"{'yes' if goal['equal_epochs'] else '**no**, the time cap cut some runs'}), "
        f"batch {config.batch_size}, Adam lr {config.lr:g} with cosine decay, "
        f"{config.seeds} seeds",
        f"machine: {metrics['machine']}",
    ])
    rows = []
    for name, stats in metrics["summary"].items():
        rows.append([name, CHANNEL_MODELS[name], stats["parameters"],
                     pct_spread(stats["test_accuracy"]),
                     pct_spread(stats["final_val_accuracy"])])
    report.add_table(["model", "gate", "parameters", "test accuracy % (mean ± std, min-max)",
                      "validation accuracy %"], rows,
                     title=f"Results over {config.seeds} seeds")
    verdict = "met" if goal["met"] else "**not met**"
    text = (f"Goal: CBAM at least {GOAL_POINTS} points above the plain CNN on the test "
            f"images at equal epochs: CBAM - CNN = {goal['cbam_minus_cnn_points']:+.2f} "
            f"points ({verdict}).")
    if "se_minus_cnn_points" in goal:
        text += f" SE - CNN = {goal['se_minus_cnn_points']:+.2f} points."
    paired = goal.get("paired_points_by_seed")
    if paired:
        wins = sum(v > 0 for v in paired.values())
        text += (f" Per seed (same data order, CBAM - CNN): "
                 f"{', '.join(f'{v:+.2f}' for v in paired.values())} points; CBAM is ahead "
                 f"on {wins} of {len(paired)} seeds, so read the mean difference against the "
                 f"spread of the seeds.")
    report.add_text(text)
    report.add_text("Quality only: no timings are reported (the runs shared their CPU with "
                    "other work).")
    report.add_figure("val_curves", curves_figure(metrics["runs"], "validation accuracy"),
                      caption="validation accuracy after each epoch, every seed")
    report.write(metrics)
