"""``attnkit vision caption``: Show-Attend-Tell on canvases of Fashion-MNIST items.

Xu et al. 2015, "Show, Attend and Tell", arXiv:1502.03044 (the model:
:mod:`attnkit.models.vision.show_attend_tell`). Each canvas holds 2 to 4 real Fashion-MNIST
items in a row; its caption is their class names left to right. Soft and hard attention are
trained on the same frozen encoder for each of 3 seeds; the report gives sequence, word and
pointing accuracy (mean and spread over seeds) and per-word attention overlays.

Part-plugin contract of ``attnkit vision``: :data:`HELP`, :func:`add_arguments`, :func:`run`.
Flags are checked by argparse (exit 2, one line) and the paths before any work; nothing
heavy is imported at module level.
"""

from __future__ import annotations

import argparse
import sys

from attnkit._validate import arg_float, arg_int, output_dir
from attnkit.errors import UserError

__all__ = ["HELP", "add_arguments", "run"]

HELP = "Show-Attend-Tell captioner (soft and hard attention) on canvases of Fashion-MNIST items"

_FLAGS = ("epochs", "encoder_epochs", "train_canvases", "batch_size", "lr", "doubly_stochastic",
          "entropy_weight", "hard_reward", "minutes", "threads", "data_dir")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``attnkit vision caption``."""
    from attnkit.experiments.vision._caption_config import MAX_MINUTES, PRESETS, CaptionConfig

    d, quick = CaptionConfig(), PRESETS["quick"]
    parser.description = (
        "Pre-train a small CNN on single Fashion-MNIST items, freeze it, and train "
        "Show-Attend-Tell LSTM decoders with soft and with hard (REINFORCE) attention to "
        "caption canvases of 2 to 4 items with their class names; report sequence, word and "
        "pointing accuracy over seeds and per-word attention overlays (report directory: "
        "metrics.json, README.md, report.html, PNG figures).")
    parser.add_argument("--quick", action="store_true",
                        help=f"a smoke run of seconds: one seed, {quick['train_canvases']} "
                             f"training canvases, {quick['epochs']} epoch")
    parser.add_argument("--seeds", type=arg_int(0, 2**32 - 1), nargs="+", default=None,
                        help=f"model seeds (default {' '.join(map(str, d.seeds))})")
    parser.add_argument("--attention", choices=["soft", "hard", "both"], default="both",
                        help="which decoders to train (default %(default)s)")
    parser.add_argument("--epochs", type=arg_int(1, 10_000), default=None,
                        help=f"decoder epochs (default {d.epochs})")
    parser.add_argument("--encoder-epochs", type=arg_int(1, 10_000), default=None,
                        help=f"encoder pre-training epochs (default {d.encoder_epochs})")
    parser.add_argument("--train-canvases", type=arg_int(1, 1_000_000), default=None,
                        help=f"training canvases (default {d.train_canvases})")
    parser.add_argument("--batch-size", type=arg_int(1, 65_536), default=None,
                        help=f"canvases per update (default {d.batch_size})")
    parser.add_argument("--lr", type=arg_float(0.0, 10.0, low_open=True), default=None,
                        help=f"Adam learning rate (default {d.lr:g})")
    parser.add_argument("--doubly-stochastic", type=arg_float(0.0, 1e6), default=None,
                        help=f"lambda of the doubly stochastic regularizer, soft attention "
                             f"(default {d.doubly_stochastic:g}, chosen on validation)")
    parser.add_argument("--entropy-weight", type=arg_float(0.0, 1e6), default=None,
                        help=f"entropy bonus of hard attention (default {d.entropy_weight:g}, "
                             f"chosen on validation)")
    parser.add_argument("--hard-reward", choices=["sequence", "step"], default=None,
                        help=f"REINFORCE reward of hard attention: the caption's "
                             f"log-likelihood (sequence, the paper) or each word's own "
                             f"(step) (default {d.hard_reward})")
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
    """The run's :class:`CaptionConfig`: the flags given, else --quick, else the defaults."""
    from attnkit.experiments.vision._caption_config import CaptionConfig, preset

    values = preset("quick" if args.quick else None)
    values.update({name: getattr(args, name) for name in _FLAGS
                   if getattr(args, name, None) is not None})
    if args.seeds is not None:
        if len(set(args.seeds)) != len(args.seeds):
            raise UserError(f"--seeds: each seed may appear once, got {args.seeds}")
        values["seeds"] = tuple(args.seeds)
    if args.attention != "both":
        values["attentions"] = (args.attention,)
    if args.out is not None:
        values["out"] = args.out
    values["progress"] = not args.no_progress
    return CaptionConfig(**values)


def run(args: argparse.Namespace) -> int:
    """Check flags, paths and data, then run and write the report."""
    config = config_from_args(args)
    output_dir(config.out, "--out")
    from attnkit.data.images import find_fashion_mnist

    find_fashion_mnist(config.data_dir)  # DataError (exit 2) before any work
    from attnkit.experiments.vision._caption_report import write_report
    from attnkit.experiments.vision._caption_run import run_caption

    try:
        metrics = run_caption(config)
    except KeyboardInterrupt:
        print("attnkit vision caption: interrupted", file=sys.stderr)
        return 130
    metrics = write_report(config, metrics)
    for goal in metrics["goals"]:
        print(f"goal {goal['name']}: {goal['measured']:.1%} vs {goal['target']:.0%} "
              f"({'met' if goal['met'] else 'NOT met'})")
    print(f"report: {config.out}")
    return 0
