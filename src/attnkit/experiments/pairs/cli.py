"""``attnkit pairs``: flags onto :class:`PairsConfig`, then the run.

Every flag is checked by argparse (exit 2, one line) and the output paths before any work;
``--quick`` applies :data:`~attnkit.experiments.pairs.config.PRESETS` ``["quick"]``, and flags
given explicitly override it. Nothing heavy is imported at module level.
"""

from __future__ import annotations

import argparse
import sys

from attnkit._validate import arg_float, arg_int, output_dir
from attnkit.errors import UserError
from attnkit.experiments.pairs.config import (
    CLOCKS,
    MAX_MINUTES,
    MODEL_KINDS,
    PRESETS,
    PairsConfig,
    preset,
)

__all__ = ["HELP", "add_parser", "run"]

HELP = "EN/FR translation-pair identification: decomposable attention vs a BiGRU baseline"

_FLAGS = ("epochs", "minutes", "clock", "max_minutes", "train_pairs", "vocab_size", "max_len",
          "batch_size", "lr", "dropout", "aggregate", "seed", "threads", "data_dir")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``pairs``."""
    d, quick = PairsConfig(), PRESETS["quick"]
    parser = subparsers.add_parser(
        "pairs", help=HELP,
        description="Tell real English/French gettext pairs from hard negatives (the French "
                    "side of another pair of the same split with the highest word overlap). "
                    "Trains decomposable attention (Parikh et al. 2016), with and without "
                    "intra-sentence attention, and a BiGRU sentence-encoder baseline; reports "
                    "test accuracy with 95%% intervals, parameter counts, a trivial-feature "
                    "baseline and alignment heatmaps (report directory: metrics.json, "
                    "README.md, report.html, PNG figures).")
    parser.add_argument("--quick", action="store_true",
                        help=f"a smoke run of seconds: {quick['train_pairs']} train pairs, "
                             f"{quick['epochs']} epoch or {quick['minutes']:g} min per model, "
                             f"tiny models")
    parser.add_argument("--models", nargs="+", choices=list(MODEL_KINDS), default=None,
                        help=f"models to train (default: {' '.join(d.models)}; --quick: all)")
    parser.add_argument("--epochs", type=arg_int(1, 10_000), default=None,
                        help=f"at most this many epochs per model (default {d.epochs}: the "
                             f"time budget ends a default run); with large --minutes and "
                             f"--max-minutes, a fixed-work run of N epochs per model")
    parser.add_argument("--minutes", type=arg_float(0.0, MAX_MINUTES, low_open=True),
                        default=None,
                        help=f"training budget of EACH model in minutes of --clock, the "
                             f"same for all (equal compute; default {d.minutes:g}); the "
                             f"epochs each model reaches depend on the machine's speed and "
                             f"are reported")
    parser.add_argument("--clock", choices=list(CLOCKS), default=None,
                        help=f"what the budget counts: cpu, the process's CPU time over all "
                             f"its threads (barely moved by other work on the cores), or "
                             f"wall (default {d.clock})")
    parser.add_argument("--max-minutes", type=arg_float(0.0, MAX_MINUTES, low_open=True),
                        default=None,
                        help=f"wall-clock cap per model whatever the clock (default "
                             f"{d.max_minutes:g}); a model it stops got less compute")
    parser.add_argument("--train-pairs", type=arg_int(2), default=None,
                        help=f"train on the first N pairs of the train split (default "
                             f"{d.train_pairs}; 0 is refused, use a large N for all)")
    parser.add_argument("--vocab-size", type=arg_int(260, 1 << 20), default=None,
                        help=f"size of the corpus BPE tokenizer (default {d.vocab_size})")
    parser.add_argument("--max-len", type=arg_int(1, 4096), default=None,
                        help=f"tokens kept per sentence (default {d.max_len})")
    parser.add_argument("--batch-size", type=arg_int(1, 1 << 16), default=None,
                        help=f"examples per update (default {d.batch_size})")
    parser.add_argument("--lr", type=arg_float(0.0, 1.0, low_open=True), default=None,
                        help=f"Adam learning rate (default {d.lr:g})")
    parser.add_argument("--dropout", type=arg_float(0.0, 1.0, high_open=True), default=None,
                        help=f"dropout of every model (default {d.dropout:g})")
    parser.add_argument("--exact-match", choices=["on", "off"], default=None,
                        help=f"give every model the per-token exact-match feature (the token "
                             f"id occurs in the other sentence; default "
                             f"{'on' if d.exact_match else 'off'})")
    parser.add_argument("--aggregate", choices=["sum", "sum+max"], default=None,
                        help=f"pooling of the decomposable models' compared vectors: sum (the "
                             f"paper) or sum+max (default {d.aggregate})")
    parser.add_argument("--seed", type=arg_int(0, 2**32 - 1), default=None,
                        help=f"model initialization and batch order (default {d.seed})")
    parser.add_argument("--threads", type=arg_int(1, 4096), default=None,
                        help="torch CPU threads (default: torch's)")
    parser.add_argument("--data-dir", default=None,
                        help="corpus cache (default $ATTNKIT_DATA or ~/.cache/attnkit)")
    parser.add_argument("--out", default=None,
                        help="report directory (default runs/pairs, runs/pairs-quick with "
                             "--quick)")
    parser.add_argument("--no-progress", action="store_true", help="no progress lines")
    return parser


def config_from_args(args: argparse.Namespace) -> PairsConfig:
    """The run's config: given flags, else the --quick preset, else the defaults. Raises
    UserError naming the flag for a combination argparse cannot check."""
    values = preset("quick" if args.quick else None)
    values.update({name: getattr(args, name) for name in _FLAGS
                   if getattr(args, name) is not None})
    if args.exact_match is not None:
        values["exact_match"] = args.exact_match == "on"
    if args.models is not None:
        repeated = sorted({m for m in args.models if args.models.count(m) > 1})
        if repeated:
            raise UserError(f"--models: each model may appear once, got "
                            f"{', '.join(repeated)} twice")
        values["models"] = list(args.models)
    values["out"] = args.out if args.out is not None else \
        "runs/pairs-quick" if args.quick else "runs/pairs"
    values["progress"] = not args.no_progress
    try:
        return PairsConfig(**values)
    except ValueError as exc:
        name = str(exc).split(":")[0].split(" ")[0].rstrip("[]")
        raise UserError(f"--{name.replace('_', '-')}: {str(exc).split(': ', 1)[-1]}") from None


def run(args: argparse.Namespace) -> int:
    """Check the flags and the paths, then run the experiment."""
    config = config_from_args(args)
    output_dir(config.report_dir, "--out")
    if config.data_dir is not None:
        output_dir(config.data_dir, "--data-dir")
    from attnkit.experiments.pairs.run import run as run_experiment

    try:
        metrics = run_experiment(config)
    except KeyboardInterrupt:
        print("attnkit pairs: interrupted", file=sys.stderr)
        return 130
    goal = metrics["goal"]
    if goal is not None:
        print(f"goal {goal['model']} test accuracy {goal['accuracy']:.1%} >= {goal['baseline']} "
              f"{goal['baseline_accuracy']:.1%}: {'met' if goal['accuracy_met'] else 'NOT met'}; "
              f"parameters {goal['parameter_ratio']:.2f} of the baseline's <= 0.5: "
              f"{'met' if goal['parameters_met'] else 'NOT met'}")
    return 0
