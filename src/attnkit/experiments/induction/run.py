"""One ``attnkit induction`` run: the corpus, then per model: training with measurements
every ``eval_every`` updates, the final checkpoint; then the goals and the report.
"""

from __future__ import annotations

import os
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from attnkit._validate import output_dir
from attnkit.data.paths import default_data_dir
from attnkit.data.tokenizer import BOS_ID, SPECIAL_TOKENS
from attnkit.experiments.induction.config import MODEL_KINDS, InductionConfig
from attnkit.experiments.induction.data import load_corpus, train_windows, valid_contexts
from attnkit.experiments.induction.evaluate import (
    MIN_DROP,
    MIN_RISE,
    measure,
    phase_change,
    steepest_drop,
)
from attnkit.experiments.induction.report import write_report
from attnkit.interp.heads import repeated_random_tokens
from attnkit.models.gpt import GPT, GPTConfig
from attnkit.train import TrainConfig, Trainer, lm_loss_fn
from attnkit.train.checkpoint import save_checkpoint

__all__ = ["run", "build_model", "probe_choices", "PROBE_MIN_COUNT", "goal_checks", "GOALS"]

# Fixed seeds of the measurement sets: the same whatever --seed trains with.
_VALID_SEED, _PROBE_SEED = 2001, 2002
#: the probe's random tokens are drawn from the ids that occur at least this often in the train
#: stream: the byte-level vocabulary holds ids that never occur in the library's source (89 of
#: 1,024 for Python 3.11: mostly non-ASCII bytes), whose embeddings stay at their random
#: initialization, so a head's prefix matching on them says nothing about the head
PROBE_MIN_COUNT = 20

#: the issue's goals (metrics["goals"] says which were met, as measured)
GOALS = {
    "attn-2 ICL score": "<= -0.4 nats",
    "attn-2 best prefix matching": ">= 0.8",
    "attn-1 best prefix matching": "< 0.2",
    "attn-1 ICL score": "less than half of attn-2's (attn-1 > attn-2 / 2)",
}


def probe_choices(train: np.ndarray, vocab_size: int) -> torch.Tensor:
    """``(C,)`` long: the ids, special tokens left out, that occur at least
    :data:`PROBE_MIN_COUNT` times in the ``(N,)`` train stream (all non-special ids when
    none does, as in a tiny smoke-test corpus)."""
    counts = np.bincount(train, minlength=vocab_size)[:vocab_size]
    counts[:len(SPECIAL_TOKENS)] = 0
    ids = np.flatnonzero(counts >= PROBE_MIN_COUNT)
    if ids.size == 0:
        ids = np.arange(len(SPECIAL_TOKENS), vocab_size)
    return torch.from_numpy(ids).long()


def build_model(kind: str, config: InductionConfig, vocab_size: int) -> GPT:
    """The GPT of model ``kind`` (:data:`MODEL_KINDS`), initialized from ``config.seed``."""
    layers, mlp = MODEL_KINDS[kind]
    torch.manual_seed(config.seed)
    return GPT(GPTConfig(vocab_size=vocab_size, context_len=config.context_len,
                         num_layers=layers, num_heads=config.heads, d_model=config.d_model,
                         positional=config.positional, mlp=mlp, dropout=0.0,
                         init_std=config.init_std))


def _machine() -> dict[str, Any]:
    return {"torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def _train_one(kind: str, config: InductionConfig, corpus, contexts: torch.Tensor,
               probe: torch.Tensor, log: Callable[[str], None]) -> tuple[GPT, dict[str, Any]]:
    model = build_model(kind, config, corpus.tokenizer.vocab_size)
    if torch.cuda.is_available():
        model = model.cuda()
    measurements: list[dict[str, Any]] = []
    options = dict(early=config.icl_early, late=config.icl_late,
                   halfwidth=config.icl_halfwidth)

    def evaluate(m: torch.nn.Module) -> dict[str, float]:
        record = {"step": trainer.step, "elapsed_s": time.perf_counter() - started,
                  **measure(m, contexts, probe, **options)}
        measurements.append(record)
        return {"valid_loss": record["valid_loss"], "icl_score": record["icl_score"],
                "best_prefix_matching": record["best_prefix_matching"]["score"]}

    train_config = TrainConfig(
        max_steps=config.steps, max_time_s=config.budget_s(), lr=config.lr,
        min_lr=config.lr / 10, warmup_steps=config.warmup_steps, schedule="cosine",
        weight_decay=config.weight_decay, eval_every=config.eval_every, seed=config.seed,
        log_every=min(10, config.eval_every), progress=config.progress, amp="off")
    trainer = Trainer(model, train_config,
                      lambda index, rank, world: train_windows(
                          corpus.train, length=config.context_len, rows=config.rows,
                          seed=config.seed, index=index),
                      lm_loss_fn(), eval_fn=evaluate, model_config=model.config.to_dict())
    log(f"{kind}: {model.num_parameters():,} parameters, {config.steps} updates of "
        f"{config.rows} x {config.context_len} tokens (cap {config.budget_s() / 60:.1f} min)")
    started, cpu_started = time.perf_counter(), time.process_time()
    with torch.no_grad():
        model.eval()
        evaluate(model)  # step 0
        model.train()
    summary = trainer.fit()
    cpu_s = time.process_time() - cpu_started
    if summary.get("interrupted"):
        raise KeyboardInterrupt
    steps = [r["step"] for r in measurements]
    best = [r["best_prefix_matching"]["score"] for r in measurements]
    icl = [r["icl_score"] for r in measurements]
    final = measurements[-1]
    log(f"{kind}: {summary['step']} updates in {summary['elapsed'] / 60:.1f} min; valid loss "
        f"{final['valid_loss']:.3f}, ICL score {final['icl_score']:+.3f}, best prefix "
        f"matching {final['best_prefix_matching']['score']:.3f}")
    train_curve = [{"step": r["step"], "loss": r["loss"], "elapsed_s": r["elapsed"]}
                   for r in summary["metrics"] if r.get("event") == "train"]
    elapsed = summary["elapsed"]
    result = {
        "model": {"kind": kind, "layers": MODEL_KINDS[kind][0], "mlp": MODEL_KINDS[kind][1],
                  "parameters": model.num_parameters(), "gpt": model.config.to_dict()},
        "training": {"steps": summary["step"], "planned_steps": config.steps,
                     "out_of_time": bool(summary["out_of_time"]), "elapsed_s": elapsed,
                     "tokens": summary["tokens"],
                     "seconds_per_step": elapsed / max(summary["step"], 1),
                     "process_cpu_s": cpu_s,
                     "final_train_loss": summary["loss"], "curve": train_curve},
        "measurements": measurements,
        "final": {k: final[k] for k in ("step", "valid_loss", "icl_score", "prefix_matching",
                                         "previous_token", "copying",
                                         "best_prefix_matching")},
        "phase_change": {"prefix_matching_rise": phase_change(steps, best, min_rise=MIN_RISE),
                         "icl_score_drop": steepest_drop(steps, icl, min_drop=MIN_DROP)},
    }
    return model, result


def goal_checks(models: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's goals that the trained models allow to check: ``{"goal", "measured",
    "met"}`` each."""
    checks = []
    two, one = models.get("attn-2"), models.get("attn-1")
    if two is not None:
        icl2 = two["final"]["icl_score"]
        best2 = two["final"]["best_prefix_matching"]["score"]
        checks.append({"goal": "attn-2 ICL score <= -0.4 nats", "measured": icl2,
                       "met": icl2 <= -0.4})
        checks.append({"goal": "attn-2 best prefix matching >= 0.8", "measured": best2,
                       "met": best2 >= 0.8})
    if one is not None:
        best1 = one["final"]["best_prefix_matching"]["score"]
        checks.append({"goal": "attn-1 best prefix matching < 0.2", "measured": best1,
                       "met": best1 < 0.2})
    if one is not None and two is not None:
        icl1 = one["final"]["icl_score"]
        checks.append({"goal": "attn-1 ICL score less than half of attn-2's "
                               f"({icl2 / 2:+.3f})", "measured": icl1,
                       "met": icl2 < 0 and icl1 > icl2 / 2})
    return checks


def run(config: InductionConfig, *, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train every model, measure, write the report; return the metrics.

    Raises:
        UserError: an unusable report or data directory (checked before any work).
        KeyboardInterrupt: a training run was interrupted.
    """
    if not isinstance(config, InductionConfig):
        raise TypeError(f"config: expected an InductionConfig, got {type(config).__name__}")
    report_dir = output_dir(config.report_dir, "--out")
    data_dir = output_dir(config.data_dir if config.data_dir is not None
                          else default_data_dir(), "--data-dir")
    if config.threads is not None:
        torch.set_num_threads(config.threads)
        os.environ.setdefault("RAYON_NUM_THREADS", str(config.threads))
    started = time.perf_counter()
    machine = _machine()
    corpus = load_corpus(vocab_size=config.vocab_size, valid_fraction=config.valid_fraction,
                         cache_dir=data_dir / "induction", root=config.root,
                         max_files=config.max_files, log=log)
    info = corpus.info
    log(f"Python {info['python']} standard library: {info['files']} files "
        f"({info['train_files']} train, {info['valid_files']} valid), "
        f"{info['train_tokens']:,} train tokens")
    contexts = valid_contexts(corpus.valid, length=config.context_len,
                              count=config.valid_contexts, seed=_VALID_SEED)
    seen = probe_choices(corpus.train, corpus.tokenizer.vocab_size)
    probe = repeated_random_tokens(corpus.tokenizer.vocab_size, config.probe_len,
                                   batch=config.probe_rows, prefix=[BOS_ID], choices=seen,
                                   generator=torch.Generator().manual_seed(_PROBE_SEED))
    models: dict[str, Any] = {}
    trained: dict[str, GPT] = {}
    checkpoints = report_dir / "checkpoints"
    for kind in config.models:
        trained[kind], models[kind] = _train_one(kind, config, corpus, contexts, probe, log)
        save_checkpoint(checkpoints / kind, model=trained[kind],
                        step=models[kind]["training"]["steps"],
                        model_config={"gpt": trained[kind].config.to_dict(),
                                      "induction_model": kind},
                        extra={"tokenizer": "tokenizer.json", "experiment": "induction"})
    tokenizer_copy = report_dir / "tokenizer.json"
    tmp = tokenizer_copy.with_name(".tokenizer.json.tmp")
    shutil.copyfile(info["tokenizer"], tmp)
    os.replace(tmp, tokenizer_copy)
    machine["load_average_1min_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    metrics = {"config": asdict(config), "data": info, "machine": machine,
               "probe": {"rows": config.probe_rows, "length": config.probe_len,
                         "seed": _PROBE_SEED, "min_train_count": PROBE_MIN_COUNT,
                         "choices": int(seen.numel()), "tokens": probe.tolist()},
               "valid_contexts": {"count": config.valid_contexts, "seed": _VALID_SEED},
               "models": models, "goals": goal_checks(models),
               "wall_s": time.perf_counter() - started}
    write_report(report_dir, metrics, trained, probe, corpus.tokenizer)
    log(f"wrote {report_dir}/ (metrics.json, README.md, report.html, figures, checkpoints)")
    return metrics
