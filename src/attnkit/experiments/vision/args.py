"""Flags shared by the parts of ``attnkit vision`` and the mapping of flags onto a config.

Every flag is parsed by an argparse type from :mod:`attnkit._validate` (a bad value exits 2
with one line) and the output folder is checked before any work starts.
"""

from __future__ import annotations

import argparse
from typing import Any

from attnkit._validate import arg_float, arg_int, output_dir
from attnkit.errors import UserError
from attnkit.experiments.vision.config import MAX_MINUTES, MAX_SEED, PRESETS

__all__ = ["add_common_arguments", "config_from_args"]


def add_common_arguments(parser: argparse.ArgumentParser, part: str, defaults: Any,
                         models: dict[str, str]) -> None:
    """The flags every part has (``defaults`` is the part's default config)."""
    quick = PRESETS[part]
    parser.add_argument("--quick", action="store_true",
                        help=f"a smoke run of seconds: {quick['train_size']} training images, "
                             f"{quick['seeds']} seeds, small models")
    parser.add_argument("--models", nargs="+", choices=list(models), default=None,
                        help=f"models to compare (default: all: {' '.join(models)})")
    parser.add_argument("--seeds", type=arg_int(1, 100), default=None,
                        help=f"runs per model, for the mean and spread (default "
                             f"{defaults.seeds})")
    parser.add_argument("--seed", type=arg_int(0, MAX_SEED), default=None,
                        help=f"first seed (default {defaults.seed})")
    parser.add_argument("--epochs", type=arg_int(1, 10_000), default=None,
                        help=f"training epochs (default {defaults.epochs})")
    parser.add_argument("--train-size", type=arg_int(1), default=None,
                        help=f"training images (default {defaults.train_size})")
    parser.add_argument("--test-size", type=arg_int(1, 10_000), default=None,
                        help=f"test images scored once at the end, the first of the 10,000 "
                             f"(default {defaults.test_size or 10_000})")
    parser.add_argument("--batch-size", type=arg_int(1, 65_536), default=None,
                        help=f"images per update (default {defaults.batch_size})")
    parser.add_argument("--lr", type=arg_float(0.0, 1.0, low_open=True), default=None,
                        help=f"Adam peak learning rate (default {defaults.lr:g})")
    parser.add_argument("--minutes", type=arg_float(0.0, MAX_MINUTES, low_open=True),
                        default=None, help=f"time cap on the whole part, shared equally by "
                                           f"its runs (default {defaults.minutes:g})")
    parser.add_argument("--threads", type=arg_int(1, 4096), default=None,
                        help="torch CPU threads (default: torch's)")
    parser.add_argument("--data-dir", default=None,
                        help="data directory holding fashion-mnist/ (default $ATTNKIT_DATA or "
                             "~/.cache/attnkit; /usr/share/datasets/fashion-mnist is also "
                             "looked at)")
    parser.add_argument("--out", default=None,
                        help=f"report directory (default {defaults.out}, "
                             f"{quick['out']} with --quick)")
    parser.add_argument("--no-progress", action="store_true", help="no progress lines")


def config_from_args(args: argparse.Namespace, part: str, config_class: type,
                     extra: tuple[str, ...] = ()) -> Any:
    """The part's config: given flags over the ``--quick`` preset over the defaults; the
    output folder is checked. A value the config refuses is a UserError naming the flag."""
    values: dict[str, Any] = dict(PRESETS[part]) if args.quick else {}
    for name in ("models", "seeds", "seed", "epochs", "train_size", "test_size", "batch_size",
                 "lr", "minutes", "threads", "data_dir", "out", *extra):
        value = getattr(args, name, None)
        if value is not None:
            values[name] = list(value) if isinstance(value, list) else value
    values["progress"] = not args.no_progress
    if "models" in values and len(set(values["models"])) != len(values["models"]):
        raise UserError(f"--models: each model may appear once, got {' '.join(values['models'])}")
    try:
        config = config_class(**values)
    except (ValueError, TypeError) as exc:
        name = str(exc).split(":")[0].split(" ")[0].rstrip("[]")
        raise UserError(f"--{name.replace('_', '-')}: {str(exc).split(': ', 1)[-1]}") from None
    output_dir(config.report_dir, "--out")
    return config
