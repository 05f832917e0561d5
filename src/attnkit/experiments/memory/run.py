"""One ``attnkit memory`` run: generate and encode the tasks, train one MemN2N per hop count
(same data, epochs and seeds; the best of ``restarts`` runs by validation accuracy), score
the test split per task, pick an example story for the attention figure, check the goals and
write the report."""

from __future__ import annotations

import multiprocessing
import os
import platform
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from typing import Any

import torch

from attnkit._validate import output_dir
from attnkit.data.babi import TASKS, Vocabulary, encode, render, splits
from attnkit.experiments.memory.config import MemoryConfig
from attnkit.experiments.memory.paper import PAPER_1K, paper_mean
from attnkit.experiments.memory.report import write_report
from attnkit.experiments.memory.train import evaluate, train_model
from attnkit.models.memn2n import MemN2N, MemN2NConfig

__all__ = ["run", "GOAL_MEAN_ERROR", "per_task_errors", "attention_example"]

GOAL_MEAN_ERROR = 15.0  # % mean test error over the generated tasks, 1k examples
_EXAMPLE_TASKS = (2, 3, 11, 13, 1)  # the figure's story: a multi-fact task when present


def per_task_errors(predicted: torch.Tensor, answers: torch.Tensor, tasks: torch.Tensor,
                    task_list: list[int]) -> dict[int, float]:
    """Test error (%) of each task in ``task_list``."""
    out = {}
    for task in task_list:
        rows = tasks == task
        out[task] = 100.0 * float((predicted[rows] != answers[rows]).float().mean())
    return out


def attention_example(models: dict[int, Any], test, examples, vocab,
                      tasks: list[int]) -> dict[str, Any]:
    """Each model's per-hop attention over one short test story of a multi-fact task."""
    wanted = [t for t in _EXAMPLE_TASKS if t in tasks] or tasks[:1]
    pick = None
    for task in wanted:
        rows = [i for i, ex in enumerate(examples) if ex.task == task and 4 <= len(ex.story) <= 12]
        if rows:
            pick = rows[0]
            break
    if pick is None:
        pick = 0
    ex = examples[pick]
    n = int(test.lengths[pick])
    out = {"task": ex.task, "story": [" ".join(s) for s in ex.story[-n:]],
           "question": " ".join(ex.question), "answer": ex.answer,
           "supporting": [int(i) for i in test.supporting[pick, :n].nonzero().flatten()],
           "text": render(ex), "models": {}}
    for hops, model in models.items():
        model.eval()
        with torch.no_grad():
            logits, weights = model(test.stories[pick:pick + 1, :max(n, 1)],
                                    test.queries[pick:pick + 1],
                                    test.memory_mask[pick:pick + 1, :max(n, 1)])
        out["models"][str(hops)] = {"predicted": vocab.words[int(logits.argmax())],
                                    "weights": [w[0, :n].tolist() for w in weights]}
    return out


def _machine() -> dict[str, Any]:
    return {"torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}


def _goals(config: MemoryConfig, results: dict[str, Any]) -> list[dict[str, Any]]:
    goals = []
    deepest = str(max(config.hops))
    mean = results[deepest]["mean_error"]
    goals.append({"goal": f"MemN2N ({deepest} hops) mean test error <= {GOAL_MEAN_ERROR:g}% "
                          f"over {len(config.tasks)} generated tasks at {config.examples} "
                          f"examples per task",
                  "measured": f"{mean:.1f}%", "met": bool(mean <= GOAL_MEAN_ERROR),
                  "applies": config.examples == 1000})
    if 1 in config.hops and 3 in config.hops:
        one, three = results["1"]["mean_error"], results["3"]["mean_error"]
        goals.append({"goal": "3 hops better than 1 hop (mean test error)",
                      "measured": f"3 hops {three:.1f}% vs 1 hop {one:.1f}%",
                      "met": bool(three < one), "applies": True})
    return goals


def _train_run(config: MemoryConfig, model_config: MemN2NConfig, train, valid, seed: int,
               threads: int | None, log=None) -> tuple[dict, dict]:
    """One training run: the best epoch's weights and the run's history. In a worker process
    (``log`` None) the per-epoch lines go to this process's stdout, marked with the seed."""
    if threads is not None:
        torch.set_num_threads(threads)
    if log is None:
        log = ((lambda line: print(f"[seed {seed}] {line.strip()}", flush=True))
               if config.progress else (lambda _line: None))
    model, info = train_model(config, model_config, train, valid, seed=seed, log=log)
    return model.state_dict(), info


def _workers(config: MemoryConfig, runs: int) -> int:
    """Processes for the training runs: ``config.workers``, else one per CPU core (at most
    the number of runs; one when torch threads were asked for)."""
    if config.workers is not None:
        return min(config.workers, runs)
    if config.threads is not None:
        return 1
    return max(1, min(os.cpu_count() or 1, runs))


def _train_all(config: MemoryConfig, model_configs: dict[int, MemN2NConfig], encoded: dict,
               log) -> dict[int, tuple]:
    """Every training run of the experiment: ``config.restarts`` for the deepest hop count,
    ``baseline_restarts`` for the others (init seeds ``seed, seed + 1, ...``, the same data),
    in parallel worker processes of one torch thread each when there are several cores.
    Each run is the same computation whichever process does it. Returns, per hop count, the
    run with the best validation accuracy (the first on ties)."""
    deepest = max(config.hops)
    jobs = [(hops, config.seed + k) for hops in config.hops
            for k in range(config.restarts if hops == deepest else config.baseline_restarts)]
    workers = _workers(config, len(jobs))
    log(f"{len(jobs)} training runs in {workers} process(es)")
    results: dict[tuple[int, int], tuple] = {}

    def done(job, state, info):
        hops, seed = job
        log(f"hops={hops} seed {seed}: best valid accuracy {info['best_valid_accuracy']:.3f} "
            f"({info['epochs_run']} epochs, {info['elapsed_s']:.0f} s)")
        results[job] = (state, info)

    if workers == 1:
        for job in jobs:
            done(job, *_train_run(config, model_configs[job[0]], encoded["train"],
                                  encoded["valid"], job[1], None, log))
    else:
        context = multiprocessing.get_context("spawn")  # no fork of a process with threads
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            # the deepest (slowest) runs first, so the pool's last run is a short one
            futures = {pool.submit(_train_run, config, model_configs[job[0]],
                                   encoded["train"], encoded["valid"], job[1], 1): job
                       for job in sorted(jobs, key=lambda j: -j[0])}
            for future in as_completed(futures):
                done(futures[future], *future.result())
    best: dict[int, tuple] = {}
    for hops in config.hops:
        runs = [(seed, *results[(h, seed)]) for h, seed in jobs if h == hops]
        seed, state, info = max(runs, key=lambda r: (r[2]["best_valid_accuracy"], -r[0]))
        model = MemN2N(model_configs[hops])
        model.load_state_dict(state)
        best[hops] = (model, {**info, "seed": seed,
                              "restart_valid_accuracies": [r[2]["best_valid_accuracy"]
                                                           for r in runs],
                              "all_runs_elapsed_s": sum(r[2]["elapsed_s"] for r in runs),
                              "workers": workers})
    return best


def run(config: MemoryConfig, *, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the experiment, write the report, return the metrics."""
    if not isinstance(config, MemoryConfig):
        raise TypeError(f"config: expected a MemoryConfig, got {type(config).__name__}")
    report_dir = output_dir(config.report_dir, "--out")
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    if not config.progress:
        log = (lambda _message: None)  # noqa: E731
    started = time.perf_counter()
    machine = _machine()
    data = splits(config.tasks, config.examples, config.test_examples, config.seed)
    vocab = Vocabulary.from_examples(data["train"] + data["valid"] + data["test"])
    encoded = {name: encode(examples, vocab, config.memory_size)
               for name, examples in data.items()}
    log(f"data: {len(config.tasks)} tasks, train {len(data['train'])}, valid "
        f"{len(data['valid'])}, test {len(data['test'])} examples; vocabulary {len(vocab)}")
    models, results = {}, {}
    model_configs = {hops: MemN2NConfig(len(vocab), config.embed_dim, hops,
                                        config.memory_size, config.encoding)
                     for hops in config.hops}
    trained = _train_all(config, model_configs, encoded, log)
    for hops in config.hops:
        model, info = trained[hops]
        # a run that never left linear start (epochs <= ls_epochs) is scored as trained
        test = evaluate(model, encoded["test"], linear=info["ended_in_linear_start"])
        errors = per_task_errors(test["predicted"], encoded["test"].answers,
                                 encoded["test"].tasks, config.tasks)
        mean = sum(errors.values()) / len(errors)
        valid = evaluate(model, encoded["valid"], linear=info["ended_in_linear_start"])
        valid_errors = per_task_errors(valid["predicted"], encoded["valid"].answers,
                                       encoded["valid"].tasks, config.tasks)
        log(f"hops={hops}: mean test error {mean:.1f}% over {len(errors)} tasks "
            f"({info['epochs_run']} epochs, {info['elapsed_s']:.0f} s)")
        models[hops] = model
        results[str(hops)] = {"errors": {str(t): e for t, e in errors.items()},
                              "mean_error": mean,
                              "valid_errors": {str(t): e for t, e in valid_errors.items()},
                              "failed_tasks": sum(e > 5 for e in errors.values()),
                              "test_accuracy": test["accuracy"],
                              "parameters": sum(p.numel() for p in model.parameters()),
                              "training": info}
    example = attention_example(models, encoded["test"], data["test"], vocab, config.tasks)
    machine["load_average_1min_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    metrics = {
        "config": asdict(config), "machine": machine,
        "data": {"source": "attnkit.data.babi (generated; not the official bAbI data)",
                 "vocab_size": len(vocab), "train": len(data["train"]),
                 "valid": len(data["valid"]), "test": len(data["test"]),
                 "task_names": {str(t): TASKS[t][0] for t in config.tasks},
                 "max_story": {k: int(v.lengths.max()) for k, v in encoded.items()}},
        "results": results,
        "paper": {"source": "Sukhbaatar et al. 2015, arXiv 1503.08895, Table 1 (1k, official "
                            "bAbI)",
                  "columns": {name: {"errors": {str(t): col[t - 1] for t in config.tasks},
                                     "mean": paper_mean(name, config.tasks)}
                              for name, col in PAPER_1K.items()}},
        "example": example, "goals": _goals(config, results),
        "wall_s": time.perf_counter() - started,
    }
    write_report(report_dir, metrics)
    log(f"wrote {report_dir}/ (metrics.json, README.md, report.html and the figures)")
    return metrics
