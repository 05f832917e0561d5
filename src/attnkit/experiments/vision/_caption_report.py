"""The report of ``attnkit vision caption``: goals, tables over seeds, attention overlays."""

from __future__ import annotations

from typing import Any

import numpy as np

from attnkit.experiments.report import Report
from attnkit.experiments.vision._caption_config import CaptionConfig
from attnkit.interp.figures import pyplot

__all__ = ["write_report", "goals", "sequence_ceiling", "item_accuracy_needed"]

ITEM_COUNTS = (2, 3, 4)  # items per canvas, uniform (data.images.canvases' defaults)

METRICS = ("sequence_accuracy", "word_accuracy", "pointing_accuracy")
GOALS = (("soft sequence accuracy (test)", "soft", "sequence_accuracy", 0.95),
         ("soft pointing accuracy (test)", "soft", "pointing_accuracy", 0.90))


def goals(summary: dict) -> list[dict]:
    """The issue's goals against the test means of soft attention (absent kinds skipped)."""
    out = []
    for name, kind, metric, target in GOALS:
        if kind in summary:
            measured = summary[kind]["test"][metric]["mean"]
            out.append({"name": name, "target": target, "measured": measured,
                        "met": measured >= target})
    return out


def sequence_ceiling(item_accuracy: float, counts: tuple[int, ...] = ITEM_COUNTS) -> float:
    """Sequence accuracy of captions whose words are each right with probability
    ``item_accuracy``, independently, over canvases with a uniform item count in ``counts``:
    the mean of ``item_accuracy ** n``."""
    return sum(item_accuracy ** n for n in counts) / len(counts)


def item_accuracy_needed(target: float, counts: tuple[int, ...] = ITEM_COUNTS) -> float:
    """The per-item accuracy whose :func:`sequence_ceiling` is ``target`` (bisection; the
    ceiling increases with the accuracy)."""
    low, high = 0.0, 1.0
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if sequence_ceiling(middle, counts) < target else (low, middle)
    return high


def _cell(stats: dict) -> str:
    return f"{100 * stats['mean']:.1f} ± {100 * stats['std']:.1f}"


def overlay_figure(rows: list[dict], title: str):
    """One row per canvas, one panel per generated word: the canvas, the word's attention
    (upsampled) on top, and the box of the reference item at that position."""
    plt = pyplot()
    columns = max(max(len(r["words"]) for r in rows), 1)
    fig, axes = plt.subplots(len(rows), columns, figsize=(2.6 * columns, 1.1 * len(rows) + 0.6),
                             squeeze=False)
    for r, row in enumerate(rows):
        for c in range(columns):
            ax = axes[r][c]
            ax.axis("off")
            if c >= len(row["words"]):
                continue
            ax.imshow(row["image"], cmap="gray", vmin=0, vmax=255)
            heat = row["maps"][c]
            ax.imshow(heat / max(float(heat.max()), 1e-12), cmap="jet", alpha=0.45,
                      vmin=0, vmax=1)
            box = row["boxes"][c] if c < len(row["boxes"]) else None
            if box is not None and box[0] >= 0:
                x0, y0, x1, y1 = (int(v) for v in box)
                ax.add_patch(plt.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False,
                                           edgecolor="white", linewidth=1))
            ax.set_title(row["words"][c], fontsize=8)
        axes[r][0].text(0, -14, f"reference: {row['reference']}", fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def write_report(config: CaptionConfig, metrics: dict[str, Any]) -> dict[str, Any]:
    """Write the report directory; returns the metrics as written (with ``goals``)."""
    figures = metrics.pop("_figures", {})
    summary = metrics["summary"]
    metrics["goals"] = goals(summary)
    seeds = len(config.seeds)
    report = Report(config.out, title="attnkit vision caption: Show, Attend and Tell")
    report.add_text(
        "Xu et al. 2015 (arXiv:1502.03044) on canvases of 2 to 4 real Fashion-MNIST items in a "
        "row (36 x 128 pixels); the caption is the items' class names left to right. A small "
        "CNN is pre-trained on single items and frozen (as the paper froze VGG); its 4 x 16 "
        "feature grid (8 x 8-pixel cells) is read by an LSTM decoder with soft (additive) or "
        "hard (sampled, REINFORCE with a moving-average baseline and an entropy bonus) "
        "attention. Numbers are percentages, mean ± standard deviation over "
        f"{seeds} seed(s); each seed trains its own encoder, shared by its two decoders.")
    report.add_list([
        "sequence accuracy: the greedy caption equals the reference, end included",
        "word accuracy: reference words predicted at their position (greedy)",
        "pointing accuracy: with the reference caption fed in, the maximum of each word's "
        "attention map (bilinearly upsampled to the canvas) lies inside the named item's box",
    ])
    report.add_table(["goal", "target", "measured", "met"],
                     [[g["name"], f"{100 * g['target']:.0f}", f"{100 * g['measured']:.1f}",
                       "yes" if g["met"] else "NO"] for g in metrics["goals"]], title="Goals")
    for split, name, count in (("test", "Test", config.test_canvases),
                               ("val", "Validation", config.val_canvases)):
        report.add_table(["attention", *METRICS],
                         [[kind, *(_cell(summary[kind][split][m]) for m in METRICS)]
                          for kind in summary], title=f"{name} canvases ({count})")
    enc = metrics["encoder_item_accuracy"]
    target = dict((name, t) for name, _, _, t in GOALS)["soft sequence accuracy (test)"]
    report.add_text(
        f"Encoder accuracy on single validation items: {100 * enc['mean']:.1f} ± "
        f"{100 * enc['std']:.1f}%. A caption of n items is right only if all n are, so with "
        f"independent errors the sequence accuracy is near the mean of this accuracy to the "
        f"power n over the item counts {'-'.join(map(str, (ITEM_COUNTS[0], ITEM_COUNTS[-1])))}: "
        f"{100 * sequence_ceiling(enc['mean']):.1f}%. A sequence accuracy of "
        f"{100 * target:.0f}% needs every item classified right "
        f"{100 * item_accuracy_needed(target):.1f}% of the time.")
    rows = []
    for kind, runs in metrics["runs"].items():
        for seed, info in zip(config.seeds, runs, strict=True):
            rows.append([kind, seed, info["epochs"], info["steps"],
                         "yes" if info["stopped_by_time"] else "no",
                         f"{100 * info['test']['sequence_accuracy']:.1f}",
                         f"{100 * info['test']['pointing_accuracy']:.1f}"])
    report.add_table(["attention", "seed", "epochs", "updates", "stopped by --minutes",
                      "test sequence", "test pointing"], rows, title="Runs")
    for kind, overlay in figures.items():
        if overlay:
            report.add_figure(f"overlay_{kind}", overlay_figure(
                overlay, f"{kind} attention, seed {config.seeds[0]}, test canvases"),
                caption=f"{kind} attention of each generated word (title) on test canvases; "
                        f"white: the box of the reference item at that position")
    report.add_text(
        f"Run: {metrics['elapsed_s'] / 60:.1f} min on {metrics['machine']['threads']} "
        f"thread(s), load average {metrics['machine']['load_average_1min']:.1f} at the end. "
        f"Settings: {config.train_canvases} training canvases, {config.epochs} decoder epochs, "
        f"encoder {config.encoder_items} items x {config.encoder_epochs} epochs, doubly "
        f"stochastic lambda {config.doubly_stochastic:g}, entropy weight "
        f"{config.entropy_weight:g}.")
    report.write(_plain(metrics))
    return metrics


def _plain(value):
    """numpy scalars/arrays -> JSON-friendly Python values."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value
