"""Report helpers shared by the vision parts: mean +- spread cells, learning-curve figures,
and the machine line."""

from __future__ import annotations

import os
import platform
from typing import Any

import torch

__all__ = ["pct_spread", "curves_figure", "machine"]


def pct_spread(stats: dict[str, float]) -> str:
    """``87.12 ± 0.31 (86.80-87.40)`` from a :func:`~.common.mean_spread` of fractions."""
    return (f"{100 * stats['mean']:.2f} ± {100 * stats['std']:.2f} "
            f"({100 * stats['min']:.2f}-{100 * stats['max']:.2f})")


def curves_figure(runs: list[dict[str, Any]], title: str) -> Any:
    """Validation accuracy per epoch, one line per run, a colour per model."""
    from attnkit.interp.figures import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    colours: dict[str, Any] = {}
    for run in runs:
        colour = colours.setdefault(run["model"], f"C{len(colours)}")
        epochs = range(1, len(run["val_curve"]) + 1)
        ax.plot(list(epochs), [100 * v for v in run["val_curve"]], marker="o", color=colour,
                alpha=0.8, label=run["model"] if run["seed_index"] == 0 else None)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def machine(threads: int | None) -> str:
    """What ran it (no timings are reported: the machine was shared)."""
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
            f"torch {torch.__version__}, {threads or torch.get_num_threads()} thread(s)")
