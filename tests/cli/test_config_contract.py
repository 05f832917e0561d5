"""The Python side of the entry-point contract: every experiment config refuses a bad value
of every field with a ValueError or TypeError that names the field.

The configs are the Python entry points behind the commands (``TranslateConfig(...)`` is
what ``attnkit translate`` builds); each numeric field meets NaN, infinities, -1, a string
and a bool, each list field a string, an empty list and bad entries, each choice an unknown
name and a non-string, each path a non-path. The translate config also refuses what its
command line refuses (the bounds of the argparse types), so a library caller cannot start
the run the command would have stopped.
"""

from __future__ import annotations

import argparse
import dataclasses
import math

import pytest

from attnkit import cli
from attnkit.experiments.induction.config import InductionConfig
from attnkit.experiments.longrange.config import LongRangeConfig
from attnkit.experiments.pairs.config import PairsConfig
from attnkit.experiments.snail.config import SnailRunConfig
from attnkit.experiments.translate.config import TranslateConfig
from attnkit.experiments.vision.config import ChannelConfig, GlimpseConfig

CONFIGS = [TranslateConfig, LongRangeConfig, InductionConfig, ChannelConfig, GlimpseConfig,
           SnailRunConfig, PairsConfig]
PATHS = ("out", "data_dir", "root")
NUMBERS = [math.nan, math.inf, -math.inf, -1, "x", True]


def _bad_values(field: dataclasses.Field, default) -> list:
    if isinstance(default, bool):
        return ["x", 1, None]
    if field.name in PATHS:
        return [3, b"runs"]
    if isinstance(default, (int, float)) or field.type in ("int | None", "float | None"):
        return NUMBERS
    if isinstance(default, list):
        return ["x", [], [math.nan], [-1], ["no-such-entry"], None]
    if isinstance(default, str):
        return ["no-such-choice", 3, None]
    return []


def _cases():
    for config in CONFIGS:
        defaults = config()
        for field in dataclasses.fields(config):
            for value in _bad_values(field, getattr(defaults, field.name)):
                yield pytest.param(config, field.name, value,
                                   id=f"{config.__name__}-{field.name}-{value!r}")


@pytest.mark.parametrize("config, name, value", list(_cases()))
def test_a_bad_field_raises_naming_it(config, name, value):
    with pytest.raises((ValueError, TypeError)) as info:
        config(**{name: value})
    assert name in str(info.value)


def _translate_bounds():
    parser = cli.build_parser("translate")
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    train = next(a for a in sub.choices["translate"]._actions
                 if isinstance(a, argparse._SubParsersAction)).choices["train"]
    fields = {f.name for f in dataclasses.fields(TranslateConfig)}
    for action in train._actions:
        kind = getattr(action.type, "__name__", None)
        if action.dest not in fields or kind not in ("integer", "number"):
            continue
        high = action.type.maximum if kind == "integer" else action.type.high
        if high is not None:
            yield pytest.param(action.dest, high, kind, id=action.dest)


@pytest.mark.parametrize("name, high, kind", list(_translate_bounds()))
def test_translate_config_refuses_what_its_command_line_refuses(name, high, kind):
    beyond = high + 1 if kind == "integer" else high * 2 + 1
    with pytest.raises(ValueError, match=name):
        TranslateConfig(**{name: beyond})


def test_translate_config_bounds_the_length_penalty():
    # ((5 + n) / 6) ** alpha overflows to inf for a long output and a huge alpha, which would
    # tie every finished beam hypothesis at score 0 without a word
    assert TranslateConfig(length_penalty=10.0).length_penalty == 10.0
    for bad in (10.5, 1e30, float("inf"), -0.1):
        with pytest.raises(ValueError, match="length_penalty"):
            TranslateConfig(length_penalty=bad)
