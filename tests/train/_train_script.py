"""Helper for the trainer tests: a tiny language model trained by attnkit's Trainer.

Imported by the tests (``TinyLM``, ``make_batch``, ``make_batch_fn``) and run as a subprocess
for the crash, signal and multi-process tests (not collected by pytest: no ``test_`` prefix)::

    python _train_script.py OUT_DIR [--max-steps N] [--checkpoint-every K] [--resume]
        [--dtype float32|float64] [--dropout P] [--accum N] [--pause-at INDEX]
        [--summary FILE]

``--pause-at INDEX``: when ``batch_fn`` is asked for micro-batch INDEX, print ``PAUSED`` and
wait (at most 600 s) until the trainer has been asked to stop. A test can then SIGKILL the
process (the kill lands after the checkpoints written so far and before the run ends) or
send SIGINT/SIGTERM (the trainer finishes this step, checkpoints and returns).

Under torchrun-style environment variables (RANK, WORLD_SIZE, ...) it trains data-parallel
with gloo; each process takes its rows of the same global batch.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time

import torch
from torch import nn

from attnkit.train.distributed import destroy_distributed, init_distributed
from attnkit.train.losses import lm_loss_fn
from attnkit.train.trainer import TrainConfig, Trainer

VOCAB = 13
GLOBAL_BATCH = 8
SEQ_LEN = 6


class TinyLM(nn.Module):
    """Embedding -> residual MLP with dropout -> LayerNorm -> output tied to the embedding."""

    def __init__(self, dim: int = 16, dropout: float = 0.1) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, dim)
        self.mix = nn.Linear(2 * dim, dim)  # sees the previous token too
        self.ff = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(dropout),
                                nn.Linear(2 * dim, dim))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, VOCAB, bias=False)
        self.head.weight = self.embed.weight  # tied: checkpoints must keep the tie

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.embed(idx)  # (B, T, D)
        prev = torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], dim=1)  # (B, T, D)
        x = self.mix(torch.cat([x, prev], dim=-1))  # (B, T, D)
        x = x + self.ff(x)
        return self.head(self.norm(x))  # (B, T, V)


def make_batch(step: int, rows: int = GLOBAL_BATCH) -> torch.Tensor:
    """Global batch ``(rows, SEQ_LEN + 1)`` for ``step``, with trailing padding (PAD=0)."""
    generator = torch.Generator().manual_seed(1000 + step)
    tokens = torch.randint(1, VOCAB, (rows, SEQ_LEN + 1), generator=generator)
    lengths = torch.randint(2, SEQ_LEN + 2, (rows,), generator=generator)
    positions = torch.arange(SEQ_LEN + 1).unsqueeze(0)  # (1, T + 1)
    return tokens.masked_fill(positions >= lengths.unsqueeze(1), 0)  # (rows, T + 1)


def make_batch_fn(accum_steps: int = 1):
    """Micro-batch ``index`` = part ``index % accum`` of global batch ``index // accum``;
    process ``rank`` of ``world_size`` takes its contiguous share of those rows."""
    def batch_fn(index: int, rank: int, world_size: int) -> torch.Tensor:
        full = make_batch(index // accum_steps)
        parts = accum_steps * world_size
        rows = GLOBAL_BATCH // parts
        start = ((index % accum_steps) * world_size + rank) * rows
        return full[start:start + rows]
    return batch_fn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir")
    parser.add_argument("--max-steps", type=int, default=8)
    parser.add_argument("--checkpoint-every", type=int, default=3)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--accum", type=int, default=1)
    parser.add_argument("--pause-at", type=int, default=None)
    parser.add_argument("--summary", default=None)
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    info = init_distributed()
    torch.manual_seed(0)
    model = TinyLM(dropout=args.dropout).to(getattr(torch, args.dtype))
    config = TrainConfig(max_steps=args.max_steps, lr=3e-2, warmup_steps=3,
                         schedule="inverse_sqrt", weight_decay=0.1, grad_clip=1.0,
                         accum_steps=args.accum, amp="off", checkpoint_every=args.checkpoint_every,
                         out_dir=args.out_dir, seed=7, log_every=1, progress=False)
    inner = make_batch_fn(args.accum)
    trainer: Trainer | None = None

    def batch_fn(index: int, rank: int, world_size: int) -> torch.Tensor:
        if index == args.pause_at and not args.resume:
            print("PAUSED", flush=True)
            deadline = time.monotonic() + 600
            while not trainer.stop_requested and time.monotonic() < deadline:
                time.sleep(0.01)
        return inner(index, rank, world_size)

    trainer = Trainer(model, config, batch_fn, lm_loss_fn(pad_id=0, label_smoothing=0.1),
                      model_config={"dim": 16, "dropout": args.dropout}, resume=args.resume)
    summary = trainer.fit()
    if args.summary and info.rank == 0:
        summary.pop("metrics")
        with open(args.summary, "w", encoding="utf-8") as handle:
            json.dump(summary, handle)
    destroy_distributed()
    if summary["interrupted"]:
        return 128 + int(getattr(signal, summary["signal"] or "SIGINT", signal.SIGINT))
    return 0


def run_in_process(argv: list[str]) -> int:
    """``main(argv)`` in the calling process, restoring its torch thread count afterwards."""
    threads = torch.get_num_threads()
    try:
        return main(argv)
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    sys.exit(main())
