"""Learning-rate schedules: warmup shape, continuity at the end of warmup, endpoints, resume."""

from __future__ import annotations

import math

import pytest
import torch

from attnkit.train.schedule import WarmupSchedule, lr_factor


def factors(schedule: str, warmup: int, max_steps: int, min_lr_ratio: float = 0.0,
            upto: int | None = None) -> list[float]:
    return [lr_factor(n, schedule=schedule, warmup_steps=warmup, max_steps=max_steps,
                      min_lr_ratio=min_lr_ratio) for n in range(1, (upto or max_steps) + 1)]


@pytest.mark.parametrize("schedule", ["inverse_sqrt", "cosine", "linear", "constant"])
def test_warmup_is_linear_from_the_first_update(schedule):
    values = factors(schedule, warmup=8, max_steps=40)
    assert values[:8] == pytest.approx([n / 8 for n in range(1, 9)])
    assert values[0] > 0  # the first update already moves
    assert values[7] == pytest.approx(1.0)  # peak at update == warmup


def test_inverse_sqrt_is_continuous_at_warmup_end_and_decays_as_inverse_sqrt():
    warmup = 10
    values = factors("inverse_sqrt", warmup=warmup, max_steps=100)
    assert values[warmup - 2] == pytest.approx((warmup - 1) / warmup)
    assert values[warmup - 1] == pytest.approx(1.0)
    assert values[warmup] == pytest.approx(math.sqrt(warmup / (warmup + 1)))
    assert values[4 * warmup - 1] == pytest.approx(0.5)  # sqrt(10 / 40)
    after = values[warmup - 1:]
    assert all(a > b for a, b in zip(after, after[1:], strict=False))
    # jump across the warmup boundary is no larger than one warmup increment
    assert abs(values[warmup] - values[warmup - 1]) < 1 / warmup


def test_inverse_sqrt_without_warmup_starts_at_peak():
    assert factors("inverse_sqrt", warmup=0, max_steps=4) == pytest.approx(
        [1.0, 1 / math.sqrt(2), 1 / math.sqrt(3), 0.5])


def test_cosine_reaches_min_lr_at_max_steps_and_stays():
    values = factors("cosine", warmup=10, max_steps=110, min_lr_ratio=0.1, upto=130)
    assert values[9] == pytest.approx(1.0)
    assert values[59] == pytest.approx(0.1 + 0.9 * 0.5)  # halfway through the decay
    assert values[109] == pytest.approx(0.1)
    assert values[110:] == pytest.approx([0.1] * 20)
    decay = values[9:110]
    assert all(a >= b for a, b in zip(decay, decay[1:], strict=False))


def test_constant_after_warmup():
    assert factors("constant", warmup=3, max_steps=10)[2:] == [1.0] * 8


@pytest.mark.parametrize("kwargs, message", [
    ({"schedule": "linear-ish"}, "schedule"),
    ({"warmup_steps": -1}, "warmup_steps"),
    ({"min_lr_ratio": 1.5}, "min_lr_ratio"),
])
def test_bad_arguments_are_named(kwargs, message):
    base = {"schedule": "cosine", "warmup_steps": 2, "max_steps": 10, "min_lr_ratio": 0.0}
    with pytest.raises(ValueError, match=message):
        lr_factor(1, **{**base, **kwargs})
    with pytest.raises(ValueError, match="update"):
        lr_factor(0, **base)


def _optimizer(lr: float = 0.1) -> torch.optim.Optimizer:
    params = [torch.nn.Parameter(torch.zeros(2))]
    return torch.optim.SGD([{"params": params}, {"params": [torch.nn.Parameter(torch.zeros(1))],
                                                 "lr": lr / 2}], lr=lr)


def test_schedule_drives_every_group_and_resumes_from_its_step():
    opt = _optimizer()
    sched = WarmupSchedule(opt, schedule="cosine", warmup_steps=2, max_steps=6, min_lr_ratio=0.0)
    lrs = []
    for _ in range(6):
        lrs.append(sched.apply())
        assert opt.param_groups[1]["lr"] == pytest.approx(lrs[-1] / 2)
        sched.step()
    assert lrs[0] == pytest.approx(0.05) and lrs[1] == pytest.approx(0.1)
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12)

    state = {"step": 3}
    resumed = WarmupSchedule(_optimizer(), schedule="cosine", warmup_steps=2, max_steps=6)
    resumed.load_state_dict(state)
    tail = []
    for _ in range(3):
        tail.append(resumed.apply())
        resumed.step()
    assert tail == lrs[3:]  # exactly the same floats
    assert resumed.state_dict() == {"step": 6, "warmup_end": None}
    with pytest.raises(ValueError, match="step"):
        resumed.load_state_dict({"step": -1})


def test_linear_reaches_min_lr_at_max_steps_and_stays():
    values = factors("linear", warmup=10, max_steps=110, min_lr_ratio=0.1, upto=130)
    assert values[9] == pytest.approx(1.0)
    assert values[59] == pytest.approx(0.1 + 0.9 * 0.5)
    assert values[109] == pytest.approx(0.1)
    assert values[110:] == pytest.approx([0.1] * 20)
    decay = values[9:110]
    steps = [a - b for a, b in zip(decay, decay[1:], strict=False)]
    assert steps == pytest.approx([0.9 / 100] * 100)  # a straight line


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_time_horizon_decays_over_progress_from_the_end_of_warmup(schedule):
    opt = _optimizer(lr=1.0)
    sched = WarmupSchedule(opt, schedule=schedule, warmup_steps=4, max_steps=10**6)
    # Warmup is counted in updates whatever the progress.
    lrs = []
    for update in range(1, 4):
        lrs.append(sched.apply(progress=0.01 * update))
        sched.step()
    assert lrs == pytest.approx([0.25, 0.5, 0.75])
    # Update 4 ends warmup at progress 0.2: it runs at the peak, and the decay spans
    # [0.2, 1] of the budget, however many updates that takes.
    assert sched.apply(progress=0.2) == pytest.approx(1.0)
    sched.step()
    assert sched.state_dict() == {"step": 4, "warmup_end": 0.2}
    assert sched.apply(progress=0.6) == pytest.approx(0.5)  # halfway for both shapes
    sched.step()
    assert sched.apply(progress=1.0) == pytest.approx(0.0, abs=1e-12)
    assert sched.apply(progress=1.5) == pytest.approx(0.0, abs=1e-12)  # clamped
    # A resumed schedule remembers where warmup ended.
    resumed = WarmupSchedule(_optimizer(lr=1.0), schedule=schedule, warmup_steps=4,
                             max_steps=10**6)
    resumed.load_state_dict({"step": 5, "warmup_end": 0.2})
    assert resumed.apply(progress=0.6) == pytest.approx(0.5)


def test_time_horizon_without_warmup_spans_the_whole_budget():
    sched = WarmupSchedule(_optimizer(lr=1.0), schedule="linear", warmup_steps=0, max_steps=5)
    assert sched.apply(progress=0.25) == pytest.approx(0.75)
    assert sched.warmup_end == 0.0


@pytest.mark.parametrize("schedule", ["inverse_sqrt", "constant"])
def test_schedules_without_a_horizon_ignore_progress(schedule):
    a = WarmupSchedule(_optimizer(), schedule=schedule, warmup_steps=2, max_steps=10)
    b = WarmupSchedule(_optimizer(), schedule=schedule, warmup_steps=2, max_steps=10)
    for update in range(6):
        assert a.apply(progress=update / 6) == b.apply()
        a.step()
        b.step()


@pytest.mark.parametrize("state", [{"step": 1, "warmup_end": 1.5}, {"step": 1, "warmup_end": "x"},
                                   {"warmup_end": 0.1}])
def test_bad_schedule_state_is_refused(state):
    sched = WarmupSchedule(_optimizer(), schedule="linear", warmup_steps=2, max_steps=10)
    with pytest.raises(ValueError, match="warmup_end"):
        sched.load_state_dict(state)
