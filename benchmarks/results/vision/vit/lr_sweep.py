"""Validation check of the ViT learning rate (seed 0, a shortened run).

Run from the repository root::

    OMP_NUM_THREADS=1 python benchmarks/results/vision/vit/lr_sweep.py

AdamW peak learning rate in {1e-3, 2e-3, 4e-3}, 10,000 training images, 2 epochs, the
default model; validation accuracy (5,000 images of the train part held out, never the
test split) goes to lr_sweep.json beside this file.
"""

import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from attnkit.data.images import load_fashion_mnist
from attnkit.experiments.vision import _vit_run as run
from attnkit.experiments.vision._vit_config import VitRunConfig

torch.set_num_threads(1)
base = VitRunConfig(train_images=10000, epochs=2, progress=False)
train = load_fashion_mnist("train").subset(base.train_images)
val = load_fashion_mnist("val")
data = {"train": (run._pixels(train.images), torch.tensor(train.labels)),
        "val": (run._pixels(val.images), torch.tensor(val.labels))}
rows = []
for lr in (1e-3, 2e-3, 4e-3):
    config = replace(base, lr=lr)
    _, info = run.train_one(config, 0, data, time.perf_counter() + 10 ** 6, print)
    rows.append({"lr": lr, "val_accuracy": info["curve"][-1]["val_accuracy"],
                 "curve": info["curve"]})
    print(rows[-1], flush=True)
Path(__file__).with_name("lr_sweep.json").write_text(json.dumps(
    {"train_images": base.train_images, "epochs": base.epochs, "trials": rows}, indent=1) + "\n")
