"""Learning-rate schedules: linear warmup, then inverse square root, cosine, linear or constant.

* ``inverse_sqrt`` - the schedule of "Attention Is All You Need" (Vaswani et al., 2017,
  arXiv:1706.03762, section 5.3): linear warmup to the peak, then decay as
  ``sqrt(warmup / step)``. Deviation: the paper also scales the peak by
  ``d_model ** -0.5``; here the peak is the configured ``lr``.
* ``cosine`` - SGDR's cosine annealing (Loshchilov & Hutter, 2016, arXiv:1608.03983),
  one cycle without restarts, from the peak at the end of warmup down to ``min_lr`` at
  ``max_steps`` (and held there after it).
* ``linear`` - warmup, then a straight line from the peak down to ``min_lr`` at
  ``max_steps`` (held there after it): the decay that does best when a run is short and
  its end is known (it ends at a low learning rate, where the last updates average out
  the noise of the earlier ones).
* ``constant`` - warmup, then the peak for ever.

The decay of ``cosine`` and ``linear`` is laid over a horizon. By default the horizon is
``max_steps`` updates. A run bounded by wall-clock time instead passes its *progress*, the
fraction of the time budget that will have been used once the coming update is done
(:meth:`WarmupSchedule.apply`); the decay then runs from the end of warmup to the end of
the budget whatever the speed of the machine, so a slow machine still completes its
schedule with fewer, not unfinished, updates. Warmup is always counted in updates (it
exists to let Adam's moment estimates settle, which takes updates, not seconds).

Steps are counted the way the trainer counts optimizer updates: the ``n``-th update
(``n = 1, 2, ...``) uses ``lr * lr_factor(n)``. During warmup ``lr_factor(n) = n / warmup``,
so the first update already moves (no wasted step at lr 0) and update ``warmup`` reaches
the peak; every schedule is continuous there.

:class:`WarmupSchedule` drives an optimizer like ``torch.optim.lr_scheduler.LambdaLR`` but its
whole state is the number of updates done, so a resumed run sets exactly the same learning
rates as an uninterrupted one.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from attnkit._validate import check_choice, check_float, check_int

__all__ = ["SCHEDULES", "DECAYING", "lr_factor", "decay_factor", "WarmupSchedule"]

SCHEDULES = ("inverse_sqrt", "cosine", "linear", "constant")
DECAYING = ("cosine", "linear")  # the schedules that end at a horizon


def decay_factor(progress: float, *, schedule: str, min_lr_ratio: float = 0.0) -> float:
    """Multiplier of the peak after warmup, ``progress`` in ``[0, 1]`` of the way from the end
    of warmup to the horizon (clamped), for the ``cosine`` or ``linear`` schedule."""
    check_choice(schedule, "schedule", DECAYING, owner="decay_factor")
    check_float(progress, "progress", owner="decay_factor")
    progress = min(max(float(progress), 0.0), 1.0)
    shape = (1.0 - progress if schedule == "linear"
             else 0.5 * (1.0 + math.cos(math.pi * progress)))
    return min_lr_ratio + (1.0 - min_lr_ratio) * shape


def lr_factor(update: int, *, schedule: str, warmup_steps: int, max_steps: int,
              min_lr_ratio: float = 0.0) -> float:
    """Multiplier of the peak learning rate for the ``update``-th optimizer update.

    Args:
        update: 1-based index of the optimizer update (``update >= 1``).
        schedule: one of :data:`SCHEDULES`.
        warmup_steps: number of linear-warmup updates (0 disables warmup).
        max_steps: total number of updates; cosine and linear reach ``min_lr_ratio`` there.
        min_lr_ratio: ``min_lr / lr`` for cosine and linear, in ``[0, 1]``.

    Returns:
        a float in ``(0, 1]`` (``[min_lr_ratio, 1]`` for cosine and linear).
    """
    check_choice(schedule, "schedule", SCHEDULES, owner="lr_factor")
    check_int(update, "update (1-based)", minimum=1, owner="lr_factor")
    check_int(warmup_steps, "warmup_steps", minimum=0, owner="lr_factor")
    check_int(max_steps, "max_steps", minimum=1, owner="lr_factor")
    check_float(min_lr_ratio, "min_lr_ratio", low=0.0, high=1.0, owner="lr_factor")
    if update < warmup_steps:
        return update / warmup_steps
    if schedule == "constant":
        return 1.0
    if schedule == "inverse_sqrt":
        return math.sqrt(max(warmup_steps, 1) / update)
    decay_steps = max(max_steps - warmup_steps, 1)
    return decay_factor((update - warmup_steps) / decay_steps, schedule=schedule,
                        min_lr_ratio=min_lr_ratio)


class WarmupSchedule:
    """Sets every param group's ``lr`` to ``peak_lr * lr_factor(update)`` before each update.

    Usage per optimizer update: ``schedule.apply()`` (sets the lr for the coming update),
    ``optimizer.step()``, ``schedule.step()`` (counts it). ``state_dict()`` is
    ``{"step": updates_done, "warmup_end": progress or None}``.

    Time horizon: ``apply(progress=p)`` with ``p`` the fraction of the time budget used once
    the coming update is done. The decay of ``cosine``/``linear`` then runs over progress,
    from where warmup ended (remembered in ``warmup_end``) to 1; ``max_steps`` only bounds
    the run. ``inverse_sqrt`` and ``constant`` have no horizon and ignore ``progress``.

    Args:
        optimizer: the optimizer whose param groups are driven; each group's peak is its
            ``lr`` when the schedule is created (stored as ``group["initial_lr"]``).
        schedule, warmup_steps, max_steps, min_lr_ratio: see :func:`lr_factor`.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, *, schedule: str, warmup_steps: int,
                 max_steps: int, min_lr_ratio: float = 0.0) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"WarmupSchedule: optimizer must be a torch.optim.Optimizer, got "
                            f"{type(optimizer).__name__}")
        lr_factor(1, schedule=schedule, warmup_steps=warmup_steps, max_steps=max_steps,
                  min_lr_ratio=min_lr_ratio)  # validates the arguments once, up front
        self.optimizer = optimizer
        self.schedule = schedule
        self.warmup_steps = warmup_steps
        self.max_steps = max_steps
        self.min_lr_ratio = min_lr_ratio
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.last_step = 0  # optimizer updates done
        self.warmup_end: float | None = None  # time progress when warmup ended

    def factor(self, progress: float | None = None) -> float:
        """Multiplier for the coming update (number ``last_step + 1``); ``progress`` (in
        ``[0, 1]``, see the class docstring) lays the decay over a time budget."""
        update = self.last_step + 1
        if progress is None or self.schedule not in DECAYING or update < self.warmup_steps:
            return lr_factor(update, schedule=self.schedule, warmup_steps=self.warmup_steps,
                             max_steps=self.max_steps, min_lr_ratio=self.min_lr_ratio)
        check_float(progress, "progress", owner="WarmupSchedule")
        if self.warmup_end is None:
            # The first update after warmup runs at the peak; the decay starts from there
            # (from 0 without warmup, so that it spans the whole budget).
            self.warmup_end = 0.0 if self.warmup_steps == 0 else min(max(float(progress),
                                                                         0.0), 1.0)
        span = max(1.0 - self.warmup_end, 1e-9)
        return decay_factor((progress - self.warmup_end) / span, schedule=self.schedule,
                            min_lr_ratio=self.min_lr_ratio)

    def apply(self, progress: float | None = None) -> float:
        """Set the lr of every group for the coming update; return the first group's lr.

        Args:
            progress: with a time budget, the fraction of it used once this update is done
                (None: the decay runs over ``max_steps`` updates).
        """
        factor = self.factor(progress)
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * factor
        return self.optimizer.param_groups[0]["lr"]

    def step(self) -> None:
        """Count one optimizer update."""
        self.last_step += 1

    def get_last_lr(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.last_step, "warmup_end": self.warmup_end}

    def load_state_dict(self, state: dict) -> None:
        step = state.get("step") if isinstance(state, dict) else None
        warmup_end = state.get("warmup_end") if isinstance(state, dict) else None
        if (not isinstance(step, int) or isinstance(step, bool) or step < 0
                or not (warmup_end is None or (isinstance(warmup_end, (int, float))
                                               and 0.0 <= warmup_end <= 1.0))):
            raise ValueError(f"WarmupSchedule.load_state_dict: expected {{'step': int >= 0, "
                             f"'warmup_end': None or a float in [0, 1]}}, got {state!r}")
        self.last_step = step
        self.warmup_end = None if warmup_end is None else float(warmup_end)
