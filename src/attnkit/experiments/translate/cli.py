"""``attnkit translate``: flags onto :class:`TranslateConfig`, then train, eval, text or compare.

``attnkit translate`` with no action is the main job: build the corpus if missing, train the
default Transformer for its budget, evaluate, and write the report. ``--quick`` (every
action that trains) is the preset of :data:`~attnkit.experiments.translate.config.PRESETS`:
a tiny model, a one-minute budget and a small test set; flags given explicitly override it.

Every flag is checked by argparse, and every path before training starts (an unwritable
``--out``/``--json``/``--data-dir``, a ``--resume`` with no run to continue or whose checkpoint
was trained with another model or vocabulary): a mistake costs seconds, not the run. Options
given before an action (``attnkit translate --minutes 5 train``) are refused: the action's
own parser would silently put its defaults over them. This module imports nothing heavy at
module level; the work is in the modules of this package.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

from attnkit._io import atomic_write_json
from attnkit._validate import arg_float, arg_int, check_fits_in_memory, output_file, unique
from attnkit.data.translation.split import TEST_LONG
from attnkit.errors import UserError
from attnkit.experiments.translate.config import (
    AMP_MODES,
    LANGS,
    MAX_BATCH_TOKENS,
    MAX_BEAM,
    MAX_LAYERS,
    MAX_LR,
    MAX_MINUTES,
    MAX_SEED,
    MAX_VOCAB,
    MAX_WIDTH,
    MIN_VOCAB,
    MODEL_KINDS,
    PRESETS,
    SCHEDULES,
    SIZES,
    CompareConfig,
    TranslateConfig,
    preset,
)

EVAL_SPLITS = ("test", TEST_LONG)  # as evaluate.EVAL_SPLITS, without importing torch

__all__ = ["HELP", "add_parser", "run"]

HELP = "the main job: English->French translation on gettext catalogs"

# Flags whose value --quick may supply: argparse default None means "not given".
_PRESET_FLAGS = ("minutes", "size", "vocab_size", "max_tokens", "warmup_steps", "eval_every",
                 "checkpoint_every", "beam_size", "test_limit")
_BASE_FLAGS = ("lang", "max_steps", "size", "width", "layers", "dropout", "vocab_size",
               "max_tokens", "lr", "warmup_steps", "schedule", "label_smoothing",
               "eval_minutes", "eval_every", "checkpoint_every", "beam_size", "test_limit",
               "seed", "data_dir", "amp")


def _add_training_options(parser: argparse.ArgumentParser, *, minutes: float) -> None:
    d = TranslateConfig()
    quick = PRESETS["quick"]

    def default(name: str, value=None) -> str:
        value = getattr(d, name) if value is None else value
        return f"(default {value}; --quick: {quick[name]})" if name in quick \
            else f"(default {value})"

    parser.add_argument("--quick", action="store_true",
                        help="a smoke run under 2 minutes on 2 CPU cores: tiny model, "
                             "1-minute budget, 64 test sentences")
    parser.add_argument("--lang", choices=LANGS, default=d.lang,
                        help="target language (default %(default)s)")
    parser.add_argument("--minutes", type=arg_float(0.0, MAX_MINUTES, low_open=True),
                        default=None, help="training wall-clock budget per model "
                                           + default("minutes", minutes))
    parser.add_argument("--max-steps", type=arg_int(1), default=d.max_steps,
                        help="stop after this many updates if the budget lasts longer")
    parser.add_argument("--size", choices=SIZES, default=None,
                        help="model size preset " + default("size"))
    parser.add_argument("--width", type=arg_int(1, MAX_WIDTH), default=None,
                        help="model width: Transformer d_model (a multiple of 64), RNN hidden "
                             "size (default: the size preset's)")
    parser.add_argument("--layers", type=arg_int(1, MAX_LAYERS), default=None,
                        help="encoder and decoder layers each (default: the size preset's)")
    parser.add_argument("--dropout", type=arg_float(0.0, 1.0, high_open=True), default=None,
                        help="dropout rate (default: the size preset's)")
    parser.add_argument("--vocab-size", type=arg_int(MIN_VOCAB, MAX_VOCAB), default=None,
                        help="joint BPE vocabulary " + default("vocab_size"))
    parser.add_argument("--max-tokens", type=arg_int(d.max_len, MAX_BATCH_TOKENS), default=None,
                        help=f"padded tokens per batch, at least the longest sentence kept "
                             f"({d.max_len}) (default 1500 transformer, 3000 RNNs; --quick: "
                             f"{quick['max_tokens']})")
    parser.add_argument("--lr", type=arg_float(0.0, MAX_LR, low_open=True), default=None,
                        help="peak learning rate (default: 2e-3 transformer, 1e-3 RNNs)")
    parser.add_argument("--warmup-steps", type=arg_int(0), default=None,
                        help="linear warmup updates " + default("warmup_steps"))
    parser.add_argument("--schedule", choices=SCHEDULES, default=None,
                        help="learning-rate decay after warmup; linear and cosine are laid "
                             "over the time budget " + default("schedule"))
    parser.add_argument("--label-smoothing", type=arg_float(0.0, 1.0, high_open=True),
                        default=None, help="on the training loss " + default("label_smoothing"))
    parser.add_argument("--eval-minutes", type=arg_float(0.0, MAX_MINUTES), default=None,
                        help="validation loss and greedy BLEU every M minutes, the report's "
                             "quality curve (0: at the end only) " + default("eval_minutes"))
    parser.add_argument("--eval-every", type=arg_int(1), default=None,
                        help="validation loss every N updates " + default("eval_every"))
    parser.add_argument("--checkpoint-every", type=arg_int(1), default=None,
                        help="checkpoint every N updates " + default("checkpoint_every"))
    parser.add_argument("--beam-size", type=arg_int(1, MAX_BEAM), default=None,
                        help="test-set beam size " + default("beam_size"))
    parser.add_argument("--test-limit", type=arg_int(1), default=None,
                        help="evaluate on the first N test pairs only " + default(
                            "test_limit", "all"))
    parser.add_argument("--seed", type=arg_int(0, MAX_SEED), default=d.seed)
    parser.add_argument("--data-dir", default=None,
                        help="corpus cache (default $ATTNKIT_DATA or ~/.cache/attnkit)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its last checkpoint")
    parser.add_argument("--amp", choices=AMP_MODES, default=d.amp,
                        help="bf16 autocast: auto = on CUDA GPUs with bf16, float32 on CPU "
                             "(bf16 was slower even with AMX); bf16 forces it (default "
                             "%(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(default_minutes=minutes)


def _add_hold_out(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hold-out-long", action="store_true",
                        help="train without the test-long set (long train-split sentences "
                             "picked by a salted hash, about 250+ per 13-20/21-30/31-50-word "
                             "bucket) and score on it too (compare always does)")


@functools.cache
def _recording(action_class: type) -> type:
    """``action_class`` that also notes its flag in ``namespace.given_before_action``."""

    class Recording(action_class):
        def __call__(self, parser, namespace, values, option_string=None):
            super().__call__(parser, namespace, values, option_string)
            given = getattr(namespace, "given_before_action", [])
            namespace.given_before_action = [*given, option_string]

    Recording.__name__ = f"Recording{action_class.__name__}"
    return Recording


def _record_given(parser: argparse.ArgumentParser) -> None:
    """Make every option of the main job's parser note that it was given: an action's
    subparser writes its own defaults over those values, so they are checked in run()."""
    for action in parser._actions:
        if action.option_strings and not isinstance(action, argparse._HelpAction):
            action.__class__ = _recording(type(action))


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``translate`` and its actions (train, eval, text, compare)."""
    translate = subparsers.add_parser(
        "translate", help=HELP,
        description="English->French translation on a real corpus of gettext catalogs. "
                    "Without an action: build the corpus if missing, train the default "
                    "Transformer for --minutes, evaluate on the test split (sacreBLEU BLEU "
                    "and chrF), and write a report directory (metrics.json, README.md, "
                    "report.html, alignments.png, checkpoints/).")
    _add_training_options(translate, minutes=13.0)
    _add_hold_out(translate)
    translate.add_argument("--out", default=None, help="report directory (default "
                                                       "runs/translate-transformer, plus "
                                                       "-quick with --quick)")
    _record_given(translate)
    translate.set_defaults(action=None, model="transformer")
    actions = translate.add_subparsers(dest="action", metavar="ACTION")

    train = actions.add_parser("train", help="train one model and evaluate it")
    train.add_argument("--model", choices=sorted(MODEL_KINDS), default="transformer",
                       help="transformer | rnn-attention (Bahdanau) | rnn-luong | "
                            "rnn-local-p | rnn-none (no attention)")
    _add_training_options(train, minutes=13.0)
    _add_hold_out(train)
    train.add_argument("--out", default=None, help="report directory (default "
                                                   "runs/translate-<model>, plus -quick with "
                                                   "--quick)")

    evaluate = actions.add_parser("eval", help="BLEU/chrF of a checkpoint on the test split")
    evaluate.add_argument("checkpoint", help="report directory, checkpoints/ or ckpt-* folder")
    evaluate.add_argument("--split", choices=EVAL_SPLITS, default="test",
                          help="test, or test-long for a run trained with --hold-out-long "
                               "(default %(default)s)")
    evaluate.add_argument("--beam-size", type=arg_int(1, MAX_BEAM), default=None)
    evaluate.add_argument("--test-limit", type=arg_int(1), default=None)
    evaluate.add_argument("--data-dir", default=None)
    evaluate.add_argument("--json", metavar="PATH", help="also write the metrics as JSON")

    text = actions.add_parser("text", help="translate one sentence and show its alignment")
    text.add_argument("checkpoint", help="report directory, checkpoints/ or ckpt-* folder")
    text.add_argument("text", help='the English sentence, e.g. "Open the file"')
    text.add_argument("--beam-size", type=arg_int(1, MAX_BEAM), default=4)
    text.add_argument("--no-alignment", action="store_true", help="print the translation only")

    comp = actions.add_parser(
        "compare", help="rnn-none vs rnn-attention vs transformer under one budget",
        description="Train several models on the same corpus, tokenizer and wall-clock "
                    "budget, each without the test-long set; write BLEU/chrF per model, BLEU "
                    "by source length on the test split and on test-long with 95% paired-"
                    "bootstrap intervals and p-values per pair of models (sacreBLEU), "
                    "throughput and side-by-side alignment plots.")
    comp.add_argument("--models", nargs="+", choices=sorted(MODEL_KINDS),
                      default=["rnn-none", "rnn-attention", "transformer"])
    _add_training_options(comp, minutes=10.0)
    comp.add_argument("--out", default=None, help="report directory (default "
                                                  "runs/translate-compare, plus -quick with "
                                                  "--quick)")
    return translate


def _base(args: argparse.Namespace) -> dict:
    """TranslateConfig fields from the flags: given flags, else the --quick preset, else
    the config's defaults (fields left out)."""
    values = preset("quick" if args.quick else None)
    values.pop("minutes", None)  # per model: set by the caller
    values.update({name: getattr(args, name) for name in _BASE_FLAGS
                   if getattr(args, name) is not None})
    values["progress"] = not args.no_progress
    if getattr(args, "hold_out_long", False):  # compare has no flag: it always holds out
        values["hold_out_long"] = True
    return values


def _minutes(args: argparse.Namespace) -> float:
    if args.minutes is not None:
        return args.minutes
    return PRESETS["quick"]["minutes"] if args.quick else args.default_minutes


def _print_samples(metrics: dict) -> None:
    print("\nsamples from the test split:")
    for sample in metrics["samples"][:5]:
        print(f"  en:  {sample['source']}\n  ref: {sample['reference']}\n"
              f"  out: {sample['output']}\n")
    print(f"BLEU {metrics['bleu']:.2f}  chrF {metrics['chrf']:.2f}  "
          f"({metrics['bleu_signature']})")


def _check_steps(args: argparse.Namespace) -> None:
    """Options that contradict each other when both are given."""
    if args.warmup_steps is not None and args.warmup_steps > args.max_steps:
        raise UserError(f"--warmup-steps {args.warmup_steps} exceeds --max-steps "
                        f"{args.max_steps}: the learning rate would never reach its peak")


def _has_run(folder: Path) -> bool:
    """Whether ``folder`` holds a checkpoint of a run (``checkpoints/ckpt-*``)."""
    from attnkit.train import latest_checkpoint

    return (folder / "checkpoints").is_dir() and \
        latest_checkpoint(folder / "checkpoints") is not None


def _config(args: argparse.Namespace, model: str, out: str) -> TranslateConfig:
    """The run's config; a combination argparse cannot check (e.g. --width 99 for the
    Transformer) is a UserError naming the flag."""
    try:
        return TranslateConfig(**_base(args), model=model, minutes=_minutes(args), out=out)
    except ValueError as exc:
        raise UserError(f"--{str(exc).split(':')[0].replace('_', '-')}: "
                        f"{str(exc).split(': ', 1)[-1]}") from None


def _check_memory(config: TranslateConfig) -> None:
    """Refuse settings each within its bounds whose product cannot fit in memory: a lower
    bound of the batch's logits (and their gradient), and of the model given --width/--layers
    (weights, gradients and Adam's two moments)."""
    check_fits_in_memory(8.0 * config.max_tokens * config.vocab_size, "--max-tokens",
                         f"{config.model}: the logits of {config.max_tokens} tokens over "
                         f"{config.vocab_size} vocabulary entries")
    if config.width is not None or config.layers is not None:
        width, layers = config.width or 64, config.layers or 1
        weights = layers * 3 * width ** 2 + config.vocab_size * width
        check_fits_in_memory(16.0 * weights, "--width" if config.width else "--layers",
                             f"{config.model} of width {width} with {layers} layers")


def _cmd_train(args: argparse.Namespace) -> int:
    from attnkit.experiments.translate.run import train

    _check_steps(args)
    suffix = "-quick" if args.quick else ""
    out = args.out if args.out is not None else f"runs/translate-{args.model}{suffix}"
    if args.resume and not _has_run(Path(out).expanduser()):
        raise UserError(f"--resume: {out} holds no run to continue (no checkpoint in "
                        f"{Path(out) / 'checkpoints'}); drop --resume to start one")
    config = _config(args, args.model, out)
    _check_memory(config)
    metrics = train(config, resume=args.resume)
    if "samples" in metrics:  # torchrun workers other than rank 0 do not evaluate
        _print_samples(metrics)
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from attnkit.experiments.translate.evaluate import evaluate

    if args.json is not None:
        output_file(args.json, "--json")
    if args.data_dir is not None and not Path(args.data_dir).expanduser().is_dir():
        what = "is not a folder" if Path(args.data_dir).expanduser().exists() \
            else "does not exist"
        raise UserError(f"--data-dir: {args.data_dir} {what}, so it holds no corpus")
    metrics = evaluate(args.checkpoint, split=args.split, beam_size=args.beam_size,
                       test_limit=args.test_limit, data_dir=args.data_dir)
    for bucket in metrics["by_length"]:
        bleu = f"{bucket['bleu']:6.2f}" if "bleu" in bucket else "     -"
        print(f"  {bucket['bucket']:>6} words  {bucket['sentences']:5d} sentences  BLEU {bleu}")
    print(f"{args.split}: BLEU {metrics['bleu']:.2f}  chrF {metrics['chrf']:.2f}  "
          f"({metrics['bleu_signature']})")
    if args.json is not None:
        atomic_write_json(args.json, metrics)
    return 0


def _cmd_text(args: argparse.Namespace) -> int:
    from attnkit.experiments.translate.translator import translate_text
    from attnkit.interp import format_alignment

    output, alignment = translate_text(args.checkpoint, args.text, beam_size=args.beam_size)
    print(output)
    if not args.no_alignment:
        print()
        print(format_alignment(alignment))
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from attnkit.experiments.translate.compare import compare

    unique(args.models, "--models")
    _check_steps(args)
    suffix = "-quick" if args.quick else ""
    out = args.out if args.out is not None else f"runs/translate-compare{suffix}"
    if args.resume and not any(_has_run(Path(out).expanduser() / name)
                               or (Path(out).expanduser() / name / "metrics.json").is_file()
                               for name in args.models):
        raise UserError(f"--resume: {out} holds no run of {', '.join(args.models)} to "
                        f"continue; drop --resume to start the comparison")
    for name in args.models:  # each model's own config: --width 99 is fine for the RNNs
        _check_memory(_config(args, name, str(Path(out) / name)))
    summary = compare(CompareConfig(models=list(args.models), minutes=_minutes(args), out=out,
                                    base=_base(args)), resume=args.resume)
    for name, row in summary["models"].items():
        print(f"{name:<14} BLEU {row['bleu']:6.2f}  chrF {row['chrf']:6.2f}  "
              f"{row['parameters'] / 1e6:5.2f}M params  {row['updates']} updates")
    return 0


_ACTIONS = {None: _cmd_train, "train": _cmd_train, "eval": _cmd_eval, "text": _cmd_text,
            "compare": _cmd_compare}


def run(args: argparse.Namespace) -> int:
    """Run the action ``args.action`` (None: the main job, ``train`` with its defaults)."""
    given = getattr(args, "given_before_action", [])
    if args.action is not None and given:
        raise UserError(f"{given[0]}: options before the action {args.action!r} apply to the "
                        f"main job only; give them after it (attnkit translate "
                        f"{args.action} {given[0]} ...)")
    try:
        return _ACTIONS[args.action](args)
    except KeyboardInterrupt:
        print("attnkit translate: interrupted; the last checkpoint is saved, continue with "
              "--resume", file=sys.stderr)
        return 130
