"""Synthetic induction proxy with a chosen rotary base: BOS, a random sequence of 8-30 of
60 ids, the same sequence again at a random offset, random fill to 64 positions; a 2-layer
attention-only GPT (d_model 64, 2 heads, rotary positions with the given base); AdamW.
Prints the mean loss on the second copy's predictable tokens every 250 updates (ln 60 = 4.09
for a uniform guess; an induction head takes it towards 0).

    python synthetic_rotary_base.py BASE LR STEPS [SEED]      # one torch thread
"""
import sys
import time
from collections.abc import Callable

import torch
from torch.nn import functional as F

from attnkit.models.gpt import GPT, GPTConfig

VOCAB, LENGTH, ROWS = 64, 64, 32


def batch(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randint(4, VOCAB, (ROWS, LENGTH), generator=generator)
    x[:, 0] = 1
    predictable = torch.zeros(ROWS, LENGTH, dtype=torch.bool)
    for row in range(ROWS):
        n = int(torch.randint(8, 31, (1,), generator=generator))
        start = int(torch.randint(1, LENGTH - 2 * n + 1, (1,), generator=generator))
        x[row, start + n:start + 2 * n] = x[row, start:start + n]
        predictable[row, start + n + 1:start + 2 * n] = True
    return x, predictable


def setup(base: str, lr: str, seed: str) -> tuple[torch.Generator, GPT, torch.optim.Optimizer]:
    """One torch thread, the data generator, the model and its optimizer, seeded."""
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(int(seed) + 100)
    torch.manual_seed(int(seed))
    model = GPT(GPTConfig(vocab_size=VOCAB, context_len=LENGTH, num_layers=2, num_heads=2,
                          d_model=64, positional="rotary", rotary_base=float(base), mlp=False,
                          dropout=0.0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=float(lr), weight_decay=0.01)
    return generator, model, optimizer


def train(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
          generator: torch.Generator, steps: int, every: int,
          report: Callable[[int, float, float], None]) -> None:
    """``steps`` + 1 AdamW updates on fresh proxy batches; every ``every`` updates (before
    that update) ``report(step, mean loss on the second copy, seconds so far)``."""
    started = time.time()
    for step in range(steps + 1):
        x, predictable = batch(generator)
        losses = F.cross_entropy(model(x[:, :-1]).reshape(-1, VOCAB), x[:, 1:].reshape(-1),
                                 reduction="none").view(x.shape[0], LENGTH - 1)
        if step % every == 0:
            report(step, losses[predictable[:, 1:]].mean().item(), time.time() - started)
        optimizer.zero_grad()
        losses.mean().backward()
        optimizer.step()


def main(base: str, lr: str, steps: str, seed: str = "0") -> None:
    generator, model, optimizer = setup(base, lr, seed)
    train(model, optimizer, generator, int(steps), 250,
          lambda step, loss, seconds: print(step, f"loss2nd {loss:.3f}", f"{seconds:.0f}s",
                                            flush=True))


if __name__ == "__main__":
    main(*sys.argv[1:])
