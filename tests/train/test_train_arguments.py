"""Argument checks of the training loop's public entry points: wrong types and values are
refused up front with the argument's name, never deep inside torch."""

from __future__ import annotations

import pytest
import torch

from attnkit.train import TrainConfig, Trainer, WarmupSchedule
from attnkit.train.schedule import lr_factor

BASE = {"schedule": "cosine", "warmup_steps": 2, "max_steps": 10}


@pytest.mark.parametrize("value", [float("inf"), float("nan"), -1.0])
def test_time_budget_must_be_finite(value):
    with pytest.raises(ValueError, match="max_time_s"):
        TrainConfig(max_time_s=value)


def test_seed_beyond_the_generator_is_refused():
    with pytest.raises(ValueError, match="TrainConfig.seed"):
        TrainConfig(seed=2**64)
    assert TrainConfig(seed=2**32 - 1).seed == 2**32 - 1


@pytest.mark.parametrize("kwargs, error, name", [
    ({"update": True}, TypeError, "update"), ({"update": 1.5}, TypeError, "update"),
    ({"warmup_steps": 1.5}, TypeError, "warmup_steps"), ({"max_steps": "5"}, TypeError,
                                                         "max_steps"),
    ({"max_steps": 0}, ValueError, "max_steps"),
    ({"min_lr_ratio": float("nan")}, ValueError, "min_lr_ratio"),
    ({"schedule": ["cosine"]}, ValueError, "schedule"),
])
def test_lr_factor_names_the_bad_argument(kwargs, error, name):
    arguments = {"update": 1, **BASE, **kwargs}
    with pytest.raises(error, match=name):
        lr_factor(arguments.pop("update"), **arguments)


def test_schedule_and_trainer_types():
    with pytest.raises(TypeError, match="optimizer"):
        WarmupSchedule("adam", **BASE)
    with pytest.raises(TypeError, match="resume"):
        Trainer(torch.nn.Linear(2, 2), TrainConfig(), lambda *a: None, lambda *a: None,
                resume="yes")
