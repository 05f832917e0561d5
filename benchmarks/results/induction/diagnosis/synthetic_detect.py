"""The synthetic induction proxy of ``synthetic_rotary_base.py`` (the same data, model,
optimizer and seeds, so the same training trajectory), with the heads scored as training
goes: every 500 updates, prefix matching (induction) and previous-token scores of every
head on 16 fixed probes (BOS, 25 random ids of 4..63, the same 25 again), by
``attnkit.interp.detect_heads``.

    python synthetic_detect.py BASE LR STEPS [SEED]      # one torch thread
"""
import sys
import time

import torch
from synthetic_rotary_base import LENGTH, VOCAB, batch, setup
from torch.nn import functional as F

from attnkit.interp import detect_heads, repeated_random_tokens


def main(base: str, lr: str, steps: str, seed: str = "0") -> None:
    generator, model, optimizer = setup(base, lr, seed)
    probes = repeated_random_tokens(VOCAB, 25, batch=16, low=4, prefix=(1,),
                                    generator=torch.Generator().manual_seed(12345))
    started = time.time()
    for step in range(int(steps) + 1):
        x, predictable = batch(generator)
        losses = F.cross_entropy(model(x[:, :-1]).reshape(-1, VOCAB), x[:, 1:].reshape(-1),
                                 reduction="none").view(x.shape[0], LENGTH - 1)
        if step % 500 == 0:
            tables = detect_heads(model, probes, detectors=("induction", "previous_token"))
            ind, prev = tables["induction"].scores, tables["previous_token"].scores
            print(step, f"loss2nd {losses[predictable[:, 1:]].mean().item():.3f}",
                  f"pm {ind.max().item():.2f} (L1 heads {ind[1].tolist()})",
                  f"prevL0 {prev[0].max().item():.2f} prevL1 {prev[1].max().item():.2f}",
                  f"{time.time() - started:.0f}s", flush=True)
        optimizer.zero_grad()
        losses.mean().backward()
        optimizer.step()


if __name__ == "__main__":
    main(*sys.argv[1:])
