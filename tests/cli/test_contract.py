"""The command-line contract: a bad argument exits 2 with one line on stderr, no traceback,
and before any work starts.

Every flag of ``check`` and of every ``bench`` suite meets every class of bad value that
applies to it (zero, negative, inf, NaN, non-numbers, empty, unknown choices, unwritable
paths, traversal in names). The library calls that would do the work are replaced by a
function that fails the test, so "before any work" is checked, not assumed. A last test
runs over every command in ``attnkit.cli.COMMANDS``: ``--help`` and an unknown option.
"""

from __future__ import annotations

import pytest

from attnkit import cli

BAD_COUNTS = ["0", "-5", "inf", "nan", "abc", "1.5", "", "1e3"]  # flags that take an int >= 1
BAD_POSITIVE_FLOATS = ["0", "-1", "inf", "-inf", "nan", "abc", ""]
BAD_NAMES = ["../../x", "/tmp/x", "a/b", "..", ".hidden", "", "a b"]
# Output paths nobody can write: {file} is a regular file in tmp_path.
BAD_OUT_DIRS = ["{file}", "{file}/sub", "/proc/attnkit-contract"]
BAD_OUT_FILES = ["{tmp}", "", "{file}/sub/rows.json", "/proc/attnkit-contract/rows.json"]

WORK = [  # (module, attribute): the calls that measure or check anything
    ("attnkit.check", "run_check"),
    ("attnkit.bench.overhead", "run"),
    ("attnkit.bench.attention", "run"),
    ("attnkit.bench.attention", "memory_curve"),
    ("attnkit.bench.classic_additive", "run"),
    ("attnkit.bench.classic_linear", "run"),
    ("attnkit.bench.train", "run"),
]

SUITE_FLAGS = {  # argv prefix -> flags of each kind
    ("bench", "overhead"): {"counts": ["--lengths", "--repeats"]},
    ("bench", "attention"): {"counts": ["--lengths", "--repeats"],
                             "floats": ["--max-dense-gib"]},
    ("bench", "classic"): {},
    ("bench", "train"): {"counts": ["--repeats"]},
}


def _cases() -> list[list[str]]:
    cases = []
    for prefix, flags in SUITE_FLAGS.items():
        prefix = list(prefix)
        cases += [prefix + [flag, value] for flag in flags.get("counts", [])
                  for value in BAD_COUNTS]
        cases += [prefix + [flag, value] for flag in flags.get("floats", [])
                  for value in BAD_POSITIVE_FLOATS]
        cases += [prefix + ["--out", path] for path in BAD_OUT_DIRS]
        cases += [prefix + ["--out"], prefix + ["--no-such-flag"], prefix + ["extra"]]
    cases += [["bench", "overhead", "--lengths", "1000000000"]]  # inputs beyond memory
    attention = ["bench", "attention"]
    cases += [attention + ["--name", name] for name in BAD_NAMES]
    cases += [attention + ["--memory-curve", "--out", path] for path in BAD_OUT_DIRS]
    cases += [attention + ["--memory-curve", "--lengths", "0"]]
    cases += [attention + [flag, "nope"] for flag in ("--cases", "--modes", "--candidates")]
    cases += [attention + ["--lengths"], attention + ["--lengths", "8", "0"],
              attention + ["--candidates", "triton"], attention + ["--memory", "yes"]]
    cases += [["bench", "classic", "--quick", "yes"], ["bench", "train", "--quick", "1"]]
    cases += [["bench"], ["bench", "nope"], ["bench", "--lengths", "8"]]
    check = ["check"]
    cases += [check + ["--dtype", value] for value in ("float8", "float64", "", "int32")]
    cases += [check + ["--backends", value] for value in ("nope", "reference", "auto", "")]
    cases += [check + ["--json", path] for path in BAD_OUT_FILES]
    cases += [check + ["--json"], check + ["--backends"], check + ["--dtype"],
              check + ["--quick", "yes"], check + ["--no-such-flag"]]
    return cases


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if any measurement or check starts."""
    def started(*args, **kwargs):
        pytest.fail("work started before the arguments were checked")

    for module, name in WORK:
        monkeypatch.setattr(f"{module}.{name}", started)


def _exit_code(argv: list[str]) -> int:
    try:
        return cli.main(argv)
    except SystemExit as exc:
        return exc.code


def assert_refused(argv: list[str], capsys) -> str:
    """``argv`` exits 2 with exactly one line on stderr, nothing on stdout; returns it."""
    code = _exit_code(argv)
    out, err = capsys.readouterr()
    assert code == 2, (argv, code, err)
    assert out == "", (argv, out)
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n"), (argv, err)
    assert lines[0].startswith("attnkit ") and ": error: " in lines[0], (argv, err)
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("argv", _cases(), ids=lambda argv: " ".join(argv) or "<none>")
def test_bad_argument_exits_2_with_one_line_before_any_work(argv, tmp_path, capsys, no_work):
    afile = tmp_path / "afile"
    afile.write_text("a regular file")
    argv = [arg.format(file=afile, tmp=tmp_path) for arg in argv]
    assert_refused(argv, capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]  # nothing written


def test_error_names_the_flag_and_the_value(capsys, no_work):
    line = assert_refused(["bench", "attention", "--lengths", "0"], capsys)
    assert "--lengths" in line and "'0'" in line
    line = assert_refused(["bench", "attention", "--name", "../../x"], capsys)
    assert "--name" in line and "../../x" in line
    line = assert_refused(["check", "--json", "/proc/attnkit-contract/rows.json"], capsys)
    assert "--json" in line


def test_a_backend_that_cannot_run_here_is_refused_before_the_check(monkeypatch, capsys,
                                                                    no_work):
    """E.g. ``--backends triton`` without Triton or CUDA: the dispatcher's reason, exit 2
    (it used to report success after skipping every case)."""
    from attnkit.cli import check as check_command

    monkeypatch.setattr(check_command, "_refusal_here",
                        lambda name, dtype: "tiled needs a CUDA device" if name == "tiled"
                        else None)
    line = assert_refused(["check", "--backends", "sdpa", "tiled"], capsys)
    assert line == "attnkit check: error: --backends: tiled needs a CUDA device"


def test_every_backend_the_dispatcher_refuses_here_is_refused_by_check(capsys, no_work):
    import torch

    from attnkit.cli.check import _backend_names, _refusal_here

    refused = [name for name in _backend_names() if _refusal_here(name, torch.float32)]
    for name in refused:
        line = assert_refused(["check", "--backends", name], capsys)
        assert line.startswith("attnkit check: error: --backends: ") and name in line


def test_a_library_value_error_about_backends_becomes_a_usage_error(monkeypatch, capsys):
    def refuse(cases, dtypes, backends):
        raise ValueError("backends: 'sdpa' cannot run on this machine")

    monkeypatch.setattr("attnkit.check.run_check", refuse)
    line = assert_refused(["check", "--quick", "--backends", "sdpa"], capsys)
    assert line.endswith("--backends: backends: 'sdpa' cannot run on this machine")


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_every_command_has_help_and_refuses_an_unknown_option(command, capsys):
    assert _exit_code([command, "--help"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"usage: attnkit {command}") and err == ""
    assert_refused([command, "--no-such-option"], capsys)
