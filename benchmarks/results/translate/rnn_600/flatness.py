"""Has validation BLEU flattened? A least-squares line through each run's greedy validation
BLEU (the evaluations every 8 budget minutes in ``<model>/metrics.json``) over windows of
budget minutes, with the slope's 95% interval (Student t, n - 2 degrees of freedom).

    python benchmarks/results/translate/rnn_600/flatness.py [MODEL ...]

writes ``flatness.json`` and ``FLATNESS.md`` next to itself. Minutes are the runs' budget
clock, which here also counted stretches in which a run was paused (RUN.md); a pause
stretches the x axis of its window and so, if anything, flattens the slope.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from scipy import stats

from attnkit._io import atomic_write_json, atomic_write_text

WINDOWS = ((295, 430), (430, 600), (500, 600))
MODELS = ("rnn-none", "rnn-attention")


def slope(points: list[dict], low: float, high: float) -> dict:
    """Slope of validation BLEU per 100 budget minutes over [low, high], with its 95% CI."""
    chosen = [p for p in points if low <= p["minutes"] <= high]
    x = np.array([p["minutes"] for p in chosen])
    y = np.array([p["valid_bleu"] for p in chosen])
    fit = stats.linregress(x, y)
    half = stats.t.ppf(0.975, len(x) - 2) * fit.stderr
    return {"window": [low, high], "evaluations": len(x), "slope_per_100_min": 100 * fit.slope,
            "ci95": [100 * (fit.slope - half), 100 * (fit.slope + half)],
            "mean": float(y.mean()), "min": float(y.min()), "max": float(y.max())}


def main(models: list[str]) -> None:
    here = Path(__file__).resolve().parent
    found = {}
    lines = ["# Validation BLEU's slope by window of budget minutes", "",
             "Least-squares slope of greedy validation BLEU (614 sentences, every 8 budget "
             "minutes) in BLEU per 100 budget minutes, 95% interval; flat = the interval "
             "holds 0.", "",
             "| model | window (min) | evaluations | slope | 95% interval | BLEU mean (range) |",
             "|---|---|---|---|---|---|"]
    for model in models or MODELS:
        curve = json.loads((here / model / "metrics.json").read_text())["training"]["curve"]
        found[model] = [slope(curve, low, high) for low, high in WINDOWS]
        for entry in found[model]:
            low, high = entry["ci95"]
            lines.append(f"| {model} | {entry['window'][0]}-{entry['window'][1]} | "
                         f"{entry['evaluations']} | {entry['slope_per_100_min']:+.2f} | "
                         f"[{low:+.2f}, {high:+.2f}] | {entry['mean']:.2f} "
                         f"({entry['min']:.2f}-{entry['max']:.2f}) |")
    atomic_write_json(here / "flatness.json", found)
    atomic_write_text(here / "FLATNESS.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
