"""`attnkit longrange` against bad arguments: exit 2, one line naming the flag, no traceback,
and nothing loaded, trained or written before the check."""

from __future__ import annotations

import pytest
from _translate_helpers import run_cli

import attnkit.experiments.longrange.run as run_module


@pytest.fixture
def no_work(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(run_module, "run", fail)
    monkeypatch.setattr(run_module, "prepare_data", fail)


BAD = [
    (["--minutes", "0"], "--minutes"), (["--minutes", "-1"], "--minutes"),
    (["--minutes", "nan"], "--minutes"), (["--minutes", "inf"], "--minutes"),
    (["--minutes", "1e308"], "--minutes"), (["--minutes", "two"], "--minutes"),
    (["--max-steps", "0"], "--max-steps"), (["--max-steps", "1.5"], "--max-steps"),
    (["--min-len", "0"], "--min-len"), (["--max-len", "1"], "--max-len"),
    (["--max-len", "100000"], "--max-len"), (["--min-len", "60", "--max-len", "50"], "--min-len"),
    (["--max-tokens", "0"], "--max-tokens"), (["--max-tokens", "50"], "--max-tokens"),
    (["--seed", "-1"], "--seed"), (["--seed", str(2**40)], "--seed"),
    (["--task", "sort"], "--task"), (["--models", "lstm"], "--models"),
    (["--models"], "--models"), (["--models", "rnn-none", "rnn-none"], "--models"),
    (["--no-such-flag"], "unrecognized"), (["extra"], "unrecognized"),
]


@pytest.mark.parametrize("argv,needle", BAD)
def test_bad_flags_exit_2_with_one_line_before_any_work(argv, needle, tmp_path, capsys,
                                                        no_work):
    out = tmp_path / "o"
    code, stdout, err = run_cli(["longrange", *argv, "--out", str(out)], capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("attnkit longrange"), err
    assert "error:" in lines[0] and "Traceback" not in err and needle in lines[0], lines[0]
    assert stdout == "" and not out.exists()


@pytest.mark.parametrize("where", ["a_file", "below_a_file", "data_below_a_file"])
def test_unwritable_paths_exit_2_before_any_work(where, tmp_path, capsys, no_work):
    afile = tmp_path / "afile"
    afile.write_text("x")
    argv, flag = ["--out", str(afile)], "--out"
    if where == "below_a_file":
        argv = ["--out", str(afile / "sub")]
    elif where == "data_below_a_file":
        argv, flag = ["--out", str(tmp_path / "o"), "--data-dir", str(afile / "d")], "--data-dir"
    code, stdout, err = run_cli(["longrange", "--quick", *argv], capsys)
    assert code == 2 and stdout == "", err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and flag in lines[0] and "Traceback" not in err
