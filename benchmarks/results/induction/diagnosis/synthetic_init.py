"""The synthetic induction proxy of ``synthetic_detect.py`` (same data, probes, optimizer
and seeds) with the weights initialized at a chosen standard deviation instead of GPT-2's
0.02: every Linear and Embedding weight from N(0, STD^2), the attention output projections
from N(0, STD^2 / (2 x layers)), as GPT._init_weights does with 0.02. TransformerLens
initializes at 0.8 / sqrt(d_model) (0.1 for d_model 64).

    python synthetic_init.py STD LR STEPS [SEED]      # rotary base 10000, one torch thread
"""
import math
import sys

import torch
from synthetic_detect import head_reporter
from synthetic_rotary_base import setup, train
from torch import nn


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
    train(model, optimizer, generator, int(steps), 250, head_reporter(model))


if __name__ == "__main__":
    main(*sys.argv[1:])
