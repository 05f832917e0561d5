"""``attnkit vision glimpse``: hard (RAM) and soft spatial attention against a CNN on
cluttered 60x60 Fashion-MNIST.

The command-line part (light: no torch at import); the run is
:mod:`attnkit.experiments.vision.glimpse_run`.
"""

from __future__ import annotations

import argparse
import sys

from attnkit._validate import arg_float, arg_int
from attnkit.experiments.vision.args import add_common_arguments, config_from_args
from attnkit.experiments.vision.config import GLIMPSE_MODELS, GlimpseConfig

__all__ = ["HELP", "add_arguments", "run"]

HELP = "RAM and soft spatial attention vs a CNN on cluttered 60x60 Fashion-MNIST, 3 seeds"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the glimpse part's flags."""
    d = GlimpseConfig()
    parser.description = (
        "Classify cluttered 60x60 images (a Fashion-MNIST item at a random place plus 8x8 "
        "fragments of other items) with a CNN, the same CNN trunk with soft spatial attention "
        "pooling, and RAM (Mnih et al. 2014: 8 glimpses, location policy trained by REINFORCE "
        "with a baseline). The comparison is fair to the CNN: it has its own trunk widths "
        "(--cnn-widths) and an attention model meets the goal only if its test error AND its "
        "parameter count are at most the CNN's. Report: "
        "test error mean and spread over seeds, glimpse paths and attention maps on test "
        "images, how often the attention lands on the item.")
    add_common_arguments(parser, "glimpse", d, GLIMPSE_MODELS)
    parser.add_argument("--ram-epochs", type=arg_int(1, 10_000), default=None,
                        help=f"RAM's training epochs (default {d.ram_epochs}; RAM is several "
                             f"times cheaper per image than the CNNs)")
    parser.add_argument("--ram-lr", type=arg_float(0.0, 1.0, low_open=True), default=None,
                        help=f"RAM's Adam learning rate (default {d.ram_lr:g})")
    parser.add_argument("--widths", type=arg_int(1, 4096), nargs="+", default=None,
                        help=f"soft attention's trunk channels per block (default "
                             f"{' '.join(map(str, d.widths))})")
    parser.add_argument("--cnn-widths", type=arg_int(1, 4096), nargs="+", default=None,
                        help=f"the CNN baseline's trunk channels per block (default "
                             f"{' '.join(map(str, d.cnn_widths))}: at least as many parameters "
                             f"as each attention model)")
    parser.add_argument("--ram-hidden", type=arg_int(2, 65_536), default=None,
                        help=f"RAM's core width; its glimpse layers are half as wide (default "
                             f"{d.ram_hidden}, so RAM has no more parameters than the CNN; "
                             f"the paper's 256 gives 256,781)")
    parser.add_argument("--glimpses", type=arg_int(1, 100), default=None,
                        help=f"RAM's glimpses per image (default {d.glimpses})")


def run(args: argparse.Namespace) -> int:
    """Check the flags, then run."""
    config = config_from_args(args, "glimpse", GlimpseConfig,
                              ("ram_epochs", "ram_lr", "glimpses", "widths", "cnn_widths",
                               "ram_hidden"))
    from attnkit.experiments.vision.glimpse_run import run_glimpse

    try:
        metrics = run_glimpse(config)
    except KeyboardInterrupt:
        print("attnkit vision glimpse: interrupted", file=sys.stderr)
        return 130
    for check in metrics["goal"]["checks"]:
        print(f"goal {check['model']}: test error {check['error']:.2%} <= CNN "
              f"{check['cnn_error']:.2%} ({'yes' if check['error_ok'] else 'no'}) and "
              f"parameters {check['parameters']} <= CNN {check['cnn_parameters']} "
              f"({'yes' if check['parameters_ok'] else 'no'}): "
              f"{'met' if check['met'] else 'NOT met'}")
    print(f"report in {config.report_dir}")
    return 0
