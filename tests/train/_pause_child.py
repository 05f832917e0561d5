"""Helper for test_pause_clock.py, run as a subprocess (no ``test_`` prefix, not collected).

    python _pause_child.py SUMMARY_JSON BUDGET_S

Trains the trainer tests' TinyLM under a wall-clock budget of BUDGET_S seconds, prints
``READY`` once 20 updates are done (the parent may then SIGSTOP and SIGCONT it), and writes
the summary (``elapsed``, ``paused``, ``step``, the ``pause`` events, and ``fit_wall``: the
wall seconds ``fit`` really took) to SUMMARY_JSON.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _train_script import TinyLM, make_batch_fn  # noqa: E402

from attnkit.train.losses import lm_loss_fn  # noqa: E402
from attnkit.train.trainer import TrainConfig, Trainer  # noqa: E402


def main() -> int:
    out, budget = sys.argv[1], float(sys.argv[2])
    torch.set_num_threads(1)
    torch.manual_seed(0)
    inner = make_batch_fn()

    def batch_fn(index: int, rank: int, world_size: int) -> torch.Tensor:
        if index == 20:
            print("READY", flush=True)
        return inner(index, rank, world_size)

    config = TrainConfig(max_steps=10**9, max_time_s=budget, lr=1e-2, warmup_steps=3,
                         amp="off", log_every=10**6, progress=False, seed=1)
    trainer = Trainer(TinyLM(), config, batch_fn, lm_loss_fn(pad_id=0))
    started = time.perf_counter()
    summary = trainer.fit()
    fit_wall = time.perf_counter() - started
    pauses = [r for r in summary["metrics"] if r.get("event") == "pause"]
    Path(out).write_text(json.dumps({
        "elapsed": summary["elapsed"], "paused": summary["paused"], "step": summary["step"],
        "out_of_time": summary["out_of_time"], "pauses": pauses, "fit_wall": fit_wall}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
