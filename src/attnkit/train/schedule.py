"""Learning-rate schedules: linear warmup, then inverse square root, cosine or constant.

* ``inverse_sqrt`` - the schedule of "Attention Is All You Need" (Vaswani et al., 2017,
  arXiv:1706.03762, section 5.3): linear warmup to the peak, then decay as
  ``sqrt(warmup / step)``. Deviation: the paper also scales the peak by
  ``d_model ** -0.5``; here the peak is the configured ``lr``.
* ``cosine`` - SGDR's cosine annealing (Loshchilov & Hutter, 2016, arXiv:1608.03983),
  one cycle without restarts, from the peak at the end of warmup down to ``min_lr`` at
  ``max_steps`` (and held there after it).
* ``constant`` - warmup, then the peak for ever.

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

import torch

from attnkit._validate import check_choice, check_float, check_int

__all__ = ["SCHEDULES", "lr_factor", "WarmupSchedule"]

SCHEDULES = ("inverse_sqrt", "cosine", "constant")


def lr_factor(update: int, *, schedule: str, warmup_steps: int, max_steps: int,
              min_lr_ratio: float = 0.0) -> float:
    """Multiplier of the peak learning rate for the ``update``-th optimizer update.

    Args:
        update: 1-based index of the optimizer update (``update >= 1``).
        schedule: ``"inverse_sqrt"``, ``"cosine"`` or ``"constant"``.
        warmup_steps: number of linear-warmup updates (0 disables warmup).
        max_steps: total number of updates; the cosine reaches ``min_lr_ratio`` there.
        min_lr_ratio: ``min_lr / lr`` for the cosine schedule, in ``[0, 1]``.

    Returns:
        a float in ``(0, 1]`` (``[min_lr_ratio, 1]`` for the cosine).
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
    progress = min((update - warmup_steps) / decay_steps, 1.0)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class WarmupSchedule:
    """Sets every param group's ``lr`` to ``peak_lr * lr_factor(update)`` before each update.

    Usage per optimizer update: ``schedule.apply()`` (sets the lr for the coming update),
    ``optimizer.step()``, ``schedule.step()`` (counts it). ``state_dict()`` is
    ``{"step": updates_done}``.

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

    def factor(self) -> float:
        """Multiplier for the coming update (number ``last_step + 1``)."""
        return lr_factor(self.last_step + 1, schedule=self.schedule,
                         warmup_steps=self.warmup_steps, max_steps=self.max_steps,
                         min_lr_ratio=self.min_lr_ratio)

    def apply(self) -> float:
        """Set the lr of every group for the coming update; return the first group's lr."""
        factor = self.factor()
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * factor
        return self.optimizer.param_groups[0]["lr"]

    def step(self) -> None:
        """Count one optimizer update."""
        self.last_step += 1

    def get_last_lr(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, int]:
        return {"step": self.last_step}

    def load_state_dict(self, state: dict) -> None:
        step = state.get("step") if isinstance(state, dict) else None
        if not isinstance(step, int) or isinstance(step, bool) or step < 0:
            raise ValueError(f"WarmupSchedule.load_state_dict: expected {{'step': int >= 0}}, "
                             f"got {state!r}")
        self.last_step = step
