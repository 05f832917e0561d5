"""Has validation BLEU flattened? A least-squares line through each run's greedy validation
BLEU (the evaluations in ``<model>/metrics.json``, at their times on the budget clock) over
windows of budget minutes, with the slope's 95% interval (Student t, n - 2 degrees of freedom).

    python benchmarks/results/translate/rnn_600/flatness.py [MODEL ...]
    python benchmarks/results/translate/rnn_600/flatness.py --dir ../rnn_780 \
        --window 600-660 --window 660-780 --window 680-780 rnn-none

writes ``flatness.json`` and ``FLATNESS.md`` next to itself, or into ``--dir`` (relative to
this folder), which holds ``<model>/metrics.json``. Minutes are the runs' budget
clock, which here also counted stretches in which a run was paused (RUN.md); a pause
stretches the x axis of its window and so, if anything, flattens the slope.
"""

from __future__ import annotations

import argparse
import json
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


def main(models: list[str], folder: str | None = None,
         windows: tuple[tuple[int, int], ...] = WINDOWS) -> None:
    here = Path(__file__).resolve().parent
    if folder is not None:
        here = (here / folder).resolve()
    found = {}
    lines = ["# Validation BLEU's slope by window of budget minutes", "",
             "Least-squares slope of greedy validation BLEU (614 sentences, at each of the "
             "run's evaluations, against budget minutes) in BLEU per 100 budget minutes, 95% "
             "interval; flat = the interval "
             "holds 0.", "",
             "| model | window (min) | evaluations | slope | 95% interval | BLEU mean (range) |",
             "|---|---|---|---|---|---|"]
    for model in models or MODELS:
        curve = json.loads((here / model / "metrics.json").read_text())["training"]["curve"]
        found[model] = [slope(curve, low, high) for low, high in windows]
        for entry in found[model]:
            low, high = entry["ci95"]
            lines.append(f"| {model} | {entry['window'][0]}-{entry['window'][1]} | "
                         f"{entry['evaluations']} | {entry['slope_per_100_min']:+.2f} | "
                         f"[{low:+.2f}, {high:+.2f}] | {entry['mean']:.2f} "
                         f"({entry['min']:.2f}-{entry['max']:.2f}) |")
    atomic_write_json(here / "flatness.json", found)
    atomic_write_text(here / "FLATNESS.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


def _window(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    try:
        window = int(low), int(high)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW-HIGH minutes, got {text!r}") from None
    if window[0] >= window[1]:
        raise argparse.ArgumentTypeError(f"expected LOW < HIGH, got {text!r}")
    return window


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", help=f"any of {', '.join(MODELS)} (default: both)")
    parser.add_argument("--dir", default=None, help="folder of <model>/metrics.json")
    parser.add_argument("--window", type=_window, action="append", default=None,
                        help="LOW-HIGH budget minutes (repeatable)")
    args = parser.parse_args()
    for name in args.models:
        if name not in MODELS:
            parser.error(f"model: expected one of {', '.join(MODELS)}, got {name!r}")
    main(args.models, args.dir, tuple(args.window) if args.window else WINDOWS)
