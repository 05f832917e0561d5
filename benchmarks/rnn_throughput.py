"""Training throughput (target tokens/s) of the translate experiment's recurrent models,
two source trees side by side.

Builds the ``small`` recurrent models exactly as ``attnkit.experiments.translate.model``
did when this benchmark was written (vocabulary 8000, embeddings 256, hidden 384,
bidirectional GRU encoder, one layer, dropout 0.1) and trains each on the same real
batches of the gettext en-fr corpus (``TranslationBatches(max_tokens=3000, max_len=96)``)
with AdamW (lr 1e-3), the tree's own ``seq2seq_loss_fn`` (label smoothing 0.1) and gradient
clipping at 1, as the translate job does. Throughput is target (non-pad) tokens per
second of the timed steps, after warm-up steps.

Each measurement runs in a fresh subprocess whose ``PYTHONPATH`` selects the source tree
(``--baseline-src`` or ``--candidate-src``); the two trees alternate (A B, then B A, ...)
within every round, so a load that comes and goes on a shared machine hits both alike,
and the report gives medians over rounds. The batches are encoded once, by the parent
process, and handed to every subprocess, so both trees train on identical inputs.

Usage (the baseline is a git worktree of the commit to compare against)::

    git worktree add /tmp/rnn_base 9e72299
    python benchmarks/rnn_throughput.py --baseline-src /tmp/rnn_base/src --rounds 5

Writes ``<out>/rnn_throughput.json`` and ``<out>/rnn_throughput.md``.

``--job`` compares the two trees as each one's translate job trains its recurrent models
instead: the baseline with its tokenizer (``--baseline-vocab``, 8000 before the sweep) and
PyTorch's per-tensor AdamW, the candidate with its tokenizer (``--candidate-vocab``, 4000
now), fused AdamW (``TrainConfig.fused_optimizer``) and, where the tree has
``attnkit/train/allocator.py``, the Trainer's reuse of freed memory
(``TrainConfig.reuse_memory``). A smaller vocabulary cuts every
sentence into more tokens, so tokens/s no longer compare; the figure is sentence pairs
per second, the batches of each tree drawn the same way (max_tokens 3000, max_len 96,
seed 0) from the same training split. Writes ``<out>/rnn_throughput_job.{json,md}``.

``--job --interleave`` keeps one worker per tree alive and lets them take turns every
``--block`` steps (A B, B A, ...) through ``--rounds`` cycles of ``--steps`` steps, instead
of one fresh process per tree and round: on a virtual machine whose speed drifts by tens
of percent over minutes, runs a minute apart disagree by that much, turns a few seconds
apart do not. With ``--epoch`` a cycle is one whole epoch of each tree instead: the two
tokenizations cut the same sentences into different batches, and over the first few dozen
batches the two trees' mean pairs per batch differ from the epoch's by up to 6% each way,
which moves the ratio as much. Writes ``<out>/rnn_throughput_interleaved.{json,md}``.
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

MODELS = {"rnn-attention": "bahdanau", "rnn-luong": "luong-general", "rnn-none": "none"}
HERE = Path(__file__).resolve().parent
DEFAULT_CANDIDATE = HERE.parent / "src"


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


def _prepare_batches(path: Path, count: int | None, lang: str, data_dir: str | None,
                     vocab_size: int = 8000) -> dict:
    """Encode ``count`` training batches (the first of epoch 0's order; None: all of epoch
    0) into ``path``."""
    import torch

    from attnkit.data import TranslationBatches, load_corpus

    corpus = load_corpus(lang, data_dir)
    try:
        tokenizer = corpus.tokenizer(vocab_size=vocab_size, train=False)
    except Exception:  # noqa: BLE001 - no cached tokenizer: train one, as the job would
        tokenizer = corpus.tokenizer(vocab_size=vocab_size)
    batches = TranslationBatches(corpus.train, tokenizer, max_tokens=3000, max_len=96, seed=0)
    count = len(batches) if count is None else count
    chosen = [batches(step=i) for i in range(count)]
    chosen = [{k: v for k, v in b.items() if k in ("src", "src_lengths", "tgt_in", "tgt_out")}
              for b in chosen]
    torch.save({"vocab_size": tokenizer.vocab_size, "batches": chosen}, path)
    target_tokens = [int((b["tgt_out"] != 0).sum()) for b in chosen]
    return {"batches": count, "vocab_size": tokenizer.vocab_size,
            "pairs": sum(int(b["src"].shape[0]) for b in chosen),
            "target_tokens_per_batch_mean": statistics.mean(target_tokens),
            "rows_per_batch_mean": statistics.mean(int(b["src"].shape[0]) for b in chosen)}


def _worker(args: argparse.Namespace) -> None:
    """One measurement: build the model from the source tree on sys.path, train, print JSON."""
    import torch
    import torch.nn.functional as F

    import attnkit
    from attnkit.models import RNNSeq2SeqConfig, build_rnn_seq2seq

    torch.set_num_threads(args.threads)
    if args.reuse_memory:  # as the candidate's Trainer does on a CPU
        from attnkit.train.allocator import keep_freed_memory

        keep_freed_memory()
    data = torch.load(args.batches, weights_only=True)
    batches = data["batches"]
    vocab = data["vocab_size"]
    torch.manual_seed(0)
    config = RNNSeq2SeqConfig(src_vocab_size=vocab, tgt_vocab_size=vocab, embed_dim=256,
                              hidden_dim=384, num_layers=1, cell="gru", bidirectional=True,
                              dropout=0.1)
    model = build_rnn_seq2seq(config, MODELS[args.model])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3,
                                  **({"fused": True} if args.fused else {}))

    def loss_of(batch: dict, smoothing: float) -> tuple[torch.Tensor, int]:
        logits = model(batch["src"], batch["src_lengths"], batch["tgt_in"])  # (B, T, V)
        targets = batch["tgt_out"]
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                               ignore_index=0, label_smoothing=smoothing, reduction="sum")
        return loss, int((targets != 0).sum())

    # Same initial weights in both trees: the eval-mode loss of batch 0 must agree.
    model.eval()
    with torch.no_grad():
        loss, count = loss_of(batches[0], 0.0)
        initial_loss = float(loss) / count
    model.train()

    from attnkit.train import seq2seq_loss_fn

    job_loss = seq2seq_loss_fn(pad_id=0, label_smoothing=0.1)  # the tree's, as its job trains

    def step(batch: dict) -> int:
        optimizer.zero_grad(set_to_none=True)
        loss, count = job_loss(model, batch)
        (loss / count).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return count

    for i in range(args.warmup):
        step(batches[i % len(batches)])
    if args.serve:  # --interleave: run the blocks of steps the parent asks for, one by one
        print(json.dumps({"attnkit": str(Path(attnkit.__file__).parent),
                          "initial_loss": initial_loss}), flush=True)
        for line in sys.stdin:
            start, count = (int(field) for field in line.split())
            tokens = pairs = 0
            started = time.perf_counter()
            for i in range(start, start + count):
                tokens += step(batches[i % len(batches)])
                pairs += int(batches[i % len(batches)]["src"].shape[0])
            print(json.dumps({"tokens": tokens, "pairs": pairs,
                              "seconds": time.perf_counter() - started}), flush=True)
        return
    tokens = pairs = 0
    started = time.perf_counter()
    for i in range(args.warmup, args.warmup + args.steps):
        tokens += step(batches[i % len(batches)])
        pairs += int(batches[i % len(batches)]["src"].shape[0])
    elapsed = time.perf_counter() - started
    result = {"attnkit": str(Path(attnkit.__file__).parent), "model": args.model,
              "tokens": tokens, "seconds": elapsed, "tokens_per_s": tokens / elapsed,
              "pairs": pairs, "pairs_per_s": pairs / elapsed,
              "step_ms": 1e3 * elapsed / args.steps, "initial_loss": initial_loss}
    if args.breakdown:
        result.update(_breakdown_times(model, step, batches[args.warmup:args.warmup + args.steps]))
    print(json.dumps(result))


def _breakdown_times(model, step, batches: list) -> dict:
    """Training steps interleaved, batch by batch, with the part no arrangement of the
    recurrence can remove: the vocabulary projection ``W_s`` and the loss, forward and
    backward, on random ``(B T, H)`` inputs for the same targets. Interleaving exposes
    both to the same load, so their ratio holds on a busy machine."""
    import torch
    import torch.nn.functional as F

    step_s = output_s = 0.0
    for batch in batches:
        started = time.perf_counter()
        step(batch)
        step_s += time.perf_counter() - started
        targets = batch["tgt_out"].reshape(-1)
        hidden = torch.randn(targets.shape[0], model.generator.in_features, requires_grad=True)
        started = time.perf_counter()
        loss = F.cross_entropy(model.generator(hidden), targets, ignore_index=0,
                               label_smoothing=0.1, reduction="sum")
        loss.backward()
        output_s += time.perf_counter() - started
    model.zero_grad(set_to_none=True)
    return {"interleaved_step_ms": 1e3 * step_s / len(batches),
            "output_layer_ms": 1e3 * output_s / len(batches)}


def _worker_command(src: str, model: str, args: argparse.Namespace, batches: Path,
                    breakdown: bool = False, fused: bool = False,
                    serve: bool = False) -> tuple[list[str], dict]:
    env = {**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": str(args.threads)}
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", "--model", model,
               "--batches", str(batches), "--threads", str(args.threads),
               "--warmup", str(args.warmup), "--steps", str(args.steps)]
    command += ["--breakdown"] if breakdown else []
    command += ["--fused"] if fused else []
    command += ["--serve"] if serve else []
    if fused and (Path(src) / "attnkit" / "train" / "allocator.py").is_file():
        command += ["--reuse-memory"]  # the tree's Trainer keeps freed memory on a CPU
    return command, env


def _check_source(result: dict, src: str) -> None:
    if not result["attnkit"].startswith(str(Path(src).resolve())):
        raise SystemExit(f"worker imported attnkit from {result['attnkit']}, not from {src}")


def _measure(src: str, model: str, args: argparse.Namespace, batches: Path,
             breakdown: bool = False, fused: bool = False) -> dict:
    command, env = _worker_command(src, model, args, batches, breakdown, fused)
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"worker failed ({src}, {model}):\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    _check_source(result, src)
    return result


def _report(results: dict, out: Path, command: str) -> None:
    rows = []
    for model, runs in results["runs"].items():
        base = statistics.median(r["tokens_per_s"] for r in runs["baseline"])
        cand = statistics.median(r["tokens_per_s"] for r in runs["candidate"])
        ratios = [c["tokens_per_s"] / b["tokens_per_s"]
                  for b, c in zip(runs["baseline"], runs["candidate"], strict=True)]
        rows.append({"model": model, "baseline_tokens_per_s": base,
                     "candidate_tokens_per_s": cand, "speedup_of_medians": cand / base,
                     "speedup_per_round_median": statistics.median(ratios),
                     "speedup_per_round_min": min(ratios), "speedup_per_round_max": max(ratios),
                     "initial_loss_baseline": runs["baseline"][0]["initial_loss"],
                     "initial_loss_candidate": runs["candidate"][0]["initial_loss"]})
    results["rows"] = rows
    out.mkdir(parents=True, exist_ok=True)
    _write_atomic(out / "rnn_throughput.json", json.dumps(results, indent=2) + "\n")
    m, s = results["machine"], results["settings"]
    lines = [
        "# RNN seq2seq training throughput, before and after",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} (CPU capability "
        f"{m['cpu_capability']}), {m['torch_threads']} torch threads, float32.",
        "",
        f"Command: `{command}`",
        "",
        f"Each figure is the median over {s['rounds']} rounds of target (non-pad) tokens/s over "
        f"{s['steps']} training steps after {s['warmup']} warm-up steps (AdamW, label smoothing "
        f"0.1, clipping 1.0), each run in a fresh process; baseline "
        f"(`{s['baseline_label']}`) and candidate (`{s['candidate_label']}`) alternate within "
        f"every round on identical batches ({s['data']['batches']} real gettext en-fr batches, "
        f"max_tokens 3000, max_len 96, mean {s['data']['rows_per_batch_mean']:.0f} rows and "
        f"{s['data']['target_tokens_per_batch_mean']:.0f} target tokens per batch). Models: "
        "the translate experiment's `small` RNNs (vocabulary "
        f"{s['data']['vocab_size']}, embeddings 256, hidden 384, bidirectional GRU, 1 layer, "
        "dropout 0.1).",
        "",
        "The machine is shared: other jobs may have run on its cores during the measurement. "
        "The alternation exposes both trees to the same load; the per-round ratio's range "
        "shows how much it moved.",
        "",
        "| model | baseline tokens/s | candidate tokens/s | speedup (medians) | per-round "
        "speedup median [min, max] | eval loss at init, baseline / candidate |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['baseline_tokens_per_s']:.0f} | "
            f"{r['candidate_tokens_per_s']:.0f} | {r['speedup_of_medians']:.2f}x | "
            f"{r['speedup_per_round_median']:.2f}x [{r['speedup_per_round_min']:.2f}, "
            f"{r['speedup_per_round_max']:.2f}] | {r['initial_loss_baseline']:.5f} / "
            f"{r['initial_loss_candidate']:.5f} |")
    _write_atomic(out / "rnn_throughput.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


def _breakdown(args: argparse.Namespace, batches: Path, data: dict, command: str) -> None:
    rows = []
    for model in args.models:
        shares: dict = {"baseline": [], "candidate": []}
        for round_ in range(args.rounds):
            trees = [("baseline", args.baseline_src), ("candidate", args.candidate_src)]
            for label, src in trees if round_ % 2 == 0 else trees[::-1]:
                result = _measure(src, model, args, batches, breakdown=True)
                shares[label].append(result["output_layer_ms"] / result["interleaved_step_ms"])
        base, cand = statistics.median(shares["baseline"]), statistics.median(shares["candidate"])
        # If everything but W_s and the loss cost nothing, the step would be this much faster:
        rows.append({"model": model, "rounds": args.rounds, "baseline_share": base,
                     "candidate_share": cand, "bound_speedup": 1.0 / base,
                     "shares": shares})
        print(rows[-1], flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    machine = _machine(args.threads)
    _write_atomic(out / "rnn_throughput_breakdown.json", json.dumps(
        {"machine": machine, "command": command, "data": data, "rows": rows}, indent=2) + "\n")
    lines = [
        "# Where an RNN training step goes: the vocabulary projection and the loss",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']} (CPU "
        f"capability {machine['cpu_capability']}), {machine['torch_threads']} torch threads, "
        "float32, on a shared machine (other jobs may have run meanwhile).",
        "",
        f"Command: `{command}`",
        "",
        f"Median over {args.rounds} runs per model and tree (fresh processes, trees "
        "alternating). In each run the timed training steps are interleaved batch by batch "
        "with the *output layer* alone: `W_s` (384 -> 8000) and the label-smoothed "
        "cross-entropy, forward and backward, on (B T, 384) inputs for the same targets. "
        "Its share of the step is a ratio measured under the same load. No arrangement of "
        "the recurrence removes that part, so *bound* = 1 / (its share of the baseline "
        "step) is the most any change to the rest of the model could give.",
        "",
        "| model | output layer share, baseline step | share, candidate step | bound |",
        "|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['model']} | {r['baseline_share']:.0%} | {r['candidate_share']:.0%} "
                     f"| {r['bound_speedup']:.2f}x |")
    _write_atomic(out / "rnn_throughput_breakdown.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


def _job_trees(args: argparse.Namespace, tmp: Path,
               count: int | None) -> tuple[dict, dict, dict]:
    """The two trees (src, vocabulary, fused optimizer) and ``count`` batches of each one's."""
    trees = {"baseline": (args.baseline_src, args.baseline_vocab, False),
             "candidate": (args.candidate_src, args.candidate_vocab, True)}
    data, files = {}, {}
    for label, (_, vocab, _) in trees.items():
        files[label] = tmp / f"batches-{label}.pt"
        data[label] = _prepare_batches(files[label], count, args.lang, args.data_dir, vocab)
    return trees, data, files


def _interleaved(args: argparse.Namespace, tmp: Path, command: str) -> None:
    """--job --interleave: both trees' workers alive at once, taking turns block by block.

    Each worker builds its model, warms up and then runs the blocks of ``--block`` steps the
    parent sends, one worker at a time (A B, B A, A B, ...), so a drift of the machine's
    speed reaches both trees within seconds of each other instead of a run apart. A cycle
    is one pass over the ``--steps`` batches by each tree; its ratio is the candidate's
    pairs/s over the baseline's on that cycle's blocks.
    """
    trees, data, files = _job_trees(args, tmp, None if args.epoch else args.steps)
    # turn i of a tree with n batches runs its batches [i n / k, (i + 1) n / k)
    lengths = {label: data[label]["batches"] for label in trees}
    turns = -(-max(lengths.values()) // args.block)
    blocks = [{label: (i * n // turns, (i + 1) * n // turns - i * n // turns)
               for label, n in lengths.items()} for i in range(turns)]
    report: dict = {}
    for model in args.models:
        workers = {}
        for label, (src, _, fused) in trees.items():
            worker_command, env = _worker_command(src, model, args, files[label], fused=fused,
                                                  serve=True)
            workers[label] = subprocess.Popen(worker_command, env=env, stdin=subprocess.PIPE,
                                              stdout=subprocess.PIPE, text=True)
        try:
            for label, worker in workers.items():  # ready: built and warmed up
                line = worker.stdout.readline()
                if not line:
                    raise SystemExit(f"worker failed ({trees[label][0]}, {model})")
                _check_source(json.loads(line), trees[label][0])
            cycles = []
            turn = 0
            for cycle in range(args.rounds):
                totals = {label: {"pairs": 0, "tokens": 0, "seconds": 0.0} for label in trees}
                for block in blocks:
                    order = list(workers) if turn % 2 == 0 else list(workers)[::-1]
                    turn += 1
                    for label in order:
                        start, count = block[label]
                        workers[label].stdin.write(f"{start} {count}\n")
                        workers[label].stdin.flush()
                        line = workers[label].stdout.readline()
                        if not line:
                            raise SystemExit(f"worker failed ({trees[label][0]}, {model})")
                        for key, value in json.loads(line).items():
                            totals[label][key] += value
                rate = {label: t["pairs"] / t["seconds"] for label, t in totals.items()}
                cycles.append({**{f"{label}_{key}": value for label, t in totals.items()
                                  for key, value in t.items()},
                               "ratio": rate["candidate"] / rate["baseline"]})
                print(f"cycle {cycle + 1}/{args.rounds} {model:14s} baseline "
                      f"{rate['baseline']:6.1f} candidate {rate['candidate']:6.1f} pairs/s, "
                      f"{cycles[-1]['ratio']:.3f}x", flush=True)
        finally:
            for worker in workers.values():
                worker.stdin.close()
                worker.wait()
        pooled = {label: sum(c[f"{label}_pairs"] for c in cycles)
                  / sum(c[f"{label}_seconds"] for c in cycles) for label in trees}
        ratios = [c["ratio"] for c in cycles]
        report[model] = {"cycles": cycles, "baseline_pairs_per_s": pooled["baseline"],
                         "candidate_pairs_per_s": pooled["candidate"],
                         "pooled_ratio": pooled["candidate"] / pooled["baseline"],
                         "median_cycle_ratio": statistics.median(ratios),
                         "cycles_at_or_above_2": sum(r >= 2 for r in ratios)}
    machine = _machine(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {"cycles": args.rounds, "steps_per_cycle": lengths, "block": args.block,
                "epoch": args.epoch,
                "warmup": args.warmup, "baseline_label": args.baseline_label,
                "candidate_label": args.candidate_label}
    _write_atomic(out / "rnn_throughput_interleaved.json", json.dumps(
        {"machine": machine, "command": command, "settings": settings, "data": data,
         "models": report}, indent=2) + "\n")
    lines = [
        *_header("RNN training throughput as the translate job runs it, trees interleaved",
                 machine, command),
        f"Baseline `{args.baseline_label}` (vocabulary {data['baseline']['vocab_size']}, "
        f"per-tensor AdamW) and candidate `{args.candidate_label}` (vocabulary "
        f"{data['candidate']['vocab_size']}, fused AdamW) train side by side in two live "
        f"processes that take turns every {args.block} steps (A B, B A, ...), so both see "
        "the machine within seconds of each other. A cycle is "
        + (f"one whole epoch of each tree ({lengths['baseline']} and "
           f"{lengths['candidate']} batches, {data['baseline']['pairs']} and "
           f"{data['candidate']['pairs']} pairs; " if args.epoch else
           f"{args.steps} steps of each tree over its own first batches (")
        + f"mean {data['baseline']['rows_per_batch_mean']:.0f} and "
        f"{data['candidate']['rows_per_batch_mean']:.0f} pairs per batch), after "
        f"{args.warmup} warm-up steps; {args.rounds} cycle{'s' if args.rounds > 1 else ''}.",
        "",
        "| model | baseline pairs/s | candidate pairs/s | speedup (pooled) | per cycle "
        "[min, median, max] | cycles >= 2.0 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for model, r in report.items():
        ratios = [c["ratio"] for c in r["cycles"]]
        lines.append(f"| {model} | {r['baseline_pairs_per_s']:.1f} | "
                     f"{r['candidate_pairs_per_s']:.1f} | {r['pooled_ratio']:.3f}x | "
                     f"[{min(ratios):.3f}, {r['median_cycle_ratio']:.3f}, {max(ratios):.3f}] "
                     f"| {r['cycles_at_or_above_2']} of {len(ratios)} |")
    lines += ["", "Per-cycle ratios: " + "; ".join(
        f"{model} " + ", ".join(f"{c['ratio']:.3f}" for c in r["cycles"])
        for model, r in report.items())]
    _write_atomic(out / "rnn_throughput_interleaved.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


def _header(title: str, machine: dict, command: str) -> list[str]:
    return [f"# {title}", "",
            f"Machine: {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']} "
            f"(CPU capability {machine['cpu_capability']}), {machine['torch_threads']} torch "
            "threads, float32.", "", f"Command: `{command}`", ""]


def _write_atomic(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    os.replace(partial, path)


def _job(args: argparse.Namespace, tmp: Path, command: str) -> None:
    """Each tree as its translate job trains the RNNs: own tokenizer and optimizer; pairs/s."""
    trees, data, files = _job_trees(args, tmp, args.warmup + args.steps)
    runs: dict = {m: {"baseline": [], "candidate": []} for m in args.models}
    for round_ in range(args.rounds):
        for model in args.models:
            order = list(trees.items())
            for label, (src, _, fused) in order if round_ % 2 == 0 else order[::-1]:
                result = _measure(src, model, args, files[label], fused=fused)
                runs[model][label].append(result)
                print(f"round {round_ + 1}/{args.rounds} {model:14s} {label:9s} "
                      f"{result['pairs_per_s']:7.1f} pairs/s", flush=True)
    rows = []
    for model, by_tree in runs.items():
        base = statistics.median(r["pairs_per_s"] for r in by_tree["baseline"])
        cand = statistics.median(r["pairs_per_s"] for r in by_tree["candidate"])
        ratios = [c["pairs_per_s"] / b["pairs_per_s"]
                  for b, c in zip(by_tree["baseline"], by_tree["candidate"], strict=True)]
        rows.append({"model": model, "baseline_pairs_per_s": base, "candidate_pairs_per_s": cand,
                     "speedup_of_medians": cand / base,
                     "speedup_per_round": [min(ratios), statistics.median(ratios), max(ratios)],
                     "baseline_tokens_per_s": statistics.median(
                         r["tokens_per_s"] for r in by_tree["baseline"]),
                     "candidate_tokens_per_s": statistics.median(
                         r["tokens_per_s"] for r in by_tree["candidate"])})
    machine = _machine(args.threads)
    reuse = (Path(args.candidate_src) / "attnkit" / "train" / "allocator.py").is_file()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    _write_atomic(out / "rnn_throughput_job.json", json.dumps(
        {"machine": machine, "command": command, "data": data, "runs": runs, "rows": rows},
        indent=2) + "\n")
    lines = [
        *_header("RNN training throughput as the translate job runs it, before and after",
                 machine, command),
        f"Baseline `{args.baseline_label}`: vocabulary {data['baseline']['vocab_size']}, "
        f"per-tensor AdamW. Candidate `{args.candidate_label}`: vocabulary "
        f"{data['candidate']['vocab_size']}, fused AdamW"
        f"{', freed memory reused' if reuse else ''}. Same models otherwise (the "
        "translate job's `small` RNNs: embeddings 256, hidden 384, bidirectional GRU, 1 layer, "
        f"dropout 0.1), batches of at most 3000 padded tokens (mean "
        f"{data['baseline']['rows_per_batch_mean']:.0f} and "
        f"{data['candidate']['rows_per_batch_mean']:.0f} pairs per batch). Each figure is the "
        f"median over {args.rounds} rounds of {args.steps} training steps after "
        f"{args.warmup} warm-up steps, each run in a fresh process, the trees alternating.",
        "",
        "| model | baseline pairs/s | candidate pairs/s | speedup (medians) | per-round "
        "[min, median, max] | target tokens/s, baseline / candidate |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        low, mid, high = r["speedup_per_round"]
        lines.append(f"| {r['model']} | {r['baseline_pairs_per_s']:.1f} | "
                     f"{r['candidate_pairs_per_s']:.1f} | {r['speedup_of_medians']:.2f}x | "
                     f"[{low:.2f}, {mid:.2f}, {high:.2f}] | {r['baseline_tokens_per_s']:.0f} / "
                     f"{r['candidate_tokens_per_s']:.0f} |")
    _write_atomic(out / "rnn_throughput_job.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    # the project's parser (usage errors in one line, exit 2); both trees compared since
    # 9e72299 have it, and a worker's arguments come from the parent
    from attnkit.cli.parser import Parser

    parser = Parser(description=__doc__.split("\n\n")[0],
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline-src", help="src/ folder of the baseline tree")
    parser.add_argument("--candidate-src", default=str(DEFAULT_CANDIDATE),
                        help="src/ folder of the candidate tree (default: this checkout)")
    parser.add_argument("--baseline-label", default="9e72299")
    parser.add_argument("--candidate-label", default="this checkout")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=sorted(MODELS))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lang", default="fr")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default=str(HERE / "results" / "rnn_throughput"))
    parser.add_argument("--breakdown", action="store_true",
                        help="instead of the throughput rounds: per model and tree, the "
                             "share of a step spent in the vocabulary projection and loss "
                             "(which no change to the recurrence removes); writes "
                             "rnn_throughput_breakdown.{json,md}")
    parser.add_argument("--job", action="store_true",
                        help="compare the trees as each one's translate job trains the RNNs "
                             "(own vocabulary, own optimizer), in sentence pairs/s")
    parser.add_argument("--baseline-vocab", type=int, default=8000,
                        help="--job: the baseline job's vocabulary (default 8000)")
    parser.add_argument("--candidate-vocab", type=int, default=4000,
                        help="--job: the candidate job's vocabulary (default 4000)")
    parser.add_argument("--interleave", action="store_true",
                        help="--job: both trees' workers alive at once, taking turns every "
                             "--block steps; --rounds cycles of --steps steps each; writes "
                             "rnn_throughput_interleaved.{json,md}")
    parser.add_argument("--block", type=int, default=5,
                        help="--interleave: steps per turn (default 5)")
    parser.add_argument("--epoch", action="store_true",
                        help="--interleave: a cycle is one whole epoch of each tree (each "
                             "with its own number of batches, cut into the same number of "
                             "turns) instead of --steps steps: the same sentence pairs, where "
                             "a few dozen batches of two tokenizations differ by several "
                             "percent in pairs per batch")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--fused", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--reuse-memory", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--batches", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args)
        return
    if not args.baseline_src:
        parser.error("--baseline-src is required (the src/ folder of the baseline worktree)")
    if args.interleave and not args.job:
        parser.error("--interleave compares the trees as their jobs train: add --job")
    if args.epoch and not args.interleave:
        parser.error("--epoch is a cycle of --interleave: add --job --interleave")
    for name in ("rounds", "warmup", "steps", "threads", "block"):
        if getattr(args, name) < (0 if name == "warmup" else 1):
            parser.error(f"--{name} must be a {'non-negative' if name == 'warmup' else 'positive'}"
                         f" integer, got {getattr(args, name)}")
    from attnkit.data.tokenizer import SPECIAL_TOKENS

    smallest = len(SPECIAL_TOKENS) + 256  # what the byte-level tokenizer can be trained to
    for name in ("baseline_vocab", "candidate_vocab"):
        if getattr(args, name) < smallest:
            parser.error(f"--{name.replace('_', '-')} must be at least {smallest}, got "
                         f"{getattr(args, name)}")
    for src in (args.baseline_src, args.candidate_src):
        if not (Path(src) / "attnkit" / "__init__.py").is_file():
            parser.error(f"{src} is not a src/ folder holding the attnkit package")
    if args.data_dir is not None and not Path(args.data_dir).is_dir():
        parser.error(f"--data-dir {args.data_dir} is not a folder")
    try:  # the reports are written at the end: a folder that cannot take them fails now
        Path(args.out).mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=args.out).close()
    except OSError as error:
        parser.error(f"--out {args.out} cannot be written: {error.strerror or error}")
    command = "python benchmarks/rnn_throughput.py " + " ".join(
        a if " " not in a else repr(a) for a in sys.argv[1:])
    with tempfile.TemporaryDirectory() as tmp:
        if args.job:
            (_interleaved if args.interleave else _job)(args, Path(tmp), command)
            return
        batches = Path(tmp) / "batches.pt"
        data = _prepare_batches(batches, args.warmup + args.steps, args.lang, args.data_dir)
        import torch

        torch.set_num_threads(args.threads)
        if args.breakdown:
            _breakdown(args, batches, data, command)
            return
        runs: dict = {m: {"baseline": [], "candidate": []} for m in args.models}
        trees = [("baseline", args.baseline_src), ("candidate", args.candidate_src)]
        for round_ in range(args.rounds):
            for model in args.models:
                order = trees if round_ % 2 == 0 else trees[::-1]
                for label, src in order:
                    result = _measure(src, model, args, batches)
                    runs[model][label].append(result)
                    print(f"round {round_ + 1}/{args.rounds} {model:14s} {label:9s} "
                          f"{result['tokens_per_s']:8.0f} tokens/s", flush=True)
    settings = {"rounds": args.rounds, "warmup": args.warmup, "steps": args.steps,
                "baseline_label": args.baseline_label, "candidate_label": args.candidate_label,
                "data": data}
    _report({"machine": _machine(args.threads), "settings": settings, "runs": runs},
            Path(args.out), command)


if __name__ == "__main__":
    main()
