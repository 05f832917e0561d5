"""The synthetic induction proxy of ``synthetic_rotary_base.py`` (the same data, model,
optimizer and seeds, so the same training trajectory), with the heads scored as training
goes: every 500 updates, prefix matching (induction) and previous-token scores of every
head on 16 fixed probes (BOS, 25 random ids of 4..63, the same 25 again), by
``attnkit.interp.detect_heads``.

    python synthetic_detect.py BASE LR STEPS [SEED]      # one torch thread
"""
import sys
from collections.abc import Callable

import torch
from synthetic_rotary_base import VOCAB, setup, train

from attnkit.interp import detect_heads, repeated_random_tokens


def head_reporter(model: torch.nn.Module) -> Callable[[int, float, float], None]:
    """A ``train`` report that also scores every head on the fixed probes."""
    probes = repeated_random_tokens(VOCAB, 25, batch=16, low=4, prefix=(1,),
                                    generator=torch.Generator().manual_seed(12345))

    def report(step: int, loss: float, seconds: float) -> None:
        tables = detect_heads(model, probes, detectors=("induction", "previous_token"))
        ind, prev = tables["induction"].scores, tables["previous_token"].scores
        print(step, f"loss2nd {loss:.3f}",
              f"pm {ind.max().item():.2f} (L1 heads {ind[1].tolist()})",
              f"prevL0 {prev[0].max().item():.2f} prevL1 {prev[1].max().item():.2f}",
              f"{seconds:.0f}s", flush=True)
    return report


def main(base: str, lr: str, steps: str, seed: str = "0") -> None:
    generator, model, optimizer = setup(base, lr, seed)
    train(model, optimizer, generator, int(steps), 500, head_reporter(model))


if __name__ == "__main__":
    main(*sys.argv[1:])
