"""``attnkit vision vit``: a small Vision Transformer on Fashion-MNIST and its attention rollout.

Dosovitskiy et al. 2020, arXiv:2010.11929 (model: :mod:`attnkit.models.vision.vit`); rollout
from Abnar & Zuidema 2020, arXiv:2005.00928 (:mod:`attnkit.interp.rollout`). Reports test
accuracy over seeds, learning curves and rollout maps; no numeric goal.

Part-plugin contract of ``attnkit vision``: :data:`HELP`, :func:`add_arguments`, :func:`run`.
"""

from __future__ import annotations

import argparse
import sys

from attnkit._validate import arg_float, arg_int, output_dir
from attnkit.errors import UserError

__all__ = ["HELP", "add_arguments", "run"]

HELP = "a small Vision Transformer on Fashion-MNIST with attention rollout maps"

_FLAGS = ("train_images", "epochs", "batch_size", "lr", "patch_size", "num_layers", "minutes",
          "threads", "data_dir")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``attnkit vision vit``."""
    from attnkit.experiments.vision._vit_config import MAX_MINUTES, PRESETS, VitRunConfig

    d, quick = VitRunConfig(), PRESETS["quick"]
    parser.description = (
        "Train a small ViT from scratch on Fashion-MNIST for each seed, report validation and "
        "test accuracy, and draw the class token's attention rollout over the patches "
        "(report directory: metrics.json, README.md, report.html, PNG figures).")
    parser.add_argument("--quick", action="store_true",
                        help=f"a smoke run of seconds: one seed, {quick['train_images']} images, "
                             f"{quick['epochs']} epoch")
    parser.add_argument("--seeds", type=arg_int(0, 2**32 - 1), nargs="+", default=None,
                        help=f"model seeds (default {' '.join(map(str, d.seeds))})")
    parser.add_argument("--train-images", type=arg_int(1, 55_000), default=None,
                        help=f"training images (default {d.train_images})")
    parser.add_argument("--epochs", type=arg_int(1, 10_000), default=None,
                        help=f"epochs (default {d.epochs})")
    parser.add_argument("--batch-size", type=arg_int(1, 65_536), default=None,
                        help=f"images per update (default {d.batch_size})")
    parser.add_argument("--lr", type=arg_float(0.0, 10.0, low_open=True), default=None,
                        help=f"AdamW peak learning rate (default {d.lr:g})")
    parser.add_argument("--patch-size", type=int, choices=[2, 4, 7, 14], default=None,
                        help=f"patch side in pixels (default {d.patch_size})")
    parser.add_argument("--num-layers", type=arg_int(1, 64), default=None,
                        help=f"encoder layers (default {d.num_layers})")
    parser.add_argument("--head-fusion", choices=["mean", "max", "min"], default=None,
                        help=f"rollout's fusion of heads (default {d.head_fusion})")
    parser.add_argument("--minutes", type=arg_float(0.0, MAX_MINUTES, low_open=True),
                        default=None, help=f"wall-clock cap of all training (default "
                                           f"{d.minutes:g}; --quick {quick['minutes']:g})")
    parser.add_argument("--threads", type=arg_int(1, 4096), default=None,
                        help="torch CPU threads (default: torch's)")
    parser.add_argument("--data-dir", default=None,
                        help="data directory holding fashion-mnist/ (default $ATTNKIT_DATA or "
                             "~/.cache/attnkit)")
    parser.add_argument("--out", default=None,
                        help=f"report directory (default {d.out}, {quick['out']} with --quick)")
    parser.add_argument("--no-progress", action="store_true", help="no progress lines")


def config_from_args(args: argparse.Namespace):
    """The run's :class:`VitRunConfig`: the flags given, else --quick, else the defaults."""
    from attnkit.experiments.vision._vit_config import VitRunConfig, preset

    values = preset("quick" if args.quick else None)
    values.update({name: getattr(args, name) for name in _FLAGS
                   if getattr(args, name, None) is not None})
    if args.seeds is not None:
        if len(set(args.seeds)) != len(args.seeds):
            raise UserError(f"--seeds: each seed may appear once, got {args.seeds}")
        values["seeds"] = tuple(args.seeds)
    if args.head_fusion is not None:
        values["head_fusion"] = args.head_fusion
    if args.out is not None:
        values["out"] = args.out
    values["progress"] = not args.no_progress
    return VitRunConfig(**values)


def run(args: argparse.Namespace) -> int:
    """Check flags, paths and data, then run and write the report."""
    config = config_from_args(args)
    output_dir(config.out, "--out")
    from attnkit.data.images import find_fashion_mnist

    find_fashion_mnist(config.data_dir)  # DataError (exit 2) before any work
    from attnkit.experiments.vision._vit_report import write_report
    from attnkit.experiments.vision._vit_run import run_vit

    try:
        metrics = run_vit(config)
    except KeyboardInterrupt:
        print("attnkit vision vit: interrupted", file=sys.stderr)
        return 130
    metrics = write_report(config, metrics)
    test = metrics["summary"]["test_accuracy"]
    print(f"test accuracy {test['mean']:.1%} ± {test['std']:.1%} over {len(config.seeds)} "
          f"seed(s); report: {config.out}")
    return 0
