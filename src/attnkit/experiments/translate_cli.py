"""``attnkit translate`` argument parsing; the work is in :mod:`attnkit.experiments.translate`.

``attnkit translate`` with no subcommand is the main job: build the corpus if missing,
train the default Transformer for its budget, evaluate, and write the report.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_translate_parser"]


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _add_training_options(parser: argparse.ArgumentParser, *, minutes: float) -> None:
    from attnkit.experiments.translate import TranslateConfig

    d = TranslateConfig()
    parser.add_argument("--lang", choices=["fr", "de"], default=d.lang,
                        help="target language (default %(default)s)")
    parser.add_argument("--minutes", type=_positive_float, default=minutes,
                        help="training wall-clock budget per model (default %(default)s)")
    parser.add_argument("--max-steps", type=_positive_int, default=d.max_steps,
                        help="stop after this many updates if the budget lasts longer")
    parser.add_argument("--size", choices=["small", "tiny"], default=d.size,
                        help="model size preset (default %(default)s)")
    parser.add_argument("--vocab-size", type=_positive_int, default=d.vocab_size)
    parser.add_argument("--max-tokens", type=_positive_int, default=d.max_tokens,
                        help="padded tokens per batch (default %(default)s)")
    parser.add_argument("--lr", type=_positive_float, default=None,
                        help="peak learning rate (default: per model)")
    parser.add_argument("--warmup-steps", type=_positive_int, default=d.warmup_steps)
    parser.add_argument("--eval-every", type=_positive_int, default=d.eval_every)
    parser.add_argument("--checkpoint-every", type=_positive_int, default=d.checkpoint_every)
    parser.add_argument("--beam-size", type=_positive_int, default=d.beam_size)
    parser.add_argument("--test-limit", type=_positive_int, default=None,
                        help="evaluate on the first N test pairs only")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--data-dir", default=None,
                        help="corpus cache (default $ATTNKIT_DATA or ~/.cache/attnkit)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its last checkpoint")
    parser.add_argument("--amp", choices=["auto", "bf16", "off"], default=d.amp,
                        help="bf16 autocast: auto = where the hardware has native bf16 "
                             "(default %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _base(args: argparse.Namespace) -> dict:
    return {"lang": args.lang, "max_steps": args.max_steps, "size": args.size,
            "vocab_size": args.vocab_size, "max_tokens": args.max_tokens, "lr": args.lr,
            "warmup_steps": args.warmup_steps, "eval_every": args.eval_every,
            "checkpoint_every": args.checkpoint_every, "beam_size": args.beam_size,
            "test_limit": args.test_limit, "seed": args.seed, "data_dir": args.data_dir,
            "progress": not args.no_progress, "amp": args.amp}


def _fail(message: str) -> int:
    print(f"attnkit translate: error: {message}", file=sys.stderr)
    return 2


def _guard(fn):
    """Map the errors a user can cause to one line and exit code 2; Ctrl-C to 130."""
    def run(args: argparse.Namespace) -> int:
        from attnkit.data.corpus import DataError
        from attnkit.experiments.translate import TranslateError

        try:
            return fn(args)
        except (TranslateError, DataError, FileNotFoundError) as exc:
            return _fail(str(exc))
        except KeyboardInterrupt:
            print("attnkit translate: interrupted; the last checkpoint is saved, continue "
                  "with --resume", file=sys.stderr)
            return 130
    return run


@_guard
def _cmd_train(args: argparse.Namespace) -> int:
    from attnkit.experiments.translate import TranslateConfig, train

    model = getattr(args, "model", "transformer")
    config = TranslateConfig(**_base(args), model=model, minutes=args.minutes, out=args.out)
    metrics = train(config, resume=args.resume)
    if "samples" not in metrics:  # a torchrun worker other than rank 0: no evaluation
        return 0
    print("\nsamples from the test split:")
    for sample in metrics["samples"][:5]:
        print(f"  en:  {sample['source']}\n  ref: {sample['reference']}\n"
              f"  out: {sample['output']}\n")
    print(f"BLEU {metrics['bleu']:.2f}  chrF {metrics['chrf']:.2f}  "
          f"({metrics['bleu_signature']})")
    return 0


@_guard
def _cmd_eval(args: argparse.Namespace) -> int:
    from attnkit._io import atomic_write_json
    from attnkit.experiments.translate import evaluate

    metrics = evaluate(args.checkpoint, beam_size=args.beam_size, test_limit=args.test_limit,
                       data_dir=args.data_dir)
    for bucket in metrics["by_length"]:
        bleu = f"{bucket['bleu']:6.2f}" if "bleu" in bucket else "     -"
        print(f"  {bucket['bucket']:>6} words  {bucket['sentences']:5d} sentences  BLEU {bleu}")
    print(f"BLEU {metrics['bleu']:.2f}  chrF {metrics['chrf']:.2f}  "
          f"({metrics['bleu_signature']})")
    if args.json:
        atomic_write_json(args.json, metrics)
    return 0


@_guard
def _cmd_text(args: argparse.Namespace) -> int:
    from attnkit.experiments.translate import translate_text
    from attnkit.interp.alignment import format_alignment

    output, alignment = translate_text(args.checkpoint, args.text, beam_size=args.beam_size)
    print(output)
    if not args.no_alignment:
        print()
        print(format_alignment(alignment))
    return 0


@_guard
def _cmd_compare(args: argparse.Namespace) -> int:
    from attnkit.experiments.translate import CompareConfig, compare

    summary = compare(CompareConfig(models=args.models, minutes=args.minutes, out=args.out,
                                    base=_base(args)), resume=args.resume)
    for name, row in summary["models"].items():
        print(f"{name:<14} BLEU {row['bleu']:6.2f}  chrF {row['chrf']:6.2f}  "
              f"{row['parameters'] / 1e6:5.2f}M params  {row['updates']} updates")
    return 0


def add_translate_parser(sub, parser_class) -> None:
    """Register ``translate`` and its subcommands on the top-level subparsers ``sub``."""
    from attnkit.experiments.translate import MODEL_KINDS

    translate = sub.add_parser(
        "translate", help="the main job: English->French translation on gettext catalogs",
        description="English->French translation on a real corpus of gettext catalogs. "
                    "Without a subcommand: build the corpus if missing, train the default "
                    "Transformer for --minutes, evaluate on the test split (sacreBLEU BLEU "
                    "and chrF), and write a report directory.")
    _add_training_options(translate, minutes=12.0)
    translate.add_argument("--out", default="runs/translate-transformer",
                           help="report directory (default %(default)s)")
    translate.set_defaults(func=_cmd_train)
    actions = translate.add_subparsers(dest="action", parser_class=parser_class)

    train = actions.add_parser("train", help="train one model and evaluate it")
    train.add_argument("--model", choices=sorted(MODEL_KINDS), default="transformer",
                       help="transformer | rnn-attention (Bahdanau) | rnn-luong | "
                            "rnn-local-p | rnn-none (no attention)")
    _add_training_options(train, minutes=12.0)
    train.add_argument("--out", default=None, help="report directory "
                                                   "(default runs/translate-<model>)")
    train.set_defaults(func=_train_with_default_out)

    evaluate = actions.add_parser("eval", help="BLEU/chrF of a checkpoint on the test split")
    evaluate.add_argument("checkpoint", help="report directory, checkpoints/ or ckpt-* folder")
    evaluate.add_argument("--beam-size", type=_positive_int, default=None)
    evaluate.add_argument("--test-limit", type=_positive_int, default=None)
    evaluate.add_argument("--data-dir", default=None)
    evaluate.add_argument("--json", metavar="PATH", help="also write the metrics as JSON")
    evaluate.set_defaults(func=_cmd_eval)

    text = actions.add_parser("text", help="translate one sentence and show its alignment")
    text.add_argument("checkpoint", help="report directory, checkpoints/ or ckpt-* folder")
    text.add_argument("text", help='the English sentence, e.g. "Open the file"')
    text.add_argument("--beam-size", type=_positive_int, default=4)
    text.add_argument("--no-alignment", action="store_true", help="print the translation only")
    text.set_defaults(func=_cmd_text)

    comp = actions.add_parser(
        "compare", help="rnn-none vs rnn-attention vs transformer under one budget",
        description="Train several models on the same corpus, tokenizer and wall-clock "
                    "budget; write BLEU/chrF per model, BLEU by source length, throughput "
                    "and side-by-side alignment plots.")
    comp.add_argument("--models", nargs="+", choices=sorted(MODEL_KINDS),
                      default=["rnn-none", "rnn-attention", "transformer"])
    _add_training_options(comp, minutes=10.0)
    comp.add_argument("--out", default="runs/translate-compare",
                      help="report directory (default %(default)s)")
    comp.set_defaults(func=_cmd_compare)


def _train_with_default_out(args: argparse.Namespace) -> int:
    if args.out is None:
        args.out = f"runs/translate-{args.model}"
    return _cmd_train(args)
