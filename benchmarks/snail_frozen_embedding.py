"""Is SNAIL slow because of its sequence blocks or because its embedding learns slowly?

Trains a prototypical network for ``--steps`` updates (the ``attnkit snail`` defaults),
then SNAIL with that trained embedding CNN copied in and frozen (batch norm in eval mode),
so that only the TC/attention blocks and the classifier learn; and SNAIL from scratch for
comparison. Every run uses the experiment's own episodes, optimizer, schedule and
validation set; prints validation accuracy over training and writes JSON.

    python benchmarks/snail_frozen_embedding.py --steps 600 --out benchmarks/results/snail/diagnosis
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from attnkit.data.glyphs import Episodes, find_unifont, load_glyph_sets
from attnkit.experiments.snail import run as snail_run
from attnkit.experiments.snail.config import SnailRunConfig
from attnkit.train import TrainConfig, Trainer


class _Frozen(torch.nn.Module):
    """A trained embedding CNN, frozen: no gradients, batch norm on its running statistics."""

    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.inner = encoder.requires_grad_(False)
        self.out_dim = encoder.out_dim

    def train(self, mode: bool = True) -> _Frozen:
        super().train(mode)
        self.inner.eval()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.inner(images)


def _fit(model, config: SnailRunConfig, splits, lr: float, label: str) -> list[dict]:
    train = Episodes(splits["train"], ways=5, shots=1, queries=config.queries,
                     rotations=config.rotations, strength=config.strength, seed=config.seed)
    valid = Episodes(splits["valid"], ways=5, shots=1, queries=config.queries,
                     rotations=config.rotations, strength=config.strength, seed=1001)
    per = config.episodes_per_step
    curve: list[dict] = []
    step = [0]

    def batches(i, rank=0, world_size=1):
        step[0] = i + 1
        return train.batch(list(range(i * per, (i + 1) * per)))

    def validate(m):
        accuracy = sum(snail_run.evaluate(m, valid, config.valid_episodes)) / \
            config.valid_episodes
        curve.append({"step": step[0], "valid_accuracy": accuracy})
        print(f"{label} update {step[0]}: validation accuracy {accuracy:.3f}", flush=True)
        return {"valid_accuracy": accuracy}

    trainable = [p for p in model.parameters() if p.requires_grad]
    print(f"{label}: {sum(p.numel() for p in trainable):,} trainable parameters", flush=True)
    Trainer(model, TrainConfig(
        max_steps=config.steps, lr=lr, warmup_steps=min(config.warmup_steps, config.steps - 1),
        schedule="cosine", eval_every=max(1, config.steps // config.eval_points),
        seed=config.seed, log_every=config.steps, progress=False, amp="off", weight_decay=0.0,
        betas=(0.9, 0.999)), batches, snail_run._loss, eval_fn=validate).fit()
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="benchmarks/results/snail/diagnosis")
    args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps: must be at least 2")
    if not 0 < args.lr <= 1:
        parser.error("--lr: must be in (0, 1]")
    if args.threads < 1:
        parser.error("--threads: must be at least 1")
    torch.set_num_threads(args.threads)
    config = SnailRunConfig(steps=args.steps, lr=args.lr, progress=False)
    splits = load_glyph_sets(find_unifont(None))
    started = time.perf_counter()
    results: dict = {"steps": args.steps, "lr": args.lr, "threads": args.threads,
                     "torch": torch.__version__, "processor": platform.processor(),
                     "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    torch.manual_seed(config.seed)
    protonet = snail_run.build_model("protonet", 5, 1, config)
    results["protonet"] = _fit(protonet, config, splits, args.lr, "protonet")
    torch.manual_seed(config.seed)
    frozen = snail_run.build_model("snail", 5, 1, config)
    frozen.encoder = _Frozen(protonet.encoder)
    results["snail_on_frozen_protonet_embedding"] = _fit(frozen, config, splits, args.lr,
                                                         "snail, frozen protonet embedding")
    torch.manual_seed(config.seed)
    results["snail_from_scratch"] = _fit(snail_run.build_model("snail", 5, 1, config), config,
                                         splits, args.lr, "snail from scratch")
    results["wall_s"] = time.perf_counter() - started
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"frozen_embedding_{args.steps}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
