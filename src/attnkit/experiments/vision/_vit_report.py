"""The report of ``attnkit vision vit``: accuracy over seeds, learning curves, rollout maps."""

from __future__ import annotations

from typing import Any

import numpy as np

from attnkit.data.images import CLASS_NAMES
from attnkit.experiments.report import Report
from attnkit.experiments.vision._vit_config import VitRunConfig
from attnkit.interp.figures import pyplot

__all__ = ["write_report"]


def rollout_figure(figures: dict, patch: int):
    """Each test image above its rollout map (upsampled, nearest) overlaid on it."""
    plt = pyplot()
    count = len(figures["labels"])
    fig, axes = plt.subplots(2, count, figsize=(1.5 * count, 3.4), squeeze=False)
    for i in range(count):
        image, heat = figures["images"][i], figures["maps"][i]
        up = np.kron(heat, np.ones((patch, patch)))
        axes[0][i].imshow(image, cmap="gray", vmin=0, vmax=1)
        axes[0][i].set_title(f"{CLASS_NAMES[figures['labels'][i]]}\n→ "
                             f"{CLASS_NAMES[figures['predicted'][i]]}", fontsize=7)
        axes[1][i].imshow(image, cmap="gray", vmin=0, vmax=1)
        axes[1][i].imshow(up / max(float(up.max()), 1e-12), cmap="jet", alpha=0.5, vmin=0,
                          vmax=1)
        for row in axes:
            row[i].axis("off")
    fig.tight_layout()
    return fig


def curve_figure(runs: list[dict], seeds):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 3))
    for seed, run in zip(seeds, runs, strict=True):
        ax.plot([p["epoch"] for p in run["curve"]], [p["val_accuracy"] for p in run["curve"]],
                marker="o", label=f"seed {seed}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy")
    ax.legend()
    fig.tight_layout()
    return fig


def _cell(stats: dict, scale: float = 100.0, digits: int = 1) -> str:
    return f"{scale * stats['mean']:.{digits}f} ± {scale * stats['std']:.{digits}f}"


def write_report(config: VitRunConfig, metrics: dict[str, Any]) -> dict[str, Any]:
    """Write the report directory; returns the metrics as written."""
    figures = metrics.pop("_figures", {})
    s = metrics["summary"]
    grid = 28 // config.patch_size
    report = Report(config.out, title="attnkit vision vit: a small ViT and attention rollout")
    report.add_text(
        f"A Vision Transformer (Dosovitskiy et al. 2020, arXiv:2010.11929) with "
        f"{config.num_layers} pre-norm layers of width {config.d_model} and "
        f"{config.num_heads} heads on {grid} x {grid} patches of {config.patch_size} x "
        f"{config.patch_size} pixels plus a class token ({metrics['parameters']:,} "
        f"parameters), trained from scratch on {config.train_images} Fashion-MNIST training "
        f"images for {config.epochs} epochs, {len(config.seeds)} seed(s). The attention is "
        f"attnkit's MultiHeadAttention, recorded with attnkit.interp.capture and rolled out "
        f"(Abnar & Zuidema 2020, arXiv:2005.00928; identity weight {config.residual:g}, heads "
        f"fused by {config.head_fusion}). No numeric goal; mean ± standard deviation over "
        f"seeds.")
    report.add_table(["metric", "value"], [
        [f"test accuracy ({metrics['data']['test']:,} images), %", _cell(s["test_accuracy"])],
        [f"validation accuracy after the last epoch ({metrics['data']['val']:,} images), %",
         _cell(s["val_accuracy"])],
        ["class-token rollout on item patches, %", _cell(s["rollout_on_item"])],
        ["last layer's class-token attention on item patches, %",
         _cell(s["last_layer_on_item"])],
        ["item patches among all patches (a uniform map), %", _cell(s["uniform_on_item"])],
    ], title="Results")
    report.add_table(["seed", "epochs", "updates", "stopped by --minutes", "val accuracy",
                      "test accuracy"],
                     [[seed, r["epochs"], r["steps"], "yes" if r["stopped_by_time"] else "no",
                       f"{100 * r['curve'][-1]['val_accuracy']:.1f}",
                       f"{100 * r['test_accuracy']:.1f}"]
                      for seed, r in zip(config.seeds, metrics["runs"], strict=True)],
                     title="Runs")
    report.add_figure("curves", curve_figure(metrics["runs"], config.seeds),
                      caption="validation accuracy after each epoch")
    if figures:
        report.add_figure("rollout", rollout_figure(figures, config.patch_size),
                          caption=f"test images (title: true → predicted class) and the class "
                                  f"token's attention rollout over the {grid} x {grid} "
                                  f"patches, seed {config.seeds[0]}")
    report.add_text(
        f"Run: {metrics['elapsed_s'] / 60:.1f} min on {metrics['machine']['threads']} "
        f"thread(s), load average {metrics['machine']['load_average_1min']:.1f} at the end. "
        f"AdamW lr {config.lr:g}, weight decay {config.weight_decay:g}, batch "
        f"{config.batch_size}.")
    report.write(metrics)
    return metrics
