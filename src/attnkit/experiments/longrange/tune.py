"""Hyperparameter checks of ``attnkit longrange`` on validation data, at a fixed number of
updates (so that the answer does not depend on the machine's speed or load).

One call trains one model kind on the copy task exactly as :func:`.run.run` does (same
model, batches, AdamW, warmup then linear decay, clipping), but for ``steps`` updates
instead of a time budget, then scores greedy decoding on windows of the **valid** split at
source lengths 40-100 (the range of the issue's goal; 2 windows per even length, seeds of
their own). The test split is never read. The sweep behind the default ``lr_rnn`` is in
``benchmarks/results/longrange/TUNING.md``.

Usage::

    python -m attnkit.experiments.longrange.tune --kind rnn-attention --steps 1000 --lr 5e-3
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import torch

from attnkit._validate import arg_float, arg_int
from attnkit.data import PAD_ID
from attnkit.experiments.longrange.config import LONG_MIN_LENGTH, MODEL_KINDS, LongRangeConfig
from attnkit.experiments.longrange.data import TaskBatches, make_examples
from attnkit.experiments.longrange.evaluate import decode, score
from attnkit.experiments.longrange.model import build_model
from attnkit.experiments.longrange.run import prepare_data

__all__ = ["validation_accuracy"]

_SEED = 2001  # the windows' seeds: _SEED + k for the k-th length (the run's valid set: 1002)


def validation_accuracy(kind: str, steps: int, *, lr: float | None = None,
                        grad_clip: float = 1.0, warmup_steps: int | None = None,
                        max_tokens: int | None = None,
                        config: LongRangeConfig | None = None) -> dict[str, Any]:
    """Train ``kind`` for ``steps`` updates on copy; greedy accuracy on valid windows of
    ``LONG_MIN_LENGTH``-``max_len`` tokens.

    Args:
        kind: a key of :data:`MODEL_KINDS`.
        steps: optimizer updates (the linear decay ends there).
        lr, warmup_steps, max_tokens: override the config's (None: the config's).
        grad_clip: max global gradient norm (the Trainer's default 1.0, as the run).
        config: the run's settings (None: the defaults).

    Returns:
        the settings and ``valid_token_accuracy``, ``valid_exact_match`` (lengths >= 40),
        ``train_loss`` and ``examples``.
    """
    from attnkit.train import TrainConfig, Trainer, seq2seq_loss_fn

    config = LongRangeConfig(progress=False) if config is None else config
    lr = config.lr(kind) if lr is None else lr
    warmup = config.warmup_steps if warmup_steps is None else warmup_steps
    tokens = config.max_tokens if max_tokens is None else max_tokens
    vocab, streams, _ = prepare_data(config, log=lambda _: None)
    valid = []
    for k, length in enumerate(range(LONG_MIN_LENGTH, config.max_len + 1, 2)):
        valid += make_examples(streams["valid"], [length], 2, "copy", seed=_SEED + k)
    torch.manual_seed(config.seed)
    model, _ = build_model(kind, vocab.vocab_size, d_model=config.d_model,
                           layers=config.layers, heads=config.heads,
                           max_len=config.position_limit)
    train = TrainConfig(max_steps=steps, lr=lr, warmup_steps=warmup, schedule="linear",
                        horizon="steps", grad_clip=grad_clip, seed=config.seed,
                        log_every=max(steps, 1), progress=False, amp="off")
    batches = TaskBatches(streams["train"], "copy", min_len=config.min_len,
                          max_len=config.max_len, max_tokens=tokens, seed=config.seed)
    summary = Trainer(model, train, batches, seq2seq_loss_fn(pad_id=PAD_ID)).fit()
    long = score(valid, decode(model, valid), "copy", min_len=LONG_MIN_LENGTH,
                 max_len=config.max_len, long_min=LONG_MIN_LENGTH)["long"]
    return {"kind": kind, "steps": steps, "lr": lr, "grad_clip": grad_clip,
            "warmup_steps": warmup, "max_tokens": tokens,
            "valid_token_accuracy": long["token_accuracy"],
            "valid_exact_match": long["exact_match"], "examples": len(valid),
            "train_loss": summary["loss"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", choices=sorted(MODEL_KINDS), default="rnn-attention")
    parser.add_argument("--steps", type=arg_int(1), default=1000)
    parser.add_argument("--lr", type=arg_float(0.0, 1.0, low_open=True), default=None)
    parser.add_argument("--grad-clip", type=arg_float(0.0), default=1.0)
    parser.add_argument("--warmup", type=arg_int(0), default=None)
    parser.add_argument("--max-tokens", type=arg_int(100), default=None)
    parser.add_argument("--seed", type=arg_int(0, 2**32 - 1), default=0,
                        help="model init and batch order")
    parser.add_argument("--threads", type=arg_int(1), default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = LongRangeConfig(seed=args.seed, progress=False)
    print(json.dumps({"seed": args.seed, **validation_accuracy(
        args.kind, args.steps, lr=args.lr, grad_clip=args.grad_clip, warmup_steps=args.warmup,
        max_tokens=args.max_tokens, config=config)}))


if __name__ == "__main__":
    main()
