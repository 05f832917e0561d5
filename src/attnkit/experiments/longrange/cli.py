"""``attnkit longrange``: flags onto :class:`LongRangeConfig`, then the run.

Every flag is checked by argparse (exit 2, one line) and the output paths before any work;
``--quick`` applies :data:`~attnkit.experiments.longrange.config.PRESETS` ``["quick"]``,
and flags given explicitly override it. Nothing heavy is imported at module level.
"""

from __future__ import annotations

import argparse
import sys

from attnkit._validate import arg_float, arg_int, output_dir
from attnkit.errors import UserError
from attnkit.experiments.longrange.config import (
    MAX_LENGTH,
    MAX_MINUTES,
    MODEL_KINDS,
    PRESETS,
    TASKS,
    LongRangeConfig,
    preset,
)

__all__ = ["HELP", "add_parser", "run"]

HELP = "copy and reverse of real English text: fixed vector vs attention vs Transformer"

MAX_SEED = 2**32 - 1
MAX_TOKENS = 1 << 20  # more source tokens per batch than any memory holds logits for
_FLAGS = ("minutes", "max_steps", "min_len", "max_len", "max_tokens", "seed", "threads",
          "data_dir")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``longrange``."""
    d, quick = LongRangeConfig(), PRESETS["quick"]
    parser = subparsers.add_parser(
        "longrange", help=HELP,
        description="Train rnn-none, rnn-attention (Bahdanau), rnn-luong and a Transformer at "
                    "matched parameter counts and an equal wall-clock budget to copy (or "
                    "reverse) windows of real English text from the gettext corpus, 5 to 100 "
                    "characters long; report accuracy by source length and by copy distance, "
                    "the gradient norm by distance at initialization and after training, and "
                    "the step time by sequence length (report directory: metrics.json, "
                    "README.md, report.html, PNG figures).")
    parser.add_argument("--quick", action="store_true",
                        help=f"a smoke run of about 1.5 minutes on 2 CPU cores: sources up to "
                             f"{quick['max_len']} tokens, {quick['minutes'] * 60:g} s per model")
    parser.add_argument("--models", nargs="+", choices=list(MODEL_KINDS), default=None,
                        help=f"models to compare (default: all: {' '.join(MODEL_KINDS)})")
    parser.add_argument("--task", choices=[*TASKS, "both"], default="copy",
                        help="copy, reverse or both (default %(default)s; both doubles the "
                             "run time)")
    parser.add_argument("--minutes", type=arg_float(0.0, MAX_MINUTES, low_open=True),
                        default=None, help=f"training budget per model and task (default "
                                           f"{d.minutes:g}; --quick: {quick['minutes']:g})")
    parser.add_argument("--max-steps", type=arg_int(1), default=None,
                        help="stop a model after this many updates if its budget lasts longer")
    parser.add_argument("--min-len", type=arg_int(1, MAX_LENGTH), default=None,
                        help=f"shortest source in tokens (default {d.min_len})")
    parser.add_argument("--max-len", type=arg_int(2, MAX_LENGTH), default=None,
                        help=f"longest source in tokens (default {d.max_len}; --quick: "
                             f"{quick['max_len']})")
    parser.add_argument("--max-tokens", type=arg_int(1, MAX_TOKENS), default=None,
                        help=f"source tokens per training batch, at least --max-len "
                             f"(default {d.max_tokens})")
    parser.add_argument("--seed", type=arg_int(0, MAX_SEED), default=None,
                        help=f"model initialization and batch order (default {d.seed})")
    parser.add_argument("--threads", type=arg_int(1, 4096), default=None,
                        help="torch CPU threads (default: torch's, usually one per core); on a "
                             "machine shared with other work 1 can be much faster")
    parser.add_argument("--data-dir", default=None,
                        help="corpus cache (default $ATTNKIT_DATA or ~/.cache/attnkit)")
    parser.add_argument("--out", default=None,
                        help="report directory (default runs/longrange, runs/longrange-quick "
                             "with --quick)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def config_from_args(args: argparse.Namespace) -> LongRangeConfig:
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
    values["tasks"] = list(TASKS) if args.task == "both" else [args.task]
    values["out"] = args.out if args.out is not None else \
        "runs/longrange-quick" if args.quick else "runs/longrange"
    values["progress"] = not args.no_progress
    low = values.get("min_len", LongRangeConfig.min_len)
    high = values.get("max_len", LongRangeConfig.max_len)
    if low > high:
        raise UserError(f"--min-len {low} exceeds --max-len {high}")
    tokens = values.get("max_tokens", LongRangeConfig.max_tokens)
    if tokens < high:
        raise UserError(f"--max-tokens {tokens} is below --max-len {high}: a batch must hold "
                        f"at least one source of the longest length")
    try:
        return LongRangeConfig(**values)
    except ValueError as exc:
        name = str(exc).split(":")[0].split(" ")[0].rstrip("[]")
        raise UserError(f"--{name.replace('_', '-')}: {str(exc).split(': ', 1)[-1]}") from None


def run(args: argparse.Namespace) -> int:
    """Check the flags and the paths, then run the experiment."""
    config = config_from_args(args)
    output_dir(config.report_dir, "--out")
    if config.data_dir is not None:
        output_dir(config.data_dir, "--data-dir")
    from attnkit.experiments.longrange.run import run as run_experiment

    try:
        metrics = run_experiment(config)
    except KeyboardInterrupt:
        print("attnkit longrange: interrupted", file=sys.stderr)
        return 130
    for check in metrics["goal"]:
        print(f"goal {check['model']:<14} copy accuracy at >= {check['min_length']} tokens "
              f"{check['goal']}: {check['measured']:.1%} ({'met' if check['met'] else 'NOT met'})")
    return 0
