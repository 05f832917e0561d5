"""The synthetic induction proxy of ``synthetic_detect.py`` (same data, probes, optimizer
and seeds) with the weights initialized at a chosen standard deviation instead of GPT-2's
0.02: every Linear and Embedding weight from N(0, STD^2), the attention output projections
from N(0, STD^2 / (2 x layers)), as GPT._init_weights does with 0.02. TransformerLens
initializes at 0.8 / sqrt(d_model) (0.1 for d_model 64).

    python synthetic_init.py STD LR STEPS [SEED]      # rotary base 10000, one torch thread
"""
import math
import sys
import time

import torch
from synthetic_rotary_base import LENGTH, VOCAB, batch, setup
from torch import nn
from torch.nn import functional as F

from attnkit.interp import detect_heads, repeated_random_tokens


def reinit(model: nn.Module, std: float) -> None:
    torch.manual_seed(0)
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=std)
    for block in model.blocks:
        nn.init.normal_(block.self_attn.out_proj.weight,
                        std=std / math.sqrt(2 * len(model.blocks)))


def main(std: str, lr: str, steps: str, seed: str = "0") -> None:
    generator, model, optimizer = setup("10000", lr, seed)
    reinit(model, float(std))
    probes = repeated_random_tokens(VOCAB, 25, batch=16, low=4, prefix=(1,),
                                    generator=torch.Generator().manual_seed(12345))
    started = time.time()
    for step in range(int(steps) + 1):
        x, predictable = batch(generator)
        losses = F.cross_entropy(model(x[:, :-1]).reshape(-1, VOCAB), x[:, 1:].reshape(-1),
                                 reduction="none").view(x.shape[0], LENGTH - 1)
        if step % 250 == 0:
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
