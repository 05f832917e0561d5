"""attn-2 as in ``../attn2-20k`` (4 x 512 tokens per update, d_model 128, rotary) with one
change: the weights' initial standard deviation (``GPTConfig.init_std``) instead of GPT-2's
0.02, e.g. TransformerLens's 0.8 / sqrt(d_model) = 0.0707. Measurements every 500 updates on
32 validation contexts.

    python benchmarks/results/induction/init-std/run.py OUT_DIR MINUTES STEPS STD [THREADS]
"""

from __future__ import annotations

import sys

from attnkit.experiments.induction import run as induction
from attnkit.experiments.induction.config import InductionConfig

_measure = induction.measure


def measure_and_print(*args, **kwargs):
    """``measure`` as the experiment calls it, printing one line per measurement."""
    record = _measure(*args, **kwargs)
    prev = [max(row) for row in record["previous_token"]["scores"]]
    print(f"valid {record['valid_loss']:.3f} icl {record['icl_score']:+.3f} "
          f"pm {record['best_prefix_matching']['score']:.3f} "
          f"prev L0 {prev[0]:.2f} L1 {prev[1]:.2f}", flush=True)
    return record


induction.measure = measure_and_print


def main(out: str, minutes: str, steps: str, std: str, threads: str = "1") -> None:
    config = InductionConfig(models=["attn-2"], steps=int(steps), minutes=float(minutes),
                             eval_every=500, valid_contexts=32, out=out, progress=False,
                             init_std=float(std), threads=int(threads))
    metrics = induction.run(config)
    for check in metrics["goals"]:
        print(f"goal {check['goal']}: {check['measured']:+.3f}")


if __name__ == "__main__":
    main(*sys.argv[1:])
