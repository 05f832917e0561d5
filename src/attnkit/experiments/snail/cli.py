"""``attnkit snail``: flags onto :class:`SnailRunConfig`, then the run.

Every flag is checked by argparse (exit 2, one line), and the report directory and the
glyph file before any work; ``--quick`` applies
:data:`~attnkit.experiments.snail.config.PRESETS` ``["quick"]``, and flags given explicitly
override it. Nothing heavy is imported at module level.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from attnkit._validate import arg_float, arg_int, check_fits_in_memory, output_dir
from attnkit.errors import UserError
from attnkit.experiments.snail.config import (
    MAX_MINUTES,
    MAX_SHOTS,
    MAX_WAYS,
    MODEL_KINDS,
    PRESETS,
    SnailRunConfig,
    preset,
)

__all__ = ["HELP", "add_parser", "run"]

HELP = "few-shot glyph classification: SNAIL vs its ablations vs a prototypical network"

MAX_SEED = 2**32 - 1
_FLAGS = ("steps", "minutes", "episodes_per_step", "queries", "lr", "channels", "width",
          "valid_episodes", "test_episodes", "seed", "threads", "data_dir")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``snail``."""
    d, quick = SnailRunConfig(), PRESETS["quick"]
    parser = subparsers.add_parser(
        "snail", help=HELP,
        description="Train SNAIL (Mishra et al. 2018), its TC-only and attention-only "
                    "ablations and a prototypical network (Snell et al. 2017) for the same "
                    "number of updates on N-way K-shot episodes of GNU Unifont glyphs "
                    "(Unicode blocks as alphabets, disjoint train/valid/test alphabets, "
                    "rotations as extra classes); select on validation alphabets, report "
                    "test accuracy with 95% intervals (report directory: metrics.json, "
                    "README.md, report.html, PNG figures). Needs unifont.hex: "
                    "<data-dir>/unifont/unifont.hex or /usr/share/unifont/unifont.hex.")
    parser.add_argument("--quick", action="store_true",
                        help=f"a smoke run of seconds: tiny networks, {quick['steps']} updates")
    parser.add_argument("--models", nargs="+", choices=list(MODEL_KINDS), default=None,
                        help=f"models to compare (default: all: {' '.join(MODEL_KINDS)})")
    parser.add_argument("--ways", nargs="+", type=arg_int(2, MAX_WAYS), default=None,
                        help="N of each setting (default 5; e.g. --ways 5 20)")
    parser.add_argument("--shots", nargs="+", type=arg_int(1, MAX_SHOTS), default=None,
                        help="K of each setting (default 1; every ways x shots pair runs)")
    parser.add_argument("--steps", type=arg_int(1), default=None,
                        help=f"updates per model and setting, the equal budget (default "
                             f"{d.steps}; --quick: {quick['steps']})")
    parser.add_argument("--minutes", type=arg_float(0.0, MAX_MINUTES, low_open=True),
                        default=None, help=f"wall-clock cap per model and setting (default "
                                           f"{d.minutes:g})")
    parser.add_argument("--episodes-per-step", type=arg_int(1, 4096), default=None,
                        help=f"training episodes per update (default {d.episodes_per_step})")
    parser.add_argument("--queries", type=arg_int(1, 1000), default=None,
                        help=f"queries per episode (default {d.queries})")
    parser.add_argument("--lr", type=arg_float(0.0, 1.0, low_open=True), default=None,
                        help=f"peak learning rate (default {d.lr:g})")
    parser.add_argument("--channels", type=arg_int(1, 1024), default=None,
                        help=f"embedding CNN filters per block (default {d.channels})")
    parser.add_argument("--width", type=arg_float(0.0, 4.0, low_open=True), default=None,
                        help=f"SNAIL block sizes relative to the paper's (default {d.width:g})")
    parser.add_argument("--valid-episodes", type=arg_int(1), default=None,
                        help=f"validation episodes per evaluation (default {d.valid_episodes})")
    parser.add_argument("--test-episodes", type=arg_int(2), default=None,
                        help=f"test episodes per model and setting (default {d.test_episodes})")
    parser.add_argument("--no-rotations", action="store_true",
                        help="no 90/180/270-degree rotations as extra classes")
    parser.add_argument("--seed", type=arg_int(0, MAX_SEED), default=None,
                        help=f"model initialization and training episodes (default {d.seed})")
    parser.add_argument("--threads", type=arg_int(1, 4096), default=None,
                        help="torch CPU threads (default: torch's, usually one per core)")
    parser.add_argument("--data-dir", default=None,
                        help="data directory holding unifont/unifont.hex (default "
                             "$ATTNKIT_DATA or ~/.cache/attnkit)")
    parser.add_argument("--out", default=None,
                        help="report directory (default runs/snail, runs/snail-quick with "
                             "--quick)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def _unique(values: list, flag: str) -> list:
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise UserError(f"{flag}: each value may appear once, got "
                        f"{', '.join(map(str, repeated))} twice")
    return list(values)


def config_from_args(args: argparse.Namespace) -> SnailRunConfig:
    """The run's config: given flags, else the --quick preset, else the defaults. Raises
    UserError naming the flag for a combination argparse cannot check."""
    values = preset("quick" if args.quick else None)
    values.update({name: getattr(args, name) for name in _FLAGS
                   if getattr(args, name) is not None})
    for name in ("models", "ways", "shots"):
        if getattr(args, name) is not None:
            values[name] = _unique(getattr(args, name), f"--{name}")
    values["rotations"] = not args.no_rotations
    values["out"] = args.out if args.out is not None else \
        "runs/snail-quick" if args.quick else "runs/snail"
    values["progress"] = not args.no_progress
    try:
        return SnailRunConfig(**values)
    except (TypeError, ValueError) as exc:
        name = str(exc).split(":")[0].split(" ")[0].rstrip("[]")
        raise UserError(f"--{name.replace('_', '-')}: {str(exc).split(': ', 1)[-1]}") from None


def _check_memory(config: SnailRunConfig) -> None:
    """Each flag within its bounds, their product may not fit: a lower bound of one update's
    first convolution output, (episodes x (ways x shots + queries), channels, 16, 16)."""
    images = config.episodes_per_step * (max(config.ways) * max(config.shots) + config.queries)
    check_fits_in_memory(4.0 * images * config.channels * 16 * 16, "--episodes-per-step",
                         f"an update of {images:,} glyphs through {config.channels} channels")


def run(args: argparse.Namespace) -> int:
    """Check the flags and the paths, then run the experiment."""
    config = config_from_args(args)
    _check_memory(config)
    output_dir(config.report_dir, "--out")
    data_dir = None if config.data_dir is None else Path(config.data_dir).expanduser()
    if data_dir is not None and not data_dir.is_dir():  # read only: a typo must not fall back
        what = "is not a folder" if data_dir.exists() else "does not exist"
        raise UserError(f"--data-dir: {config.data_dir} {what}; it should hold "
                        f"unifont/unifont.hex (`attnkit data fetch --glyphs --data-dir "
                        f"{config.data_dir}` puts it there)")
    from attnkit.data.glyphs import find_unifont

    find_unifont(config.data_dir)
    from attnkit.experiments.snail.run import run as run_experiment

    try:
        metrics = run_experiment(config)
    except KeyboardInterrupt:
        print("attnkit snail: interrupted", file=sys.stderr)
        return 130
    goal = metrics["goal"]
    if goal is not None:
        for row in goal["rows"]:
            print(f"goal {goal['setting']}: SNAIL {row['snail']:.1%} > {row['other']} "
                  f"{row['measured']:.1%} ({'met' if row['met'] else 'NOT met'})")
    return 0
