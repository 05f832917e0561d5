"""``attnkit memory``: flags onto :class:`MemoryConfig`, then the run.

Every flag is checked by argparse (exit 2, one line) and the report directory before any
work; ``--quick`` applies ``PRESETS["quick"]`` and explicit flags override it. Nothing heavy
is imported at module level.
"""

from __future__ import annotations

import argparse
import sys

from attnkit._validate import arg_float, arg_int, check_fits_in_memory, output_dir
from attnkit.errors import UserError
from attnkit.experiments.memory.config import MAX_MINUTES, PRESETS, MemoryConfig, preset

__all__ = ["HELP", "add_parser", "run"]

HELP = "end-to-end memory networks (MemN2N) on generated bAbI-style tasks: 1 vs 3 hops"

_FLAGS = ("examples", "test_examples", "epochs", "ls_epochs", "noise", "embed_dim",
          "batch_size", "lr", "minutes", "seed", "threads", "restarts",
          "baseline_restarts", "optimizer", "ls_lr", "clip", "workers")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``memory``."""
    d, quick = MemoryConfig(), PRESETS["quick"]
    parser = subparsers.add_parser(
        "memory", help=HELP,
        description="Train end-to-end memory networks (Sukhbaatar et al. 2015, arXiv "
                    "1503.08895: position encoding, temporal encoding, adjacent weight tying, "
                    "linear start, random noise) jointly on our own generated bAbI-style tasks "
                    "(NOT the official bAbI data; task definitions of Weston et al. 2015, "
                    "arXiv 1502.05698), one model per hop count at equal epochs; report the "
                    "per-task test error beside the paper's table and each hop's attention "
                    "over one story (report directory: metrics.json, README.md, report.html, "
                    "PNG figures).")
    parser.add_argument("--quick", action="store_true",
                        help=f"a smoke run of seconds: tasks {quick['tasks']}, "
                             f"{quick['examples']} examples each, {quick['epochs']} epochs")
    parser.add_argument("--tasks", type=arg_int(1, 20), nargs="+", default=None,
                        help="task numbers 1..20 (default: all 20)")
    parser.add_argument("--hops", type=arg_int(1, 10), nargs="+", default=None,
                        help=f"hop counts, one model each (default {' '.join(map(str, d.hops))})")
    parser.add_argument("--examples", type=arg_int(10, 100_000), default=None,
                        help=f"training examples per task, a tenth held out for validation "
                             f"(default {d.examples}; the paper's two settings: 1000, 10000)")
    parser.add_argument("--test-examples", type=arg_int(1, 100_000), default=None,
                        help=f"test examples per task (default {d.test_examples})")
    parser.add_argument("--epochs", type=arg_int(1, 100_000), default=None,
                        help=f"epochs per training run (default {d.epochs})")
    parser.add_argument("--ls-epochs", type=arg_int(0, 100_000), default=None,
                        help=f"most epochs of linear start, 0 = none (default {d.ls_epochs})")
    parser.add_argument("--noise", type=arg_float(0.0, 1.0), default=None,
                        help=f"random noise: empty memories per sentence, 0 = none "
                             f"(default {d.noise:g})")
    parser.add_argument("--embed-dim", type=arg_int(1, 4096), default=None,
                        help=f"embedding size d (default {d.embed_dim})")
    parser.add_argument("--batch-size", type=arg_int(1, 100_000), default=None,
                        help=f"examples per update (default {d.batch_size})")
    parser.add_argument("--optimizer", choices=["adam", "sgd"], default=None,
                        help=f"adam, or plain SGD as the paper (default {d.optimizer})")
    parser.add_argument("--lr", type=arg_float(0.0, 1.0, low_open=True), default=None,
                        help=f"learning rate of the mean loss over a batch, halved every "
                             f"{d.anneal_every} epochs after linear start (default {d.lr:g})")
    parser.add_argument("--ls-lr", type=arg_float(0.0, 1.0, low_open=True), default=None,
                        help=f"learning rate during linear start (default {d.ls_lr:g})")
    parser.add_argument("--ls-early-stop", action="store_true",
                        help="linear start also ends once the validation loss rises "
                             "(default: it lasts exactly --ls-epochs)")
    parser.add_argument("--clip", type=arg_float(0.0, 1e6, low_open=True), default=None,
                        help=f"gradient norm clip (default {d.clip:g})")
    parser.add_argument("--minutes", type=arg_float(0.0, MAX_MINUTES, low_open=True),
                        default=None,
                        help=f"wall-clock cap per training run (default {d.minutes:g})")
    parser.add_argument("--seed", type=arg_int(0, 2**32 - 1), default=None,
                        help=f"data, initialization and batch order (default {d.seed})")
    parser.add_argument("--restarts", type=arg_int(1, 100), default=None,
                        help=f"training runs of the deepest model (init seeds seed, seed+1, "
                             f"...), the best by validation accuracy kept (default "
                             f"{d.restarts}; paper: 10)")
    parser.add_argument("--baseline-restarts", type=arg_int(1, 100), default=None,
                        help=f"training runs of each model with fewer hops (default "
                             f"{d.baseline_restarts})")
    parser.add_argument("--threads", type=arg_int(1, 4096), default=None,
                        help="torch CPU threads (default: torch's; with --threads the runs "
                             "go one after another unless --workers is given)")
    parser.add_argument("--workers", type=arg_int(1, 256), default=None,
                        help="processes for the training runs, one torch thread each "
                             "(default: one per CPU core)")
    parser.add_argument("--out", default=None,
                        help="report directory (default runs/memory, runs/memory-quick with "
                             "--quick)")
    parser.add_argument("--no-progress", action="store_true", help="no per-epoch lines")
    return parser


def config_from_args(args: argparse.Namespace) -> MemoryConfig:
    """The run's config: given flags, else the --quick preset, else the defaults."""
    values = preset("quick" if args.quick else None)
    values.update({name: getattr(args, name) for name in _FLAGS
                   if getattr(args, name) is not None})
    for name in ("tasks", "hops"):
        given = getattr(args, name)
        if given is not None:
            repeated = sorted({v for v in given if given.count(v) > 1})
            if repeated:
                raise UserError(f"--{name}: each value may appear once, got "
                                f"{', '.join(map(str, repeated))} twice")
            values[name] = list(given)
    values["out"] = args.out if args.out is not None else \
        "runs/memory-quick" if args.quick else "runs/memory"
    values["progress"] = not args.no_progress
    if args.ls_early_stop:
        values["ls_fixed"] = False
    try:
        return MemoryConfig(**values)
    except (ValueError, TypeError) as exc:
        name = str(exc).split(":")[0].split(" ")[0].rstrip("[]")
        raise UserError(f"--{name.replace('_', '-')}: {str(exc).split(': ', 1)[-1]}") from None


def _check_memory(config: MemoryConfig) -> None:
    """Exit 2 when one update cannot fit: a lower bound is one hop's memory embeddings,
    (batch, memory_size, embed_dim) float32 (the run holds several such tensors)."""
    need = 4.0 * config.batch_size * config.memory_size * config.embed_dim
    check_fits_in_memory(need, "--batch-size",
                         f"an update of {config.batch_size:,} stories of "
                         f"{config.memory_size} sentences at --embed-dim {config.embed_dim}")


def run(args: argparse.Namespace) -> int:
    """Check the flags and the report directory, then run the experiment."""
    config = config_from_args(args)
    _check_memory(config)
    output_dir(config.report_dir, "--out")
    from attnkit.experiments.memory.run import run as run_experiment

    try:
        metrics = run_experiment(config)
    except KeyboardInterrupt:
        print("attnkit memory: interrupted", file=sys.stderr)
        return 130
    for check in metrics["goals"]:
        print(f"goal {check['goal']}: {check['measured']} ({'met' if check['met'] else 'NOT met'})")
    return 0
