"""Training throughput of the translate job's Transformer, one change at a time.

Each variant is a set of choices for one training step of ``attnkit translate``: the
vocabulary size of the joint BPE, dropout, the AdamW implementation (PyTorch's per-parameter
loop or its fused CPU kernel) and ``torch.compile`` of the model. Every variant trains the
translate job's model (``build_model("transformer", ...)``, width 256, 3+3 layers) on the
first batches of the real corpus in epoch order (``TranslationBatches(max_tokens=3000,
max_len=96, seed=0)``), with the job's loss (label smoothing 0.1), clipping and learning
rate, for ``--warmup`` untimed and ``--steps`` timed updates.

Each measurement runs in a fresh subprocess; the variants alternate within every round (the
order reversed every other round), so a load that comes and goes hits all alike; the report
gives medians over rounds. Vocabulary sizes tokenize the same sentences into different
numbers of tokens, so the table gives sentence pairs per second beside target tokens per
second: pairs/s is the figure that compares across vocabularies.

Usage::

    python benchmarks/translate_throughput.py --rounds 3

Writes ``<out>/translate_throughput.json`` and ``.md`` (default out:
``benchmarks/results/translate_throughput``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: name -> (vocab_size, dropout, fused AdamW, torch.compile)
VARIANTS: dict[str, dict] = {
    "before": {"vocab": 8000, "dropout": 0.1, "fused": False, "compile": False},
    "fused-adamw": {"vocab": 8000, "dropout": 0.1, "fused": True, "compile": False},
    "fused+no-dropout": {"vocab": 8000, "dropout": 0.0, "fused": True, "compile": False},
    "fused+no-dropout+v4000": {"vocab": 4000, "dropout": 0.0, "fused": True, "compile": False},
    "fused+no-dropout+v4000+compile": {"vocab": 4000, "dropout": 0.0, "fused": True,
                                       "compile": True},
}


def _machine(threads: int) -> dict:
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
            "torch_threads": threads, "python": platform.python_version()}


def _worker(spec: dict, warmup: int, steps: int) -> dict:
    import torch

    from attnkit.data import TranslationBatches, load_corpus
    from attnkit.experiments.translate.model import build_model
    from attnkit.train import TrainConfig, seq2seq_loss_fn
    from attnkit.train.trainer import build_optimizer

    corpus = load_corpus("fr")
    tokenizer = corpus.tokenizer(vocab_size=spec["vocab"])
    batches = TranslationBatches(corpus.train, tokenizer, max_tokens=3000, max_len=96, seed=0)
    torch.manual_seed(0)
    model, _ = build_model("transformer", tokenizer.vocab_size, "small",
                           dropout=spec["dropout"])
    optimizer = build_optimizer(model, TrainConfig(lr=7e-4, fused_optimizer=spec["fused"]))
    loss_fn = seq2seq_loss_fn(pad_id=0, label_smoothing=0.1)
    forward = torch.compile(model, dynamic=True) if spec["compile"] else model
    model.train()

    def step(batch: dict) -> tuple[int, int]:
        optimizer.zero_grad(set_to_none=True)
        loss, count = loss_fn(forward, batch)
        (loss / count).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return int(count), int(batch["src"].shape[0])

    started = time.perf_counter()
    for i in range(warmup):
        step(batches(i))
    warmup_s = time.perf_counter() - started
    tokens = pairs = 0
    started = time.perf_counter()
    for i in range(warmup, warmup + steps):
        counted, rows = step(batches(i))
        tokens, pairs = tokens + counted, pairs + rows
    elapsed = time.perf_counter() - started
    return {"tokens_per_s": tokens / elapsed, "pairs_per_s": pairs / elapsed,
            "step_ms": 1e3 * elapsed / steps, "warmup_s": warmup_s,
            "tokens_per_pair": tokens / pairs}


def _measure(name: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", name,
               "--warmup", str(args.warmup), "--steps", str(args.steps)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"worker {name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _write(out: Path, payload: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    base = None
    for name, runs in payload["runs"].items():
        tok = statistics.median(r["tokens_per_s"] for r in runs)
        pairs = statistics.median(r["pairs_per_s"] for r in runs)
        base = base or pairs
        rows.append({"variant": name, **VARIANTS[name], "tokens_per_s": tok,
                     "pairs_per_s": pairs, "speedup_pairs": pairs / base,
                     "step_ms": statistics.median(r["step_ms"] for r in runs),
                     "warmup_s": statistics.median(r["warmup_s"] for r in runs),
                     "tokens_per_pair": runs[0]["tokens_per_pair"]})
    payload["rows"] = rows
    m = payload["machine"]
    lines = ["# Translate Transformer training throughput, one change at a time", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} (CPU capability "
             f"{m['cpu_capability']}), {m['torch_threads']} threads, float32.", "",
             f"Command: `{payload['command']}`", "",
             f"Medians over {payload['rounds']} rounds of {payload['steps']} timed updates "
             f"after {payload['warmup']} untimed ones (the warm-up column: their seconds, "
             "compilation included).", "",
             "| variant | vocab | dropout | fused AdamW | compile | target tok/s | pairs/s | "
             "x before (pairs/s) | ms/update | warm-up s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['vocab']} | {r['dropout']} | {r['fused']} | "
                     f"{r['compile']} | {r['tokens_per_s']:.0f} | {r['pairs_per_s']:.1f} | "
                     f"{r['speedup_pairs']:.2f} | {r['step_ms']:.0f} | {r['warmup_s']:.1f} |")
    for suffix, text in ((".json", json.dumps(payload, indent=2)), (".md", "\n".join(lines))):
        with tempfile.NamedTemporaryFile("w", dir=out, delete=False, suffix=".tmp") as handle:
            handle.write(text + "\n")
        os.replace(handle.name, out / f"translate_throughput{suffix}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "translate_throughput")
    parser.add_argument("--worker", choices=list(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("rounds", "warmup", "steps", "threads"):
        if getattr(args, name) < (0 if name == "warmup" else 1):
            parser.error(f"--{name}: expected a positive count, got {getattr(args, name)}")
    sys.path.insert(0, str(HERE.parent / "src"))
    if args.worker:
        import torch

        torch.set_num_threads(args.threads)
        print(json.dumps(_worker(VARIANTS[args.worker], args.warmup, args.steps)))
        return 0
    payload = {"machine": _machine(args.threads), "rounds": args.rounds, "steps": args.steps,
               "warmup": args.warmup, "command": " ".join(
                   ["python", "benchmarks/translate_throughput.py", *(argv or sys.argv[1:])]),
               "runs": {name: [] for name in args.variants}}
    for round_index in range(args.rounds):
        order = args.variants if round_index % 2 == 0 else args.variants[::-1]
        for name in order:
            payload["runs"][name].append(_measure(name, args))
            print(f"round {round_index + 1} {name}: "
                  f"{payload['runs'][name][-1]['pairs_per_s']:.1f} pairs/s", flush=True)
        _write(args.out, payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
