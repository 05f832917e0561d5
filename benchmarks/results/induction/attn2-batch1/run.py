"""attn-2 with one 512-token window per update instead of four (the one change against
``../attn2-20k``), for a fixed wall-clock budget.

Why: Aoyama, Wilcox and Schneider 2025 (arXiv:2511.16893) fit the number of training tokens
after which induction heads emerge as about 10^5.7 x sqrt(B x C) (B windows of C tokens per
update): one window per update should need half the tokens of four, at about a quarter of
the cost per update. Measurements every 500 updates (not 50) on 32 validation contexts, so
that they stay a small share of the budget.

    python benchmarks/results/induction/attn2-batch1/run.py OUT_DIR MINUTES STEPS
"""

from __future__ import annotations

import sys

from attnkit.experiments.induction.config import InductionConfig
from attnkit.experiments.induction.run import run


def main(out: str, minutes: str, steps: str) -> None:
    config = InductionConfig(models=["attn-2"], rows=1, steps=int(steps), minutes=float(minutes),
                             eval_every=500, valid_contexts=32, out=out, progress=False)
    metrics = run(config)
    for check in metrics["goals"]:
        print(f"goal {check['goal']}: {check['measured']:+.3f}")


if __name__ == "__main__":
    main(*sys.argv[1:])
