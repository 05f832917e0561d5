"""The glimpse part's report: results table, goal, glimpse paths of RAM and the soft
attention maps on cluttered test images, learning curves."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from attnkit.data.images import CLASS_NAMES, Composed
from attnkit.experiments.report import Report
from attnkit.experiments.vision.config import GLIMPSE_MODELS, GlimpseConfig
from attnkit.experiments.vision.report import curves_figure, machine
from attnkit.models.vision import RAM, RAMConfig

__all__ = ["write_report", "paths_figure"]

SHOWN = 8  # test images in the figures


def _pct(stats: dict[str, float]) -> str:
    return (f"{100 * stats['mean']:.2f} ± {100 * stats['std']:.2f} "
            f"({100 * stats['min']:.2f}-{100 * stats['max']:.2f})")


@torch.no_grad()
def paths_figure(models: dict[str, nn.Module], test: Composed, count: int = SHOWN) -> Any:
    """One column per test image: RAM's glimpse path (top row) and the soft attention map
    (bottom row), each with the item's square in green."""
    from matplotlib.patches import Rectangle

    from attnkit.interp.figures import pyplot

    plt = pyplot()
    images = torch.from_numpy(test.images[:count]).float().div_(255.0)[:, None]
    side = test.images.shape[-1]
    rows = [name for name in ("ram", "soft") if name in models]
    fig, axes = plt.subplots(len(rows), count, figsize=(1.9 * count, 2.1 * len(rows)),
                             squeeze=False)
    for row, name in enumerate(rows):
        model = models[name].eval()
        if name == "ram":
            output = model(images)
            predicted = output.logits.argmax(dim=1).tolist()
            points = ((output.locations + 1) / 2 * side).numpy()  # (N, T, 2) pixels
        else:
            pooled, weights = model.attend(images)
            predicted = model.head(pooled).argmax(dim=1).tolist()
            maps = weights.mean(dim=1).numpy()  # (N, h, w)
        for col in range(count):
            ax = axes[row, col]
            ax.imshow(test.images[col], cmap="gray", vmin=0, vmax=255)
            x0, y0, x1, y1 = test.boxes[col]
            ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False,
                                   edgecolor="lime", linewidth=1))
            if name == "ram":
                path = points[col]
                patch = model.config.patch
                ax.plot(path[:, 0] - 0.5, path[:, 1] - 0.5, "-", color="red", linewidth=1)
                for step, (x, y) in enumerate(path):
                    ax.add_patch(Rectangle((x - patch / 2 - 0.5, y - patch / 2 - 0.5), patch,
                                           patch, fill=False, edgecolor="red", linewidth=0.6,
                                           alpha=0.7))
                    ax.text(x - 0.5, y - 0.5, str(step + 1), color="yellow", fontsize=6,
                            ha="center", va="center")
            else:
                ax.imshow(maps[col], cmap="inferno", alpha=0.55, interpolation="bilinear",
                          extent=(-0.5, side - 0.5, side - 0.5, -0.5))
            truth = CLASS_NAMES[int(test.labels[col])]
            guess = CLASS_NAMES[predicted[col]]
            ax.set_title(f"{name}: {guess}" + ("" if guess == truth else f"\n(is {truth})"),
                         fontsize=7, color="black" if guess == truth else "red")
            ax.set_xlim(-0.5, side - 0.5)
            ax.set_ylim(side - 0.5, -0.5)
            ax.axis("off")
    fig.tight_layout()
    return fig


def write_report(config: GlimpseConfig, metrics: dict[str, Any], models: dict[str, nn.Module],
                 test: Composed) -> None:
    """README.md, report.html, metrics.json and the PNG figures."""
    metrics["machine"] = machine(config.threads)
    report = Report(config.report_dir, title="attnkit vision glimpse: RAM and soft spatial "
                                              "attention on cluttered 60x60 Fashion-MNIST")
    data = metrics["data"]
    report.add_list([
        f"data: {data['train_images']} training, {data['val_images']} validation and "
        f"{data['test_images']} test images, each one real Fashion-MNIST item at a random "
        f"place of a {config.image_size}x{config.image_size} canvas plus {config.fragments} "
        f"random 8x8 fragments of other items (fixed data seeds; the test images come from "
        f"the official test set)",
        f"CNN: trunk widths {config.cnn_widths}; soft attention: trunk widths "
        f"{config.widths}; both {config.epochs} epochs, Adam lr {config.lr:g}; RAM: "
        f"{config.glimpses} glimpses of 12x12 at 3 scales, core {config.ram_hidden}, glimpse "
        f"layers {max(1, config.ram_hidden // 2)}, {config.ram_epochs} epochs, Adam lr "
        f"{config.ram_lr:g}; batch {config.batch_size}, cosine decay, {config.seeds} seeds",
        "the parameter rule: an attention model is compared with a CNN that has at least as "
        "many parameters, so the CNN gets its own (wider) trunk; the sizes were set by "
        "parameter count alone, nothing was tuned on the test images",
        f"machine: {metrics['machine']}",
    ])
    rows = []
    for name, stats in metrics["summary"].items():
        att = stats["attention"]
        where = ""
        if "glimpses_on_item" in att:
            where = f"{100 * att['glimpses_on_item']:.1f}% of glimpse centres on the item"
        elif "attention_mass_on_item" in att:
            where = (f"{100 * att['attention_mass_on_item']:.1f}% of the attention on the item "
                     f"({100 * att['item_area_fraction']:.1f}% of the area)")
        rows.append([name, GLIMPSE_MODELS[name], stats["parameters"], _pct(stats["test_error"]),
                     " ".join(str(e) for e in stats["epochs_done"]), where])
    report.add_table(["model", "what", "parameters", "test error % (mean ± std, min-max)",
                      "epochs done", "where attention goes (test)"], rows,
                     title=f"Results over {config.seeds} seeds")
    lines = []
    for check in metrics["goal"]["checks"]:
        lines.append(f"{check['model']}: error {100 * check['error']:.2f}% vs CNN "
                     f"{100 * check['cnn_error']:.2f}% ({_yes(check['error_ok'])}), "
                     f"parameters {check['parameters']:,} vs CNN {check['cnn_parameters']:,} "
                     f"({_yes(check['parameters_ok'])}): "
                     f"{'met' if check['met'] else '**not met**'}")
    if lines:
        report.add_heading("Goal: attention error at most the CNN's, with no more "
                           "parameters than the CNN")
        report.add_text("Met for a model only if both hold: its mean test error <= the "
                        "CNN's and its parameter count <= the CNN's.")
        report.add_list(lines)
        report.add_text("Anchor (Mnih et al. 2014, cluttered MNIST 60x60, much longer "
                        "training): RAM with 8 glimpses 4.04% error, a CNN 7.83%.")
    ram_runs = [r for r in metrics["runs"] if r["model"] == "ram"]
    if ram_runs:
        steps = np.mean([r["attention"]["glimpses_on_item_by_step"] for r in ram_runs], axis=0)
        report.add_text(
            f"RAM's glimpse centres on the item, by step (mean over seeds): "
            f"{', '.join(f'{100 * v:.0f}%' for v in steps)}; "
            f"{ram_runs[0]['updates']} updates per seed. A policy trained by REINFORCE needs "
            f"far more updates than this budget gives (the paper trains for millions of "
            f"images); read RAM's row as RAM at this budget.")
        paper = sum(p.numel() for p in RAM(RAMConfig(num_classes=len(CLASS_NAMES),
                                                     glimpses=config.glimpses)).parameters())
        cnn = metrics["summary"].get("cnn", {}).get("parameters")
        if cnn and config.ram_hidden != 256:
            report.add_text(
                f"RAM's size: core {config.ram_hidden} so that it has no more parameters than "
                f"the CNN. At the paper's size (core 256, glimpse layers 128) RAM has "
                f"{paper:,} parameters, {paper / cnn:.0f}x this CNN's {cnn:,}: it would fail "
                f"the parameter condition whatever its error.")
    if models:
        report.add_figure("glimpse_paths", paths_figure(models, test),
                          caption="first test images, seed-0 models: RAM's glimpses in order "
                                  "(red squares: the finest 12x12 patch; numbers: step) and "
                                  "the soft attention map; green: the item's square")
    report.add_figure("val_curves", curves_figure(metrics["runs"], "validation accuracy"),
                      caption="validation accuracy after each epoch, every seed")
    report.write(_plain_metrics(metrics))


def _yes(ok: bool) -> str:
    return "yes" if ok else "no"


def _plain_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    def fix(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: fix(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [fix(v) for v in value]
        if isinstance(value, np.generic):
            return value.item()
        return value
    return fix(metrics)
