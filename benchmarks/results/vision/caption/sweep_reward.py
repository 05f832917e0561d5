"""Validation check of the REINFORCE reward of hard attention (seed 0).

Run from the repository root::

    OMP_NUM_THREADS=1 python benchmarks/results/vision/caption/sweep_reward.py

The default CaptionConfig's encoder (seed 0), then hard-attention decoders with the
reward "sequence" (the paper: the caption's log-likelihood) and "step" (each word's own
log-likelihood); validation canvases only; the result goes to sweep_reward.json.
"""

import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from attnkit.experiments.vision import _caption_run as run
from attnkit.experiments.vision._caption_config import CaptionConfig

torch.set_num_threads(1)
config = CaptionConfig(progress=False)
data = run.prepare(config, print)
far = time.perf_counter() + 10 ** 6
encoder, _ = run.train_encoder(config, data["items"], 0, far, print)
item_acc = run.item_accuracy(encoder, data["val_items"])
print(f"encoder val item accuracy {item_acc:.3f}", flush=True)
train_feats, grid = run.annotations(encoder, data["canvases"]["train"])
val_feats, _ = run.annotations(encoder, data["canvases"]["val"])
captions = torch.tensor(data["canvases"]["train"].tokens)
rows = []
for reward in ("step", "sequence"):
    cfg = replace(config, hard_reward=reward)
    model, info = run.train_decoder(cfg, "hard", train_feats, captions, 0, far, print)
    rows.append({"attention": "hard", "hard_reward": reward,
                 "entropy_weight": cfg.entropy_weight,
                 **run.evaluate(model, val_feats, data["canvases"]["val"], grid),
                 "epochs": info["epochs"]})
    print(rows[-1], flush=True)
Path(__file__).with_name("sweep_reward.json").write_text(json.dumps(
    {"encoder_val_item_accuracy": item_acc, "trials": rows}, indent=1) + "\n")
