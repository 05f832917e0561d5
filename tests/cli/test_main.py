"""The protocol of ``attnkit.cli.main``: registry, lazy imports, exit codes and messages."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

from attnkit import cli
from attnkit.errors import UserError


@pytest.fixture
def fake_command(monkeypatch):
    """Register a command ``fake`` whose ``run`` raises what the test puts in ``raises``."""
    module = types.ModuleType("attnkit_test_fake_command")
    module.HELP = "a command for tests"
    module.raises = None

    def add_parser(subparsers):
        parser = subparsers.add_parser("fake", help=module.HELP)
        parser.add_argument("--count", type=int, default=1)
        return parser

    def run(args):
        if module.raises is not None:
            raise module.raises
        return args.count

    module.add_parser, module.run = add_parser, run
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(cli.COMMANDS, "fake", module.__name__)
    return module


def test_run_returns_the_exit_code(fake_command):
    assert cli.main(["fake", "--count", "7"]) == 7


def test_user_error_is_one_line_and_exit_2(fake_command, capsys):
    fake_command.raises = UserError("--out: cannot write in /nowhere:\n  read-only")
    assert cli.main(["fake"]) == 2
    assert capsys.readouterr().err == ("attnkit fake: error: --out: cannot write in /nowhere: "
                                       "read-only\n")


def test_keyboard_interrupt_is_one_line_and_exit_130(fake_command, capsys):
    fake_command.raises = KeyboardInterrupt()
    assert cli.main(["fake"]) == 130
    assert capsys.readouterr().err == "attnkit fake: interrupted\n"


def test_other_exceptions_are_bugs_and_keep_their_traceback(fake_command):
    fake_command.raises = RuntimeError("a bug")
    with pytest.raises(RuntimeError, match="a bug"):
        cli.main(["fake"])


def test_usage_error_is_one_line_with_the_help_pointer(fake_command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["fake", "--count", "many"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("attnkit fake: error: argument --count") and "--help" in err


def test_running_a_command_imports_no_other_command(fake_command, monkeypatch):
    """A broken or slow sibling command cannot break (or slow down) another one."""
    monkeypatch.setitem(cli.COMMANDS, "broken", "attnkit_test_no_such_module")
    assert cli.main(["fake"]) == 1


def test_top_level_help_lists_every_command():
    proc = subprocess.run([sys.executable, "-m", "attnkit", "--help"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for name in cli.COMMANDS:
        assert name in proc.stdout



@pytest.mark.parametrize("argv", [[], ["nonsense"], ["--nonsense"]])
def test_missing_or_unknown_command_exits_2_with_one_line(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_python_dash_m_attnkit_runs_main():
    proc = subprocess.run([sys.executable, "-m", "attnkit", "bench", "overhead", "--repeats",
                           "0"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("attnkit bench overhead: error: argument --repeats")
