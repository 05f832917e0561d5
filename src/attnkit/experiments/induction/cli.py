"""``attnkit induction``: flags onto :class:`InductionConfig`, then the run.

Every flag is checked by argparse (exit 2, one line) and the output paths before any work;
``--quick`` applies :data:`~attnkit.experiments.induction.config.PRESETS` ``["quick"]``, and
flags given explicitly override it. Nothing heavy is imported at module level.
"""

from __future__ import annotations

import argparse
import sys

from attnkit._validate import arg_float, arg_int, output_dir
from attnkit.errors import UserError
from attnkit.experiments.induction.config import (
    MAX_MINUTES,
    MODEL_KINDS,
    POSITIONAL,
    PRESETS,
    InductionConfig,
    preset,
)

__all__ = ["HELP", "add_parser", "run"]

HELP = "induction heads forming in attention-only transformers trained on Python's own source"

_FLAGS = ("minutes", "steps", "positional", "seed", "threads", "data_dir", "init_std")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``induction``."""
    d, quick = InductionConfig(), PRESETS["quick"]
    parser = subparsers.add_parser(
        "induction", help=HELP,
        description="Train attention-only transformers with one and two layers (and two "
                    "layers with MLPs) on the Python standard library's own source files "
                    "(byte-level BPE, context 512), measuring every few updates the loss, the "
                    "in-context learning score (loss at token 500 minus loss at token 50, "
                    "Olsson et al. 2022) and every head's prefix-matching, previous-token and "
                    "copying scores; report the phase change in which induction heads form "
                    "(report directory: metrics.json, README.md, report.html, PNG figures, "
                    "viewer.html, checkpoints).")
    parser.add_argument("--quick", action="store_true",
                        help=f"a smoke run of seconds: {quick['max_files']} files, a "
                             f"{quick['d_model']}-wide model, {quick['steps']} updates per "
                             f"model (no induction head forms)")
    parser.add_argument("--models", nargs="+", choices=list(MODEL_KINDS), default=None,
                        help=f"models to train (default: all: {' '.join(MODEL_KINDS)})")
    parser.add_argument("--minutes", type=arg_float(0.0, MAX_MINUTES, low_open=True),
                        default=None,
                        help=f"wall-clock cap on training, all models together, in equal "
                             f"shares (default {d.minutes:g}; --quick: {quick['minutes']:g})")
    parser.add_argument("--steps", type=arg_int(1, 10_000_000), default=None,
                        help=f"updates per model (default {d.steps}; --quick: "
                             f"{quick['steps']})")
    parser.add_argument("--positional", choices=list(POSITIONAL), default=None,
                        help=f"position encoding (default {d.positional})")
    parser.add_argument("--init-std", type=arg_float(0.0, 10.0, low_open=True), default=None,
                        help="the GPTs' initial weight std (default: GPT-2's 0.02; "
                             "TransformerLens uses 0.8 / sqrt(d_model))")
    parser.add_argument("--seed", type=arg_int(0, 2**32 - 1), default=None,
                        help=f"model initialization and batch order (default {d.seed})")
    parser.add_argument("--threads", type=arg_int(1, 4096), default=None,
                        help="torch CPU threads (default: torch's, usually one per core)")
    parser.add_argument("--data-dir", default=None,
                        help="tokenizer cache (default $ATTNKIT_DATA or ~/.cache/attnkit)")
    parser.add_argument("--out", default=None,
                        help="report directory (default runs/induction, runs/induction-quick "
                             "with --quick)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def config_from_args(args: argparse.Namespace) -> InductionConfig:
    """The run's config: given flags, else the --quick preset, else the defaults. Raises
    UserError naming the flag for a combination argparse cannot check."""
    values = preset("quick" if args.quick else None)
    values.update({name: getattr(args, name) for name in _FLAGS
                   if getattr(args, name) is not None})
    if args.models is not None:
        repeated = sorted({m for m in args.models if args.models.count(m) > 1})
        if repeated:
            raise UserError(f"--models: each model may appear once, got "
                            f"{', '.join(repeated)} twice")
        values["models"] = list(args.models)
    values["out"] = args.out if args.out is not None else \
        "runs/induction-quick" if args.quick else "runs/induction"
    values["progress"] = not args.no_progress
    try:
        return InductionConfig(**values)
    except (ValueError, TypeError) as exc:
        name = str(exc).split(":")[0].split(" ")[0].rstrip("[]")
        raise UserError(f"--{name.replace('_', '-')}: {str(exc).split(': ', 1)[-1]}") from None


def run(args: argparse.Namespace) -> int:
    """Check the flags and the paths, then run the experiment."""
    config = config_from_args(args)
    output_dir(config.report_dir, "--out")
    if config.data_dir is not None:
        output_dir(config.data_dir, "--data-dir")
    from attnkit.experiments.induction.run import run as run_experiment

    try:
        metrics = run_experiment(config)
    except KeyboardInterrupt:
        print("attnkit induction: interrupted", file=sys.stderr)
        return 130
    for check in metrics["goals"]:
        print(f"goal {check['goal']}: {check['measured']:+.3f} "
              f"({'met' if check['met'] else 'NOT met'})")
    return 0
