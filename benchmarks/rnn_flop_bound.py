"""How fast can the translate job's recurrent models train on this CPU at best? A bound
from their matrix products.

A training step of ``rnn-none``, ``rnn-attention`` or ``rnn-luong`` is dominated by matrix
products (the GRU gates, the attention, the vocabulary projection, each forward and
backward). Their floating-point operations are fixed by the model and the batch, not by
how the code arranges them, so no rewrite of the recurrence can train faster than

    pairs/s <= (best float32 matrix-product rate of the machine) / (matmul FLOPs per pair)

even if every other operation (gates, softmax, dropout, optimizer, copies) cost nothing.
This script measures both sides on the same batches the throughput benchmark
(``rnn_throughput.py --job``) times and sets the bound beside the goal of twice the
pairs/s of the issue's commit:

* FLOPs per sentence pair: :class:`torch.utils.flop_counter.FlopCounterMode` over a real
  forward and backward pass of each model as training runs it (``mm``, ``addmm``, ``bmm``,
  ``baddbmm`` and the products inside ``aten::gru``), on the timed batches of
  ``rnn_throughput.py --job``.
* The machine's float32 matrix-product rate: the best of several shapes, the step's own
  and large square ones, median of repeated calls with the benchmark's thread count.
  Taking the best makes the bound generous.

Usage::

    python benchmarks/rnn_flop_bound.py [--threads 2] [--job-results PATH]

Writes ``<out>/rnn_flop_bound.{json,md}``. Time it with nothing else running.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import rnn_throughput  # noqa: E402  (the benchmark's batches, models and machine facts)

DEFAULT_JOB = HERE / "results" / "rnn_throughput" / "rnn_throughput_job.json"


def _matmul_rates(threads: int, repeats: int) -> list[dict]:
    """Float32 GFLOP/s of ``a @ b`` for the step's shapes and large square ones."""
    import torch

    torch.set_num_threads(threads)
    shapes = [  # (m, k, n): rows x inner x columns
        (3000, 384, 4000), (4000, 3000, 384), (3000, 4000, 384),  # vocabulary projection
        (180, 384, 1152), (3000, 256, 1152), (3000, 768, 1152),  # GRU gates
        (1024, 1024, 1024), (2048, 2048, 2048), (4096, 4096, 4096),
    ]
    rows = []
    for m, k, n in shapes:
        a, b = torch.randn(m, k), torch.randn(k, n)
        out = torch.empty(m, n)
        for _ in range(2):
            torch.mm(a, b, out=out)
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            torch.mm(a, b, out=out)
            times.append(time.perf_counter() - started)
        seconds = statistics.median(times)
        rows.append({"shape": [m, k, n], "ms": 1e3 * seconds,
                     "gflops": 2 * m * k * n / seconds / 1e9})
    return rows


def _model_flops(batches: list[dict], vocab: int) -> dict:
    """Matrix-product FLOPs of one forward and backward pass per model, over ``batches``."""
    import torch
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    from attnkit.models import RNNSeq2SeqConfig, build_rnn_seq2seq, rnn_seq2seq

    # The counter tracks modules with global forward hooks, which would send the model to
    # its step-by-step path (the fused paths step aside for hooks); count the path that
    # training runs.
    rnn_seq2seq._observed = lambda module: False
    result = {}
    for name, attention in rnn_throughput.MODELS.items():
        torch.manual_seed(0)
        config = RNNSeq2SeqConfig(src_vocab_size=vocab, tgt_vocab_size=vocab, embed_dim=256,
                                  hidden_dim=384, num_layers=1, cell="gru", bidirectional=True,
                                  dropout=0.1)
        model = build_rnn_seq2seq(config, attention)
        flops = pairs = 0
        for batch in batches:
            with FlopCounterMode(display=False) as counter:
                logits = model(batch["src"], batch["src_lengths"], batch["tgt_in"])
                loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                       batch["tgt_out"].reshape(-1), ignore_index=0,
                                       label_smoothing=0.1)
                loss.backward()
            flops += counter.get_total_flops()
            pairs += int(batch["src"].shape[0])
            model.zero_grad(set_to_none=True)
        result[name] = {"flops": flops, "pairs": pairs, "mflop_per_pair": flops / pairs / 1e6}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=5,
                        help="batches skipped, as the throughput benchmark's warm-up")
    parser.add_argument("--steps", type=int, default=20, help="batches counted")
    parser.add_argument("--vocab", type=int, default=4000, help="the job's vocabulary")
    parser.add_argument("--lang", default="fr")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--job-results", default=str(DEFAULT_JOB),
                        help="rnn_throughput_job.json with the measured pairs/s")
    parser.add_argument("--out", default=str(HERE / "results" / "rnn_throughput"))
    args = parser.parse_args()
    for name in ("threads", "repeats", "steps", "vocab"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be a positive integer")
    if args.warmup < 0:
        parser.error("--warmup must be >= 0")
    job_path = Path(args.job_results)
    if not job_path.is_file():
        parser.error(f"--job-results: no file {job_path}")
    job = json.loads(job_path.read_text())
    out = Path(args.out)
    try:  # before the minutes of measuring, not after them
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out):
            pass
    except OSError as error:
        parser.error(f"--out: cannot write to {out} ({error.strerror})")
    measured = {row["model"]: row for row in job["rows"]}

    import torch

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "batches.pt"
        data = rnn_throughput._prepare_batches(path, args.warmup + args.steps, args.lang,
                                               args.data_dir, args.vocab)
        batches = torch.load(path, weights_only=True)["batches"][args.warmup:]
    torch.set_num_threads(args.threads)
    flops = _model_flops(batches, data["vocab_size"])
    rates = _matmul_rates(args.threads, args.repeats)
    best = max(rates, key=lambda r: r["gflops"])
    rows = []
    for name, counted in flops.items():
        row = measured.get(name, {})
        cap = best["gflops"] * 1e3 / counted["mflop_per_pair"]
        goal = 2 * row["baseline_pairs_per_s"] if row else None
        now = row.get("candidate_pairs_per_s")
        rows.append({"model": name, **counted, "bound_pairs_per_s": cap,
                     "measured_pairs_per_s": now, "goal_pairs_per_s": goal,
                     "achieved_gflops": now * counted["mflop_per_pair"] / 1e3 if now else None,
                     "goal_reachable_in_principle": (cap >= goal) if goal else None,
                     "other_work_budget_ms_per_pair": (1e3 / goal - 1e3 / cap) if goal else None})
    machine = rnn_throughput._machine(args.threads)
    command = "python benchmarks/rnn_flop_bound.py " + " ".join(sys.argv[1:])
    payload = {"machine": machine, "command": command, "data": data, "matmul_rates": rates,
               "best_rate": best, "rows": rows, "job_results": str(job_path)}
    from attnkit._io import atomic_write_text

    atomic_write_text(out / "rnn_flop_bound.json", json.dumps(payload, indent=2) + "\n")
    lines = [
        "# The recurrent models' throughput bound from their matrix products",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']} (CPU "
        f"capability {machine['cpu_capability']}), {machine['torch_threads']} torch threads, "
        "float32.",
        "",
        f"Command: `{command}`. Measured pairs/s and the goal (twice the issue commit's "
        f"pairs/s) from `{job_path.name}` (`{job['command']}`).",
        "",
        "Best float32 matrix-product rate over the shapes tried: "
        f"**{best['gflops']:.0f} GFLOP/s** ({' x '.join(map(str, best['shape']))}).",
        "",
        "| shape (m x k x n) | ms | GFLOP/s |",
        "|---|---:|---:|",
        *[f"| {' x '.join(map(str, r['shape']))} | {r['ms']:.2f} | {r['gflops']:.0f} |"
          for r in rates],
        "",
        f"FLOPs counted over {args.steps} real batches (vocabulary {data['vocab_size']}, "
        f"{data['rows_per_batch_mean']:.0f} pairs per batch on average), forward and backward.",
        "",
        "| model | matmul MFLOP per pair | bound: pairs/s if only matmuls ran, at the best "
        "rate | measured pairs/s | goal pairs/s (2x) | reachable in principle | achieved "
        "GFLOP/s |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        goal = f"{r['goal_pairs_per_s']:.0f}" if r["goal_pairs_per_s"] else "-"
        now = f"{r['measured_pairs_per_s']:.0f}" if r["measured_pairs_per_s"] else "-"
        ach = f"{r['achieved_gflops']:.0f}" if r["achieved_gflops"] else "-"
        verdict = ("-" if r["goal_reachable_in_principle"] is None else
                   "yes" if r["goal_reachable_in_principle"] else "**no**")
        lines.append(f"| {r['model']} | {r['mflop_per_pair']:.0f} | "
                     f"{r['bound_pairs_per_s']:.0f} | {now} | {goal} | {verdict} | {ach} |")
    atomic_write_text(out / "rnn_flop_bound.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
