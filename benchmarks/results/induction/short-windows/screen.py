"""attn-2 trained on short windows (C_TRAIN tokens, ROWS per update) while the model keeps
its 512-token context and every measurement (validation loss by position, ICL score, head
scores on the probe) uses 512-token validation contexts as in ``attnkit induction``.

Why: the emergence point of induction heads grows with the tokens per update and with the
context length in published fits (Aoyama et al. 2025, arXiv:2511.16893: about
10^5.7 x sqrt(B x C) tokens; arXiv:2511.01033: time to emergence quadratic in the context
length on a minimal task), so short windows might reach the phase change sooner.

    python screen.py OUT MINUTES STEPS C_TRAIN ROWS        # one torch thread

Writes the ``attnkit induction`` report into OUT; ``windows128x16.json`` and
``windows128x4.json`` here are its measurements for C_TRAIN 128 with 16 and 4 rows.
"""
import sys

import attnkit.experiments.induction.run as run_mod
from attnkit.experiments.induction.config import InductionConfig
from attnkit.experiments.induction.data import train_windows


def main(out: str, minutes: str, steps: str, c_train: str, rows: str) -> None:
    def short(stream, *, length, rows, seed, index):
        return train_windows(stream, length=int(c_train), rows=rows, seed=seed, index=index)

    run_mod.train_windows = short  # training windows only; measurements keep 512 tokens
    config = InductionConfig(models=["attn-2"], rows=int(rows), steps=int(steps),
                             minutes=float(minutes), eval_every=250, valid_contexts=16,
                             out=out, progress=False, threads=1)
    for check in run_mod.run(config)["goals"]:
        print(check)


if __name__ == "__main__":
    main(*sys.argv[1:])
