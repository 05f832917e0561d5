"""``attnkit vision channel``: does channel (SE) or channel+spatial (CBAM) attention help a
small CNN on real Fashion-MNIST images, at equal epochs?

The command-line part (light: no torch at import); the run is
:mod:`attnkit.experiments.vision.channel_run`.
"""

from __future__ import annotations

import argparse
import sys

from attnkit._validate import arg_int
from attnkit.experiments.vision.args import add_common_arguments, config_from_args
from attnkit.experiments.vision.config import CHANNEL_MODELS, ChannelConfig

__all__ = ["HELP", "add_arguments", "run"]

HELP = "CNN vs CNN+SE vs CNN+CBAM on Fashion-MNIST (28x28), equal epochs, 3 seeds"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the channel part's flags."""
    parser.description = (
        "Train a small CNN, the CNN with a Squeeze-and-Excitation gate in every block and the "
        "CNN with CBAM in every block, for the same number of epochs on the same Fashion-MNIST "
        "training images, over several seeds; score the 10,000 test images once at the end. "
        "Report: mean and spread of test accuracy, validation learning curves, parameters.")
    add_common_arguments(parser, "channel", ChannelConfig(), CHANNEL_MODELS)
    parser.add_argument("--reduction", type=arg_int(1, 1024), default=None,
                        help=f"SE/CBAM bottleneck ratio (default {ChannelConfig.reduction})")


def run(args: argparse.Namespace) -> int:
    """Check the flags, then run."""
    config = config_from_args(args, "channel", ChannelConfig, ("reduction",))
    from attnkit.experiments.vision.channel_run import run_channel

    try:
        metrics = run_channel(config)
    except KeyboardInterrupt:
        print("attnkit vision channel: interrupted", file=sys.stderr)
        return 130
    goal = metrics["goal"]
    print(f"goal: CBAM test accuracy >= CNN + 0.3 points: "
          f"{goal['cbam_minus_cnn_points']:+.2f} points ({'met' if goal['met'] else 'NOT met'})"
          f"; report in {config.report_dir}")
    return 0
