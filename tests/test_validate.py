"""attnkit._validate: the one copy of the argument rules every layer uses."""

from __future__ import annotations

import argparse
import math
import os

import pytest

from attnkit._validate import (
    arg_float,
    arg_int,
    check_bool,
    check_choice,
    check_float,
    check_int,
    existing_dir,
    output_dir,
    output_file,
    safe_name,
)
from attnkit.errors import UserError


@pytest.mark.parametrize("value", [True, 1.0, "3", None])
def test_check_int_refuses_non_ints_with_a_type_error_naming_the_argument(value):
    with pytest.raises(TypeError, match="num_heads"):
        check_int(value, "num_heads", minimum=1)


def test_check_int_bounds_and_owner():
    assert check_int(4, "n", minimum=1, maximum=4) == 4
    with pytest.raises(ValueError, match=r"GPTConfig: n_layer must be >= 1, got 0"):
        check_int(0, "n_layer", minimum=1, owner="GPTConfig")
    with pytest.raises(ValueError, match="<= 4"):
        check_int(5, "n", maximum=4)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_check_float_refuses_nan_and_inf(value):
    with pytest.raises(ValueError, match="dropout"):
        check_float(value, "dropout", low=0.0, high=1.0)


def test_check_float_interval_ends():
    assert check_float(0, "p", low=0.0, high=1.0, high_open=True) == 0.0
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        check_float(1.0, "p", low=0.0, high=1.0, high_open=True)
    with pytest.raises(ValueError, match=r"\(0, inf\]"):
        check_float(0.0, "lr", low=0.0, low_open=True)
    assert check_float(math.inf, "t", low=0.0, allow_inf=True) == math.inf
    with pytest.raises(TypeError, match="lr"):
        check_float(True, "lr")


def test_check_choice_and_bool():
    assert check_choice("fr", "lang", ["fr", "de"]) == "fr"
    with pytest.raises(ValueError, match=r"lang must be one of \['fr', 'de'\], got 'en'"):
        check_choice("en", "lang", ["fr", "de"])
    with pytest.raises(ValueError):
        check_choice(True, "flag", [1, 0])  # True == 1, but a bool is not the int 1 here
    with pytest.raises(TypeError, match="causal"):
        check_bool(1, "causal")


@pytest.mark.parametrize("text", ["0", "-5", "x", "1.5", "nan"])
def test_arg_int_refuses(text):
    with pytest.raises(argparse.ArgumentTypeError):
        arg_int(1)(text)


@pytest.mark.parametrize("text", ["0", "-1", "inf", "nan", "abc"])
def test_arg_float_refuses(text):
    with pytest.raises(argparse.ArgumentTypeError):
        arg_float(0.0, low_open=True)(text)


def test_arg_parsers_accept_good_values():
    assert arg_int(1, 8)("8") == 8
    assert arg_float(0.0, low_open=True)("1e-3") == pytest.approx(1e-3)


def test_output_dir_checks_without_creating(tmp_path):
    target = tmp_path / "a" / "b"
    assert output_dir(target) == target
    assert not target.exists()
    output_dir(target, create=True)
    assert target.is_dir()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="--out"):
        output_dir(blocker / "sub")
    with pytest.raises(UserError, match="not a folder"):
        output_dir(blocker)
    assert not any(p.name.startswith(".attnkit-probe") for p in tmp_path.iterdir())


def test_output_file_refuses_folders_and_device_nodes(tmp_path):
    assert output_file(tmp_path / "x.json", "--json") == tmp_path / "x.json"
    with pytest.raises(UserError, match="--json: .* is a folder"):
        output_file(tmp_path, "--json")
    if os.path.exists("/dev/null"):
        with pytest.raises(UserError, match="not a regular file"):
            output_file("/dev/null", "--json")


@pytest.mark.parametrize("name", ["../x", "a/b", ".hidden", "", "a..b", "/abs", "x" * 200])
def test_safe_name_refuses_anything_that_could_leave_its_folder(name):
    with pytest.raises(UserError, match="--name"):
        safe_name(name)


def test_safe_name_and_existing_dir(tmp_path):
    assert safe_name("attention-1k_v2.0") == "attention-1k_v2.0"
    assert existing_dir(tmp_path, "--debs") == tmp_path
    with pytest.raises(UserError, match="--debs: .* does not exist"):
        existing_dir(tmp_path / "nope", "--debs")


def test_user_error_is_one_line():
    assert str(UserError("a\n  b\tc")) == "a b c"
