"""The sweep behind ``attnkit translate``'s defaults: validation BLEU at the default budget.

Every configuration is a set of overrides of :class:`TranslateConfig` (model width and
depth, batch tokens, learning rate, vocabulary size, label smoothing, dropout). Each is run
in two phases, so that the quality result does not depend on what else the machine is
doing while the sweep runs:

1. **speed** (needs free cores): train for ``--speed-seconds`` of wall clock and record the
   seconds per update on this machine (vocabulary and model size change it);
2. **quality** (any load): replay the budget as a number of updates, ``budget x (1 -
   EVAL_SHARE) / seconds per update`` (the default run spends about 5% of its budget on
   its timed validation passes and checkpoint), training with the ``linear`` decay laid
   over exactly those updates, then score greedy BLEU and loss on the whole validation
   split. The test split is never touched.

Results are written after every configuration (atomically), and a rerun skips the
configurations already done with the same budget, so a sweep can be stopped and resumed.

Usage::

    python benchmarks/translate_sweep.py --stage screen --minutes 5 --configs base lr2e-3
    python benchmarks/translate_sweep.py --stage final --minutes 13 --configs best1 best2

Writes ``<out>/<stage>.json`` and ``<out>/<stage>.md`` (default out:
``benchmarks/results/translate_sweep``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
EVAL_SHARE = 0.05  # share of the default run's budget spent on its timed evaluations

_BASE = {"vocab_size": 8000, "max_tokens": 3000, "width": 256, "layers": 3, "dropout": 0.1,
         "lr": 7e-4, "label_smoothing": 0.1, "warmup_steps": 100}

#: name -> overrides of the base (the defaults before the sweep)
CONFIGS: dict[str, dict] = {
    "base": {},
    "lr2e-3": {"lr": 2e-3},
    "v4k": {"lr": 2e-3, "vocab_size": 4000},
    "v4k-nodrop": {"lr": 2e-3, "vocab_size": 4000, "dropout": 0.0},
    "v4k-nodrop-ls0": {"lr": 2e-3, "vocab_size": 4000, "dropout": 0.0, "label_smoothing": 0.0},
    "v4k-nodrop-b1500": {"lr": 2e-3, "vocab_size": 4000, "dropout": 0.0, "max_tokens": 1500},
    "v4k-nodrop-w192": {"lr": 2e-3, "vocab_size": 4000, "dropout": 0.0, "width": 192},
    "v4k-nodrop-l2": {"lr": 2e-3, "vocab_size": 4000, "dropout": 0.0, "layers": 2},
    "v4k-nodrop-lr3e-3": {"lr": 3e-3, "vocab_size": 4000, "dropout": 0.0},
    "v2k-nodrop": {"lr": 2e-3, "vocab_size": 2000, "dropout": 0.0},
    # second round, around the best of the first (smaller batches)
    "v4k-nodrop-b1000": {"lr": 2e-3, "vocab_size": 4000, "dropout": 0.0, "max_tokens": 1000},
    "v4k-nodrop-b1500-lr1e-3": {"lr": 1e-3, "vocab_size": 4000, "dropout": 0.0,
                                "max_tokens": 1500},
    "v4k-nodrop-b1500-lr3e-3": {"lr": 3e-3, "vocab_size": 4000, "dropout": 0.0,
                                "max_tokens": 1500},
    "v4k-nodrop-b1500-ls0": {"lr": 2e-3, "vocab_size": 4000, "dropout": 0.0,
                             "max_tokens": 1500, "label_smoothing": 0.0},
    # third round, around the narrower model (the best of the first two rounds)
    "w192-b1500": {"lr": 2e-3, "vocab_size": 4000, "dropout": 0.0, "width": 192,
                   "max_tokens": 1500},
    "w192-b2000": {"lr": 2e-3, "vocab_size": 4000, "dropout": 0.0, "width": 192,
                   "max_tokens": 2000},
    "w192-lr3e-3": {"lr": 3e-3, "vocab_size": 4000, "dropout": 0.0, "width": 192},
    "w192-ls0": {"lr": 2e-3, "vocab_size": 4000, "dropout": 0.0, "width": 192,
                 "label_smoothing": 0.0},
    "w128": {"lr": 2e-3, "vocab_size": 4000, "dropout": 0.0, "width": 128},
}


def _machine() -> dict:
    import torch

    cpu = platform.processor() or "unknown"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True,
                                   check=False).stdout.splitlines():
            if line.startswith("Model name:"):
                cpu = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch_threads": torch.get_num_threads(), "python": platform.python_version()}


def _config(name: str, overrides: dict, scratch: Path, **run):
    from attnkit.experiments.translate.config import TranslateConfig

    settings = {**_BASE, **overrides, **run}
    return TranslateConfig(model="transformer", out=str(scratch / name), progress=False,
                           eval_minutes=0.0, eval_every=10**9, checkpoint_every=10**9,
                           **settings)


def _quiet(_: str) -> None:
    pass


def speed(name: str, overrides: dict, seconds: float, scratch: Path) -> dict:
    """Seconds per update over ``seconds`` of training (the first update included)."""
    from attnkit.experiments.translate.run import fit

    config = _config(f"{name}-speed", overrides, scratch, minutes=seconds / 60.0,
                     valid_bleu_limit=1)
    result = fit(config, log=_quiet)
    summary = result.summary
    shutil.rmtree(config.report_dir, ignore_errors=True)
    return {"speed_updates": summary["step"], "speed_elapsed_s": summary["elapsed"],
            "step_s": summary["elapsed"] / summary["step"],
            "tokens_per_s": summary["tokens"] / summary["elapsed"],
            "batches_per_epoch": len(result.batches), "vocab": result.tokenizer.vocab_size}


def quality(name: str, overrides: dict, updates: int, scratch: Path) -> dict:
    """Train exactly ``updates`` updates (linear decay over them); whole-valid greedy BLEU."""
    from attnkit.experiments.translate.model import num_parameters
    from attnkit.experiments.translate.run import fit, quality_curve

    config = _config(name, overrides, scratch, minutes=1e4, max_steps=updates,
                     valid_bleu_limit=10**6)
    started = time.perf_counter()
    result = fit(config, horizon="steps", log=_quiet)
    wall = time.perf_counter() - started
    shutil.rmtree(config.report_dir, ignore_errors=True)
    final = quality_curve(result.summary["metrics"])[-1]
    return {"updates": result.summary["step"], "valid_bleu": final["valid_bleu"],
            "valid_loss": final["valid_loss"], "train_loss": result.summary["loss"],
            "epochs": result.summary["step"] / len(result.batches),
            "parameters": num_parameters(result.model), "quality_wall_s": wall,
            "settings": {**_BASE, **overrides}}


def _write(out: Path, stage: str, payload: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rows = sorted(payload["rows"].items(), key=lambda kv: -kv[1].get("valid_bleu", -1))
    lines = [f"# translate sweep, stage `{stage}`: {payload['minutes']:g}-minute budget",
             "", f"Machine: {payload['machine']}", "",
             f"Command: `{payload['command']}`", "",
             "Validation BLEU: greedy, all valid pairs, after the updates the budget allows "
             "at the measured speed (see the script's docstring). Sorted best first.", "",
             "| config | overrides | s/update | tok/s | updates | epochs | valid BLEU | "
             "valid loss |", "|---|---|---|---|---|---|---|---|"]
    for name, row in rows:
        overrides = ", ".join(f"{k}={v}" for k, v in CONFIGS.get(name, {}).items()) or "-"
        if "valid_bleu" not in row:
            lines.append(f"| {name} | {overrides} | {row['step_s']:.3f} | "
                         f"{row['tokens_per_s']:.0f} | (pending) | | | |")
            continue
        lines.append(f"| {name} | {overrides} | {row['step_s']:.3f} | "
                     f"{row['tokens_per_s']:.0f} | {row['updates']} | {row['epochs']:.2f} | "
                     f"{row['valid_bleu']:.2f} | {row['valid_loss']:.3f} |")
    _write_json(out / f"{stage}.json", payload)
    _write_text(out / f"{stage}.md", "\n".join(lines) + "\n")


def _write_json(target: Path, payload: dict) -> None:
    _write_text(target, json.dumps(payload, indent=2))


def _write_text(target: Path, text: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=target.parent, delete=False,
                                     suffix=".tmp") as handle:
        handle.write(text)
    os.replace(handle.name, target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stage", required=True, help="results file name (screen, final...)")
    parser.add_argument("--minutes", type=float, required=True, help="the budget replayed")
    parser.add_argument("--configs", nargs="+", required=True, choices=sorted(CONFIGS))
    parser.add_argument("--phase", choices=("both", "speed", "quality"), default="both",
                        help="speed needs free cores; quality runs under any load")
    parser.add_argument("--speed-seconds", type=float, default=75.0)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "translate_sweep")
    args = parser.parse_args(argv)
    if not 0 < args.minutes <= 600:
        parser.error(f"--minutes: expected a budget in (0, 600], got {args.minutes}")
    if args.speed_seconds < 10:
        parser.error(f"--speed-seconds: expected at least 10, got {args.speed_seconds}")
    sys.path.insert(0, str(HERE.parent / "src"))
    results = args.out / f"{args.stage}.json"
    payload = json.loads(results.read_text()) if results.exists() else {}
    if payload.get("minutes", args.minutes) != args.minutes:
        parser.error(f"--minutes: {results} holds a {payload['minutes']}-minute sweep; "
                     f"use another --stage")
    payload.update(minutes=args.minutes, machine=_machine(), command=" ".join(
        ["python", "benchmarks/translate_sweep.py", *(argv or sys.argv[1:])]))
    payload.setdefault("rows", {})
    speeds_file = args.out / "speed.json"  # seconds per update do not depend on the budget
    speeds = json.loads(speeds_file.read_text()) if speeds_file.exists() else {"rows": {}}
    scratch = Path(tempfile.mkdtemp(prefix="attnkit-sweep-"))
    try:
        for name in args.configs:
            row = payload["rows"].setdefault(name, {})
            if args.phase in ("both", "speed") and name not in speeds["rows"]:
                speeds["rows"][name] = speed(name, CONFIGS[name], args.speed_seconds, scratch)
                speeds.update(machine=_machine(), speed_seconds=args.speed_seconds)
                _write_json(speeds_file, speeds)
                print(f"{name}: {speeds['rows'][name]['step_s']:.3f} s/update", flush=True)
            row.update(speeds["rows"].get(name, {}))
            _write(args.out, args.stage, payload)
        for name in args.configs:
            row = payload["rows"][name]
            if args.phase in ("both", "quality") and "valid_bleu" not in row:
                if "step_s" not in row:
                    print(f"{name}: no speed measured yet (run --phase speed on free cores)")
                    continue
                budget = args.minutes * 60.0 * (1.0 - EVAL_SHARE)
                row.update(quality(name, CONFIGS[name], max(math.floor(budget / row["step_s"]),
                                                           1), scratch))
                print(f"{name}: {row['updates']} updates, valid BLEU {row['valid_bleu']:.2f}, "
                      f"loss {row['valid_loss']:.3f}", flush=True)
                _write(args.out, args.stage, payload)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
