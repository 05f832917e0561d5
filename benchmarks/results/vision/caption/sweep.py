"""Validation sweep of the Show-Attend-Tell regularizer weights (seed 0, one shared encoder).

Run from the repository root::

    OMP_NUM_THREADS=1 python benchmarks/results/vision/caption/sweep.py

Soft attention: doubly stochastic lambda in {0, 1}; hard attention: entropy
weight lambda_e in {0.01, 0.1}. Scores are on the validation canvases only; the result
goes to sweep.json beside this file. Everything else is the default CaptionConfig.
"""

import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from attnkit.experiments.vision import _caption_run as run
from attnkit.experiments.vision._caption_config import CaptionConfig

torch.set_num_threads(1)
config = CaptionConfig()
data = run.prepare(config, print)
far = time.perf_counter() + 10 ** 6
encoder, info = run.train_encoder(config, data["items"], 0, far, print)
item_acc = run.item_accuracy(encoder, data["val_items"])
print(f"encoder val item accuracy {item_acc:.3f}")
train_feats, grid = run.annotations(encoder, data["canvases"]["train"])
val_feats, _ = run.annotations(encoder, data["canvases"]["val"])
captions = torch.from_numpy(data["canvases"]["train"].tokens)
rows = []
trials = [("soft", {"doubly_stochastic": v}) for v in (0.0, 1.0)] + \
         [("hard", {"entropy_weight": v}) for v in (0.01, 0.1)]
for kind, change in trials:
    cfg = replace(config, **change)
    model, info = run.train_decoder(cfg, kind, train_feats, captions, 0, far, lambda _: None)
    scores = run.evaluate(model, val_feats, data["canvases"]["val"], grid)
    rows.append({"attention": kind, **change, **scores, "epochs": info["epochs"]})
    print(rows[-1], flush=True)
out = Path(__file__).with_name("sweep.json")
out.write_text(json.dumps({"encoder_val_item_accuracy": item_acc, "config": {
    k: v for k, v in vars(config).items() if k != "extra"}, "trials": rows}, indent=1) + "\n")
