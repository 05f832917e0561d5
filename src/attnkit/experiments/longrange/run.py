"""One ``attnkit longrange`` run: data, then per task and model: gradient probe at
initialization, training for the wall-clock budget, greedy test decoding, gradient probe after
training; then the step-time measurement of every model and the report.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from attnkit._validate import output_dir
from attnkit.data import PAD_ID
from attnkit.experiments.longrange.config import LONG_MIN_LENGTH, LongRangeConfig
from attnkit.experiments.longrange.data import (
    CharVocabulary,
    Example,
    TaskBatches,
    TextStream,
    make_examples,
)
from attnkit.experiments.longrange.evaluate import decode, score, teacher_forced_accuracy
from attnkit.experiments.longrange.model import build_model
from attnkit.experiments.longrange.probes import gradient_flow, sequential_steps, step_times
from attnkit.experiments.longrange.report import write_report
from attnkit.train import TrainConfig, Trainer, seq2seq_loss_fn

__all__ = ["run", "GOALS", "prepare_data"]

#: the issue's goal for copy at source lengths >= LONG_MIN_LENGTH: (model, comparison, value)
GOALS = [("rnn-attention", ">=", 0.95), ("transformer", ">=", 0.95), ("rnn-none", "<", 0.5)]

# Fixed seeds of the evaluation sets: the same examples whatever --seed trains with.
_TEST_SEED, _VALID_SEED, _PROBE_SEED, _TIMING_SEED = 1001, 1002, 1003, 1004
_SAMPLES = 2  # decoded test examples shown per model and task


def prepare_data(config: LongRangeConfig, log: Callable[[str], None] = print):
    """The vocabulary and the train/valid/test streams of the English side of the corpus."""
    from attnkit.experiments.translate.run import ensure_corpus

    corpus = ensure_corpus("fr", config.data_dir, log=log)
    english = {split: [pair[0] for pair in corpus.split(split)]
               for split in ("train", "valid", "test")}
    vocab = CharVocabulary.from_texts(english["train"], config.max_vocab)
    streams = {split: TextStream(texts, vocab) for split, texts in english.items()}
    info = {"corpus": str(corpus.path), "unit": "character", "vocab_size": vocab.vocab_size,
            "characters": "".join(vocab.chars),
            "sentences": {s: len(t) for s, t in english.items()},
            "tokens": {s: len(stream) for s, stream in streams.items()}}
    return vocab, streams, info


def _valid_examples(config: LongRangeConfig, stream: TextStream, task: str) -> list[Example]:
    """``valid_examples`` windows with lengths spread evenly over the range."""
    lengths = np.linspace(config.min_len, config.max_len, config.valid_examples).round()
    examples = []
    for k, length in enumerate(lengths.astype(int).tolist()):
        examples += make_examples(stream, [length], 1, task, seed=_VALID_SEED + k)
    return examples


def _goal_checks(tasks: dict[str, Any]) -> list[dict[str, Any]]:
    copy = tasks.get("copy", {})
    checks = []
    for kind, op, value in GOALS:
        long = copy.get(kind, {}).get("test", {}).get("long")
        if long is None:
            continue
        measured = long["token_accuracy"]
        met = measured >= value if op == ">=" else measured < value
        checks.append({"model": kind, "goal": f"{op} {value:.0%}", "measured": measured,
                       "met": bool(met), "min_length": LONG_MIN_LENGTH})
    return checks


def _machine() -> dict[str, Any]:
    return {"torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def _train_one(config: LongRangeConfig, kind: str, task: str, vocab, streams, test, valid,
               log: Callable[[str], None]) -> dict[str, Any]:
    torch.manual_seed(config.seed)
    model, description = build_model(kind, vocab.vocab_size, d_model=config.d_model,
                                      layers=config.layers, heads=config.heads,
                                      max_len=config.position_limit)
    if torch.cuda.is_available():
        model = model.cuda()
    probe = dict(length=config.grad_length, rows=config.grad_rows, seed=_PROBE_SEED)
    grad_init = gradient_flow(model, streams["test"], task, **probe)
    budget = config.minutes * 60.0
    train_config = TrainConfig(
        max_steps=config.max_steps, max_time_s=budget, lr=config.lr(kind),
        warmup_steps=config.warmup_steps, schedule="linear", horizon="time",
        eval_every_s=budget / config.eval_points, seed=config.seed, log_every=50,
        progress=config.progress, amp="off")
    batches = TaskBatches(streams["train"], task, min_len=config.min_len,
                          max_len=config.max_len, max_tokens=config.max_tokens,
                          seed=config.seed)
    trainer = Trainer(model, train_config, batches, seq2seq_loss_fn(pad_id=PAD_ID),
                      eval_fn=lambda m: teacher_forced_accuracy(m, valid))
    log(f"[{task}] {kind}: {description['parameters']:,} parameters, training for "
        f"{config.minutes:g} min")
    summary = trainer.fit()
    if summary.get("interrupted"):
        raise KeyboardInterrupt
    started = time.perf_counter()
    outputs = decode(model, test)
    result = score(test, outputs, task, min_len=config.min_len, max_len=config.max_len,
                   long_min=LONG_MIN_LENGTH)
    result["decode_s"] = time.perf_counter() - started
    long = result["long"]
    log(f"[{task}] {kind}: {summary['step']} updates; test token accuracy "
        f"{result['token_accuracy']:.3f}, exact match {result['exact_match']:.3f}"
        + (f"; at >= {LONG_MIN_LENGTH} tokens {long['token_accuracy']:.3f}" if long else ""))
    longest = sorted(range(len(test)), key=lambda k: -len(test[k].source))[:_SAMPLES]
    samples = [{"source": vocab.decode(test[k].source), "target": vocab.decode(test[k].target),
                "output": vocab.decode(outputs[k])} for k in longest]
    curve = [{"minutes": r["elapsed"] / 60.0, "step": r["step"],
              "valid_accuracy": r["valid_accuracy"], "valid_loss": r["valid_loss"]}
             for r in summary["metrics"] if r.get("event") == "eval"]
    elapsed = summary["elapsed"]
    return {
        "model": description,
        "training": {"steps": summary["step"], "elapsed_s": elapsed, "loss": summary["loss"],
                     "tokens": summary["tokens"],
                     "tokens_per_s": summary["tokens"] / max(elapsed, 1e-9),
                     "seconds_per_step": elapsed / max(summary["step"], 1), "curve": curve},
        "test": result, "samples": samples,
        "gradient_flow": {"init": grad_init,
                          "trained": gradient_flow(model, streams["test"], task, **probe)},
    }


def _timing(config: LongRangeConfig, vocab, streams, log: Callable[[str], None]) -> dict:
    out: dict[str, Any] = {"tokens": config.timing_tokens, "lengths": config.timing_lengths,
                           "repeats": config.timing_repeats, "models": {}}
    train_tokens = len(streams["train"])
    for kind in config.models:
        def build(kind=kind):
            torch.manual_seed(config.seed)
            model, _ = build_model(kind, vocab.vocab_size, d_model=config.d_model,
                                   layers=config.layers, heads=config.heads,
                                   max_len=config.position_limit)
            return model.cuda() if torch.cuda.is_available() else model

        rows = step_times(build, streams["train"], lengths=config.timing_lengths,
                          tokens=config.timing_tokens, repeats=config.timing_repeats,
                          lr=config.lr(kind), seed=_TIMING_SEED)
        for row in rows:
            steps_per_epoch = train_tokens / (row["rows"] * row["length"])
            row["seconds_per_epoch"] = steps_per_epoch * row["seconds_per_step"]
            row["sequential_steps"] = sequential_steps(kind, row["length"])
        out["models"][kind] = rows
        log(f"timing {kind}: " + ", ".join(f"L={r['length']} {r['seconds_per_step'] * 1e3:.0f} ms"
                                           for r in rows))
    return out


def run(config: LongRangeConfig, *, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every model on every task, measure, write the report; return the metrics.

    Raises:
        UserError: an unusable report directory (checked before any work).
        KeyboardInterrupt: a training run was interrupted.
    """
    if not isinstance(config, LongRangeConfig):
        raise TypeError(f"config: expected a LongRangeConfig, got {type(config).__name__}")
    report_dir = output_dir(config.report_dir, "--out")
    if config.data_dir is not None:
        output_dir(config.data_dir, "--data-dir")
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    started = time.perf_counter()
    machine = _machine()
    vocab, streams, data_info = prepare_data(config, log)
    lengths = range(config.min_len, config.max_len + 1)
    tasks: dict[str, dict[str, Any]] = {}
    for task in config.tasks:
        test = make_examples(streams["test"], lengths, config.test_per_length, task,
                             seed=_TEST_SEED)
        valid = _valid_examples(config, streams["valid"], task)
        tasks[task] = {kind: _train_one(config, kind, task, vocab, streams, test, valid, log)
                       for kind in config.models}
    timing = _timing(config, vocab, streams, log)
    machine["load_average_1min_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    metrics = {"config": asdict(config), "data": data_info, "machine": machine,
               "parameters": {kind: tasks[config.tasks[0]][kind]["model"]["parameters"]
                              for kind in config.models},
               "tasks": tasks, "goal": _goal_checks(tasks), "timing": timing,
               "wall_s": time.perf_counter() - started}
    write_report(report_dir, metrics)
    log(f"wrote {report_dir}/ (metrics.json, README.md, report.html and the figures)")
    return metrics
