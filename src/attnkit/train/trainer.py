"""A generic training loop that survives crashes: AdamW, warmup schedules, accumulation,
bf16 autocast, clipping, evaluation, JSON-lines metrics, atomic checkpoints and exact resume.

Optimizer: AdamW, Adam with decoupled weight decay (Loshchilov & Hutter, 2017,
arXiv:1711.05101). Weight decay is applied only to parameters with two or more dimensions
that do not belong to an ``nn.Embedding``: biases, normalization gains and embeddings
(including an output layer tied to the embedding) are not decayed, the usual choice for
Transformers. Schedules are in :mod:`attnkit.train.schedule`.

What a task supplies (the trainer is generic over models)::

    batch_fn(index, rank, world_size) -> batch        # deterministic in its arguments
    loss_fn(model, batch) -> (loss_sum, num_tokens)    # sum over tokens, see losses.py
    eval_fn(model) -> {name: float}                    # optional

``index`` is the global micro-batch index ``step * accum_steps + micro`` (``step`` counts
optimizer updates done, ``micro`` in ``[0, accum_steps)``); with ``accum_steps=1`` it is the
step. Under data parallelism each of ``world_size`` processes asks for its shard ``rank`` of
that micro-batch. Because the batch depends only on these numbers, the data position of a
resumed run is just the step. Batches (tensors, optionally nested in dicts, lists and
tuples) are moved to the model's device.

Loss normalization: one optimizer update minimizes
``sum of token losses over all micro-batches and processes / total tokens over them``:
gradients of the summed losses are accumulated and then divided by the all-reduced token
count, so two processes with half the global batch each follow the same loss curve as one
process with all of it, and accumulation of micro-batches equals one large batch.

Resume and interruption: with ``resume=True`` the trainer loads ``out_dir``'s latest
checkpoint (model, optimizer, schedule step, every RNG, metrics, data position) and the run
continues bit-for-bit as if never stopped (same seed, same device and thread settings,
deterministic kernels). SIGINT/SIGTERM set a flag; the current step finishes, a checkpoint
is saved, and ``fit`` *returns* with ``summary["interrupted"] = True`` and
``summary["signal"]`` ("SIGINT" or "SIGTERM") instead of raising; command-line tools map
that to exit codes 130 / 143. A second signal of the same kind acts as it would without the
trainer (Ctrl-C twice raises KeyboardInterrupt at once).

Mixed precision (``amp``): ``"bf16"`` runs ``loss_fn`` under ``torch.autocast`` with
bfloat16; ``"off"`` runs in the parameters' dtype; ``"auto"`` means bf16 on CUDA devices that
support it and float32 on CPU. Without AMX-BF16 units bf16 on CPU is emulated or converted
per element (5-90x slower matmuls); even with them, the small models trained here lose:
on a 2-core Intel Xeon with AMX the translate job's default Transformer (width 192) took
0.48 s per update under bf16 autocast against 0.29 s in float32, the casts around every
small matmul costing more than AMX saves. ``"bf16"`` still forces autocast on CPU.
bfloat16 needs no loss scaling.
Evaluation runs without autocast, in the parameters' dtype.

Time budget (``max_time_s``): wall-clock seconds of training, evaluation and checkpoints,
summed over resumptions. Minutes the process spends stopped (``kill -STOP`` then ``-CONT``,
Ctrl-Z then ``fg``) are not counted: SIGCONT marks the stop and its length is estimated
from the process's CPU time (:mod:`attnkit.train.clock`); each one is logged as a
``{"event": "pause", "seconds": ...}`` record, and the summary's ``paused`` is their total.

Only rank 0 writes checkpoints, ``metrics.jsonl`` and the progress bar; evaluation runs on
rank 0 with the unwrapped model while the other processes wait.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attnkit._io import atomic_write_text
from attnkit._validate import check_bool
from attnkit.train.allocator import keep_freed_memory
from attnkit.train.checkpoint import (
    _jsonable,
    get_rng_state,
    latest_checkpoint,
    load_checkpoint,
    save_run_checkpoint,
    set_rng_state,
)
from attnkit.train.clock import PauseClock
from attnkit.train.distributed import (
    all_reduce_sum,
    barrier,
    gather_objects,
    get_rank,
    get_world_size,
    unwrap_model,
    wrap_model,
)
from attnkit.train.schedule import SCHEDULES, WarmupSchedule

__all__ = ["TrainConfig", "Trainer", "build_optimizer", "resolve_amp"]

AMP_MODES = ("auto", "bf16", "off")
HORIZONS = ("steps", "time")
PLAN_SKIP = 2    # first updates of a session, left out of the step time (allocator warm-up)
PLAN_AFTER = 10  # updates timed before the plan is announced
METRICS_FILE = "metrics.jsonl"
MAX_SEED = 2**32 - 1
# Config fields that may change between a run and its resumption without breaking exactness.
_RESUMABLE_CHANGES = {"max_steps", "max_time_s", "eval_every", "eval_every_s", "checkpoint_every",
                      "keep_checkpoints", "log_every", "progress", "out_dir",
                      "fused_optimizer",  # a checkpoint's param groups keep their kernel
                      "reuse_memory"}


@dataclass
class TrainConfig:
    max_steps: int = 1000                     # optimizer updates to train for
    max_time_s: float = 0.0                   # wall-clock budget of training in s (0: none)
    lr: float = 5e-4                          # peak learning rate, reached at the end of warmup
    min_lr: float = 0.0                       # final learning rate of the cosine schedule
    weight_decay: float = 0.01                # AdamW decay; not on biases/norms/embeddings
    betas: tuple[float, float] = (0.9, 0.98)  # AdamW moment decay rates
    eps: float = 1e-8                         # AdamW denominator epsilon
    fused_optimizer: bool = True              # fused AdamW kernel (False: per-tensor loop)
    warmup_steps: int = 100                   # linear warmup updates (0: none)
    schedule: str = "inverse_sqrt"            # "inverse_sqrt" | "cosine" | "linear" | "constant"
    horizon: str = "steps"                    # decay over max_steps, or "time": over max_time_s
    grad_clip: float = 1.0                    # max global grad L2 norm; 0: no clipping
    label_smoothing: float = 0.0              # for the loss helpers in losses.py
    accum_steps: int = 1                      # micro-batches per optimizer update
    amp: str = "auto"                         # "auto" | "bf16" | "off" (see module docstring)
    eval_every: int = 0                       # evaluate every N updates (0: only after the last)
    eval_every_s: float = 0.0                 # and/or every S seconds of the run (0: never)
    checkpoint_every: int = 0                 # checkpoint every N updates (0: at the end/interrupt)
    keep_checkpoints: int = 2                 # newest ckpt-* directories kept in out_dir
    out_dir: str | None = None                # checkpoints + metrics.jsonl (None: none)
    seed: int = 0                             # seeds torch/random/numpy (+ rank) for a fresh run
    log_every: int = 10                       # metrics line every N updates (and at the end)
    progress: bool = True                     # tqdm bar on rank 0 when stderr is a terminal
    reuse_memory: bool = True                 # CPU: malloc keeps freed memory (train/allocator.py)

    def __post_init__(self) -> None:
        def need_int(name: str, low: int, high: int | None = None) -> None:
            value = getattr(self, name)
            if (not isinstance(value, int) or isinstance(value, bool) or value < low
                    or (high is not None and value > high)):
                bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
                raise ValueError(f"TrainConfig.{name} must be an int {bound}, got {value!r}")

        def need_float(name: str, low: float, high: float = math.inf,
                       low_open: bool = False) -> None:
            value = getattr(self, name)
            ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
                  and math.isfinite(value)
                  and (value > low if low_open else value >= low) and value <= high)
            if not ok:
                bound = f"{'(' if low_open else '['}{low}, {high}]"
                raise ValueError(f"TrainConfig.{name} must be a finite number in {bound}, "
                                 f"got {value!r}")

        need_int("max_steps", 1)
        need_float("max_time_s", 0.0)
        need_float("lr", 0.0, low_open=True)
        need_float("min_lr", 0.0)
        if self.min_lr > self.lr:
            raise ValueError(f"TrainConfig.min_lr ({self.min_lr}) must be <= lr ({self.lr})")
        need_float("weight_decay", 0.0)
        if (not isinstance(self.betas, (tuple, list)) or len(self.betas) != 2
                or not all(isinstance(b, (int, float)) and 0.0 <= b < 1.0 for b in self.betas)):
            raise ValueError(f"TrainConfig.betas must be two numbers in [0, 1), got "
                             f"{self.betas!r}")
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        need_float("eps", 0.0, low_open=True)
        need_int("warmup_steps", 0)
        if self.schedule not in SCHEDULES:
            raise ValueError(f"TrainConfig.schedule must be one of {SCHEDULES}, got "
                             f"{self.schedule!r}")
        if self.horizon not in HORIZONS:
            raise ValueError(f"TrainConfig.horizon must be one of {HORIZONS}, got "
                             f"{self.horizon!r}")
        if self.horizon == "time" and self.max_time_s <= 0:
            raise ValueError("TrainConfig.horizon='time' lays the schedule over the time "
                             "budget, so it needs max_time_s > 0")
        need_float("grad_clip", 0.0)
        need_float("label_smoothing", 0.0, 0.999)
        need_int("accum_steps", 1)
        if self.amp not in AMP_MODES:
            raise ValueError(f"TrainConfig.amp must be one of {AMP_MODES}, got {self.amp!r}")
        need_int("eval_every", 0)
        need_float("eval_every_s", 0.0)
        need_int("checkpoint_every", 0)
        need_int("keep_checkpoints", 1)
        if self.out_dir is not None and not isinstance(self.out_dir, (str, Path)):
            raise ValueError(f"TrainConfig.out_dir must be a path string or None, got "
                             f"{self.out_dir!r}")
        if self.out_dir is not None:
            self.out_dir = str(self.out_dir)
        # Seeds past 32 bits overflow torch's generator once the resume re-seeding adds
        # (step, rank) offsets to them.
        need_int("seed", 0, MAX_SEED)
        need_int("log_every", 1)
        for name in ("progress", "fused_optimizer", "reuse_memory"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"TrainConfig.{name} must be a bool, got "
                                 f"{getattr(self, name)!r}")


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` ("auto" | "bf16" | "off") on ``device``, or None (off)."""
    if amp not in AMP_MODES:
        raise ValueError(f"resolve_amp: amp must be one of {AMP_MODES}, got {amp!r}")
    if amp == "off":
        return None
    if amp == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return None  # CPU: float32 (see the module docstring); other devices: off


def build_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW over ``model``'s trainable parameters: decay group first, then no-decay group.

    No decay for parameters with fewer than 2 dims (biases, norm gains) or owned by an
    ``nn.Embedding``/``nn.EmbeddingBag`` (so also for an output layer tied to one).
    """
    embedding_params = {id(p) for module in model.modules()
                        if isinstance(module, (torch.nn.Embedding, torch.nn.EmbeddingBag))
                        for p in module.parameters(recurse=False)}
    decay, no_decay = [], []
    for param in model.parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.dim() < 2 or id(param) in embedding_params else decay).append(param)
    if not decay and not no_decay:
        raise ValueError("build_optimizer: model has no trainable parameters")
    groups = [{"params": params, "weight_decay": wd}
              for params, wd in ((decay, config.weight_decay), (no_decay, 0.0)) if params]
    # The fused kernel updates every parameter in one pass (CPU and CUDA); checkpoints store
    # the choice in their param groups, so a resumed run keeps the kernel it started with.
    fused = config.fused_optimizer and all(
        p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in decay + no_decay)
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, eps=config.eps,
                             fused=fused or None)


def _seed_all(seed: int) -> None:
    torch.manual_seed(seed)  # also seeds every CUDA device
    np.random.seed(seed % 2**32)
    random.seed(seed)


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {key: _to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple
        return type(batch)(*(_to_device(value, device) for value in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(value, device) for value in batch)
    return batch


class Trainer:
    """Trains ``model`` with ``config``; see the module docstring for the contract.

    Args:
        model: the model (already on its device). Under ``torch.distributed`` it is wrapped in
            DDP for training; checkpoints always hold the unwrapped model's state.
        config: a :class:`TrainConfig`.
        batch_fn: ``batch_fn(index, rank, world_size) -> batch``.
        loss_fn: ``loss_fn(model, batch) -> (loss_sum scalar Tensor, num_tokens int)``.
        eval_fn: optional ``eval_fn(model) -> dict[str, float]`` (eval mode, no grad).
        model_config: JSON-able description of the model, stored in checkpoints.
        resume: continue from ``config.out_dir``'s latest checkpoint when there is one
            (otherwise start fresh). A fresh run refuses an ``out_dir`` that already holds
            checkpoints, so it never overwrites or prunes another run's.
        on_plan: with a time budget, called once (rank 0) when the step time has been
            measured (:data:`PLAN_AFTER` updates after the first :data:`PLAN_SKIP` of this
            session) with :meth:`plan`'s dict: what the rest of the budget will hold.
    """

    def __init__(self, model: torch.nn.Module, config: TrainConfig,
                 batch_fn: Callable[[int, int, int], Any],
                 loss_fn: Callable[[torch.nn.Module, Any], tuple[torch.Tensor, int]],
                 eval_fn: Callable[[torch.nn.Module], dict[str, float]] | None = None,
                 model_config: Any = None, *, resume: bool = False,
                 on_plan: Callable[[dict[str, float]], None] | None = None) -> None:
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"Trainer: model must be a torch.nn.Module, got "
                            f"{type(model).__name__}")
        if not isinstance(config, TrainConfig):
            raise TypeError(f"Trainer: config must be a TrainConfig, got "
                            f"{type(config).__name__}")
        for name, fn in (("batch_fn", batch_fn), ("loss_fn", loss_fn)):
            if not callable(fn):
                raise TypeError(f"Trainer: {name} must be callable, got {type(fn).__name__}")
        if on_plan is not None and not callable(on_plan):
            raise TypeError(f"Trainer: on_plan must be callable or None, got "
                            f"{type(on_plan).__name__}")
        if eval_fn is not None and not callable(eval_fn):
            raise TypeError(f"Trainer: eval_fn must be callable or None, got "
                            f"{type(eval_fn).__name__}")
        check_bool(resume, "resume", owner="Trainer")
        if resume and config.out_dir is None:
            raise ValueError("Trainer: resume=True needs config.out_dir (where checkpoints are)")
        self.config = config
        self.model = unwrap_model(model)
        self.batch_fn, self.loss_fn, self.eval_fn = batch_fn, loss_fn, eval_fn
        self.on_plan = on_plan
        self._step_times: list[float] = []  # this session's update times (for the plan)
        self._next_progress: float | None = None  # agreed time progress of the next update
        self._clock = PauseClock()  # detects stops (SIGSTOP/SIGCONT) to keep off the budget
        self._step_paused = 0.0     # seconds of the last update spent stopped
        self.model_config = model_config if model_config is not None else {}
        self.rank, self.world_size = get_rank(), get_world_size()
        first = next(self.model.parameters(), None)
        if first is None:
            raise ValueError("Trainer: model has no parameters")
        self.device = first.device
        self.amp_dtype = resolve_amp(config.amp, self.device)
        if config.reuse_memory and self.device.type == "cpu":
            keep_freed_memory()  # large tensors stop faulting in fresh pages every step
        self.optimizer = build_optimizer(self.model, config)
        self.scheduler = WarmupSchedule(self.optimizer, schedule=config.schedule,
                                        warmup_steps=config.warmup_steps,
                                        max_steps=config.max_steps,
                                        min_lr_ratio=config.min_lr / config.lr)
        self.out_dir = Path(config.out_dir) if config.out_dir is not None else None
        self.step = 0                               # optimizer updates done
        self.history: list[dict[str, Any]] = []     # metric records (train and eval)
        self.resumed_from: int | None = None
        self.last_checkpoint: Path | None = None
        self._saved_step: int | None = None
        self._stop_signal: int | None = None
        self._stop_requested = False
        self._started = time.perf_counter()  # reset by fit(); read by the budget vote
        self._state = {"window": {"loss_sum": 0.0, "tokens": 0, "steps": 0, "train_time": 0.0},
                       "elapsed": 0.0, "paused": 0.0, "tokens_seen": 0, "last_loss": None,
                       "last_eval": None, "next_eval_s": config.eval_every_s}
        checkpoint = self._find_checkpoint(resume)
        if checkpoint is None:
            _seed_all(config.seed + self.rank)
        else:
            self._restore(checkpoint)
        self.train_model = wrap_model(self.model, self.device)

    # ------------------------------------------------------------------ setup and resume

    def _find_checkpoint(self, resume: bool) -> Path | None:
        if self.out_dir is None:
            return None
        found = latest_checkpoint(self.out_dir)
        if found is not None and not resume:
            raise ValueError(f"Trainer: out_dir {str(self.out_dir)!r} already holds checkpoints "
                             f"(latest {found.name}); pass resume=True to continue that run or "
                             f"choose another out_dir")
        return found

    def _restore(self, path: Path) -> None:
        ckpt = load_checkpoint(path, model=self.model, optimizer=self.optimizer)
        saved, current = ckpt.state.get("config") or {}, _jsonable(self.config, "config")
        changed = sorted(k for k in current if k not in _RESUMABLE_CHANGES
                         and saved.get(k) != current[k])
        if current["schedule"] == "cosine" and saved.get("max_steps") != current["max_steps"]:
            changed.append("max_steps (the cosine decays over it)")
        if changed:
            warnings.warn(f"resuming {path} with changed config fields {changed}: the run will "
                          f"not match an uninterrupted one", stacklevel=3)
        self.scheduler.load_state_dict(ckpt.state["scheduler"])
        self.step = ckpt.step
        self.resumed_from = ckpt.step
        self.history = list(ckpt.state["metrics"])
        self._state.update(ckpt.state["extra"])
        self.last_checkpoint, self._saved_step = ckpt.path, ckpt.step
        if len(ckpt.rng) == self.world_size:
            set_rng_state(ckpt.rng[self.rank])
        else:
            warnings.warn(f"{path} holds RNG states for {len(ckpt.rng)} processes, this run has "
                          f"{self.world_size}; re-seeding from (seed, step, rank)", stacklevel=3)
            _seed_all(self.config.seed + 1_000_003 * ckpt.step + self.rank)

    # ------------------------------------------------------------------ the loop

    def fit(self) -> dict[str, Any]:
        """Train until ``config.max_steps`` updates (or a signal); return a summary dict.

        Summary keys: ``step``, ``loss`` (token-mean loss of the last update), ``interrupted``,
        ``signal``, ``resumed_from``, ``checkpoint`` (path of the newest, or None), ``eval``
        (last evaluation), ``tokens`` (tokens trained on, all processes), ``elapsed``
        (seconds of training over all resumptions, stops excluded), ``paused`` (seconds the
        process spent stopped, over all resumptions), ``metrics`` (all metric records).
        """
        cfg = self.config
        self._open_metrics_log()
        previous_handlers = self._install_signal_handlers()
        bar = self._progress_bar()
        self._started = time.perf_counter() - self._state["elapsed"]
        stop, out_of_time = False, False
        clock = self._clock = PauseClock()
        try:
            with clock.installed():
                clock.mark()
                while self.step < cfg.max_steps and not stop and not out_of_time:
                    stop, out_of_time = self._iteration(bar)
        finally:
            if bar is not None:
                bar.close()
            self._restore_signal_handlers(previous_handlers)
        return self._summary(stop)

    def _iteration(self, bar: Any) -> tuple[bool, bool]:
        """One update and what follows it (log, evaluation, checkpoint); returns the
        (stop, out_of_time) votes."""
        cfg = self.config
        step_started = time.perf_counter()
        result = self._train_step(self._progress())
        # _train_step settled the clock before its budget vote: a stop inside the
        # update is not charged to it (nor to the throughput and the plan).
        step_time = max(time.perf_counter() - step_started - self._step_paused, 0.0)
        if step_time > 0.0:  # (0 when the stop was in the previous segment: eval or save)
            self._step_times.append(step_time)
        self.step += 1
        stop, out_of_time = result["stop"], result["out_of_time"]
        self._state["elapsed"] = time.perf_counter() - self._started
        self._discount_pause(self._step_paused, shifted=True)
        self._accumulate(result, step_time)
        # The wall-clock budget ends the run like max_steps does (final eval and
        # checkpoint); it is not an interruption.
        last = self.step == cfg.max_steps or out_of_time
        if self.step % cfg.log_every == 0 or last:
            self._log_train(result)
        # Scheduled evaluations run even when stopping, so the checkpoint (and the RNG
        # state in it) is the one an uninterrupted run would have at this step.
        timed_eval = (cfg.eval_every_s > 0
                      and self._state["elapsed"] >= self._state["next_eval_s"])
        if timed_eval:
            while self._state["next_eval_s"] <= self._state["elapsed"]:
                self._state["next_eval_s"] += cfg.eval_every_s
        if self.eval_fn is not None and (
                last or timed_eval
                or (cfg.eval_every and self.step % cfg.eval_every == 0)):
            self._evaluate()
        if (self.on_plan is not None and self.rank == 0 and cfg.max_time_s > 0
                and len(self._step_times) == PLAN_SKIP + PLAN_AFTER and not last):
            self.on_plan(self.plan())
        if self.out_dir is not None and (
                last or stop or (cfg.checkpoint_every
                                 and self.step % cfg.checkpoint_every == 0)):
            self._save()
        if bar is not None:
            bar.set_postfix(loss=f"{result['loss']:.4f}",
                            tok_s=f"{result['tokens'] / max(step_time, 1e-9):.0f}",
                            refresh=False)
            bar.update(1)
        self._discount_pause(self._clock.settle())  # a stop during eval or save
        return stop, out_of_time

    def _discount_pause(self, paused: float, *, shifted: bool = False) -> None:
        """Take ``paused`` seconds (the process was stopped) off the budget's clock (unless
        already ``shifted``), add them to the run's total and log a ``pause`` event."""
        if paused <= 0.0:
            return
        if not shifted:
            self._started += paused
        self._state["paused"] += paused
        self._state["elapsed"] = time.perf_counter() - self._started
        self._record({"event": "pause", "step": self.step, "seconds": paused,
                      "elapsed": self._state["elapsed"]})

    def _progress(self) -> float | None:
        """With ``horizon="time"``: the fraction of the budget used once the coming update is
        done (None: the horizon is in steps). Every process uses the same value: the mean of
        the processes' estimates, agreed on in the previous update's all-reduce (at the
        first update of a session, the elapsed time stored in the run's state)."""
        if self.config.horizon != "time":
            return None
        if self._next_progress is None:
            return min(self._state["elapsed"] / self.config.max_time_s, 1.0)
        return self._next_progress

    def _local_progress_estimate(self) -> float:
        """This process's estimate of the progress after the next update: time used so far
        plus the mean time of the recent updates."""
        recent = self._step_times[PLAN_SKIP:][-50:] or self._step_times[-1:]
        expected = sum(recent) / len(recent) if recent else 0.0
        elapsed = time.perf_counter() - self._started
        return min((elapsed + expected) / self.config.max_time_s, 1.0)

    def plan(self) -> dict[str, float]:
        """What the rest of the time budget holds at the measured speed: ``step_time`` (mean
        seconds per update, the first :data:`PLAN_SKIP` updates of this session left out),
        ``expected_steps`` (updates when the budget ends, within ``max_steps``),
        ``remaining_s`` and ``budget_s``."""
        timed = self._step_times[PLAN_SKIP:] or self._step_times
        step_time = sum(timed) / max(len(timed), 1)
        remaining = max(self.config.max_time_s - self._state["elapsed"], 0.0)
        expected = self.step + (remaining / step_time if step_time > 0 else 0.0)
        return {"step_time": step_time, "expected_steps": min(expected, self.config.max_steps),
                "remaining_s": remaining, "budget_s": self.config.max_time_s,
                "step": self.step}

    def _train_step(self, progress: float | None = None) -> dict[str, Any]:
        """One optimizer update over ``accum_steps`` micro-batches (all processes)."""
        cfg = self.config
        lr = self.scheduler.apply(progress)
        self.train_model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum, tokens = 0.0, 0
        for micro in range(cfg.accum_steps):
            index = self.step * cfg.accum_steps + micro
            batch = _to_device(self.batch_fn(index, self.rank, self.world_size), self.device)
            last_micro = micro == cfg.accum_steps - 1
            with self._no_sync(not last_micro):
                with self._autocast():
                    micro_loss, micro_tokens = self.loss_fn(self.train_model, batch)
                self._check_loss(micro_loss, micro_tokens, index)
                micro_loss.backward()
            loss_sum += float(micro_loss.detach())
            tokens += int(micro_tokens)
        # One all-reduce for the statistics and the stop flag, so every process agrees on
        # the normalization and on stopping after this same step.
        # The budget vote rides on the same all-reduce: processes whose clocks disagree
        # still stop after the same step.
        self._step_paused = self._clock.settle()
        self._started += self._step_paused  # logged by fit once the step is counted
        over_budget = cfg.max_time_s > 0 and time.perf_counter() - self._started >= cfg.max_time_s
        progress_next = self._local_progress_estimate() if progress is not None else 0.0
        stats = torch.tensor([loss_sum, tokens, float(self._stop_requested), float(over_budget),
                              progress_next], dtype=torch.float64, device=self._stats_device())
        total_loss, total_tokens, stop_votes, budget_votes, progress_sum = \
            all_reduce_sum(stats).tolist()
        if progress is not None:
            self._next_progress = min(progress_sum / self.world_size, 1.0)
        if total_tokens <= 0:
            raise ValueError(f"Trainer: step {self.step + 1} has no tokens to train on "
                             f"(loss_fn returned num_tokens=0 for every micro-batch)")
        # DDP averaged the gradients over processes; undo that and divide by all tokens.
        scale = self.world_size / total_tokens
        params = [p for p in self.model.parameters() if p.grad is not None]
        for param in params:
            param.grad.mul_(scale)
        max_norm = cfg.grad_clip if cfg.grad_clip > 0 else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        self.optimizer.step()
        self.scheduler.step()
        return {"loss": total_loss / total_tokens, "loss_sum": total_loss,
                "tokens": int(total_tokens), "grad_norm": grad_norm, "lr": lr,
                "stop": stop_votes > 0, "out_of_time": budget_votes > 0}

    def _check_loss(self, loss: Any, num_tokens: Any, index: int) -> None:
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            raise TypeError(f"Trainer: loss_fn must return (loss_sum scalar Tensor, num_tokens), "
                            f"got {type(loss).__name__} for micro-batch {index}")
        if not loss.requires_grad:
            raise ValueError(f"Trainer: loss_fn's loss for micro-batch {index} does not require "
                             f"grad; it must come from the model's forward pass")
        if isinstance(num_tokens, torch.Tensor):
            num_tokens = num_tokens.item()
        if isinstance(num_tokens, bool) or not float(num_tokens).is_integer() or num_tokens < 0:
            raise ValueError(f"Trainer: loss_fn's num_tokens must be an int >= 0, got "
                             f"{num_tokens!r} for micro-batch {index}")

    def _no_sync(self, skip_sync: bool):
        if skip_sync and hasattr(self.train_model, "no_sync"):
            return self.train_model.no_sync()  # DDP: all-reduce only on the last micro-batch
        return contextlib.nullcontext()

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _stats_device(self) -> torch.device:
        backend = None
        if self.world_size > 1:
            backend = torch.distributed.get_backend()
        return self.device if backend == "nccl" else torch.device("cpu")

    # ------------------------------------------------------------------ metrics, eval, saving

    def _accumulate(self, result: dict[str, Any], step_time: float) -> None:
        window = self._state["window"]
        window["loss_sum"] += result["loss_sum"]
        window["tokens"] += result["tokens"]
        window["steps"] += 1
        window["train_time"] += step_time
        self._state["tokens_seen"] += result["tokens"]
        self._state["last_loss"] = result["loss"]

    def _log_train(self, result: dict[str, Any]) -> None:
        """Record the window since the last line: token-mean loss, throughput of training."""
        window = self._state["window"]
        record = {"event": "train", "step": self.step,
                  "loss": window["loss_sum"] / max(window["tokens"], 1),
                  "lr": result["lr"], "grad_norm": result["grad_norm"],
                  "tokens_per_s": window["tokens"] / max(window["train_time"], 1e-9),
                  "tokens": self._state["tokens_seen"], "elapsed": self._state["elapsed"]}
        self._state["window"] = {"loss_sum": 0.0, "tokens": 0, "steps": 0, "train_time": 0.0}
        self._record(record)

    def _evaluate(self) -> None:
        if self.rank == 0:
            was_training = self.model.training
            self.model.eval()
            try:
                with torch.no_grad():
                    results = self.eval_fn(self.model)
            finally:
                self.model.train(was_training)
            if not isinstance(results, dict):
                raise TypeError(f"Trainer: eval_fn must return a dict of floats, got "
                                f"{type(results).__name__}")
            results = {str(key): float(value) for key, value in results.items()}
            self._state["last_eval"] = results
            self._record({"event": "eval", "step": self.step, **results,
                          "elapsed": self._state["elapsed"]})
        barrier()

    def _record(self, record: dict[str, Any]) -> None:
        self.history.append(record)
        if self.rank == 0 and self.out_dir is not None:
            with open(self.out_dir / METRICS_FILE, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
                handle.flush()

    def _open_metrics_log(self) -> None:
        """Make metrics.jsonl hold exactly the records up to the current step (rank 0)."""
        if self.rank != 0 or self.out_dir is None:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.out_dir / METRICS_FILE,
                          "".join(json.dumps(record) + "\n" for record in self.history))

    def _save(self) -> None:
        if self._saved_step == self.step:
            return
        rng_states = gather_objects(get_rng_state())  # collective: every process takes part
        if self.rank == 0:
            self.last_checkpoint = save_run_checkpoint(
                self.out_dir, step=self.step, keep_last=self.config.keep_checkpoints,
                model=self.model, optimizer=self.optimizer, config=self.config,
                model_config=self.model_config, scheduler=self.scheduler,
                metrics=self.history, rng=rng_states, extra=self._state)
        elif self.out_dir is not None:
            self.last_checkpoint = self.out_dir / f"ckpt-{self.step:08d}"
        self._saved_step = self.step
        barrier()  # nobody runs ahead of (or exits before) a checkpoint

    def _summary(self, stopped: bool) -> dict[str, Any]:
        name = signal.Signals(self._stop_signal).name if self._stop_signal else None
        if stopped and name is None and not self._stop_requested:
            name = "remote"  # another process was signalled
        return {"step": self.step, "loss": self._state["last_loss"], "interrupted": stopped,
                "out_of_time": self.config.max_time_s > 0
                and self._state["elapsed"] >= self.config.max_time_s,
                "signal": name, "resumed_from": self.resumed_from,
                "checkpoint": str(self.last_checkpoint) if self.last_checkpoint else None,
                "eval": self._state["last_eval"], "tokens": self._state["tokens_seen"],
                "elapsed": self._state["elapsed"], "paused": self._state["paused"],
                "metrics": list(self.history)}

    # ------------------------------------------------------------------ progress and signals

    def _progress_bar(self):
        is_tty = getattr(sys.stderr, "isatty", lambda: False)()
        if not (self.config.progress and self.rank == 0 and is_tty):
            return None
        try:
            from tqdm.auto import tqdm
        except ImportError:
            warnings.warn("progress bar needs tqdm: pip install 'attnkit[train]'", stacklevel=3)
            return None
        return tqdm(total=self.config.max_steps, initial=self.step, unit="step",
                    dynamic_ncols=True, desc="train")

    def request_stop(self) -> None:
        """Stop after the current step, with a checkpoint, as SIGINT/SIGTERM do."""
        self._stop_requested = True

    @property
    def stop_requested(self) -> bool:
        return self._stop_requested

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._stop_signal is None:
            self._stop_signal = signum
        self._stop_requested = True
        # A second signal of the same kind does what it would have done without us.
        signal.signal(signum, self._previous_handlers.get(signum, signal.SIG_DFL))

    def _install_signal_handlers(self) -> dict[int, Any]:
        self._previous_handlers: dict[int, Any] = {}
        if threading.current_thread() is not threading.main_thread():
            return {}  # signal handlers can only be set from the main thread
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous_handlers[signum] = signal.getsignal(signum)
            signal.signal(signum, self._on_signal)
        return dict(self._previous_handlers)

    @staticmethod
    def _restore_signal_handlers(previous: dict[int, Any]) -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
