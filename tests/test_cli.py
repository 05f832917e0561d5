"""The command line: check, bench, argument errors, atomic report writing."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest
import torch

from attnkit import cli
from attnkit._io import atomic_write_text
from attnkit.check import default_cases, run_check

# The package re-exports the function `attention`, which hides the module of the same name.
attention_module = importlib.import_module("attnkit.functional.attention")


def test_check_quick_passes_and_prints_table(capsys):
    code = cli.main(["check", "--quick", "--dtype", "float32", "--backends", "sdpa", "tiled"])
    out = capsys.readouterr().out
    assert code == 0
    assert "backend" in out.splitlines()[0] and "tolerance" in out.splitlines()[0]
    assert "sdpa" in out and "FAIL" not in out
    assert "0 failed" in out


def test_check_detects_a_wrong_backend(monkeypatch, capsys):
    real = attention_module.sdpa_attention

    def off_by_one_percent(*args, **kwargs):
        return real(*args, **kwargs) * 1.01

    monkeypatch.setattr(attention_module, "sdpa_attention", off_by_one_percent)
    code = cli.main(["check", "--quick", "--dtype", "float32", "--backends", "sdpa", "tiled"])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL" in out


def test_check_rows_cover_forward_and_backward():
    # Triton's CPU interpreter is slow; tests/kernels/test_triton.py covers that kernel.
    rows = run_check(default_cases(quick=True), dtypes=[torch.bfloat16],
                     backends=["sdpa", "tiled"])
    passes = {(r["backend"], r["pass"]) for r in rows}
    assert ("sdpa", "forward") in passes and ("sdpa", "backward") in passes
    assert ("tiled", "forward") in passes and ("tiled", "backward") in passes
    assert ("reference", "forward") in passes
    assert all(r["ok"] for r in rows), [r for r in rows if not r["ok"]]


def test_check_json_output(tmp_path):
    path = tmp_path / "check.json"
    assert cli.main(["check", "--quick", "--dtype", "float32", "--backends", "sdpa",
                     "--json", str(path)]) == 0
    rows = json.loads(path.read_text())
    assert rows and {"backend", "case", "max_error", "tolerance", "ok"} <= rows[0].keys()


@pytest.mark.parametrize("argv", [["check", "--dtype", "float8"], ["bench"], ["nonsense"],
                                  ["bench", "overhead", "--lengths", "abc"]])
def test_bad_arguments_exit_2_with_one_line(argv):
    proc = subprocess.run([sys.executable, "-m", "attnkit", *argv], capture_output=True,
                          text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0], proc.stderr


def test_help_works_everywhere():
    for argv in (["--help"], ["check", "--help"], ["bench", "overhead", "--help"]):
        with pytest.raises(SystemExit) as exc:
            cli.main(argv)
        assert exc.value.code == 0


def test_bench_overhead_writes_json_and_markdown(tmp_path, capsys):
    assert cli.main(["bench", "overhead", "--lengths", "32", "--repeats", "1",
                     "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "overhead.json").read_text())
    assert len(report["rows"]) == 4  # dense/causal x fwd/fwd+bwd
    assert all(row["ratio_vs_sdpa"] > 0 for row in report["rows"])
    assert "machine" in report and "command" in report
    assert "| case |" in (tmp_path / "overhead.md").read_text()


def test_atomic_write_keeps_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "report.json"
    atomic_write_text(path, "old")

    class Boom:
        def __str__(self):
            raise RuntimeError("crash while writing")

    with pytest.raises(TypeError):
        atomic_write_text(path, Boom())  # type: ignore[arg-type]
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temp file left


def test_atomic_write_cleans_up_after_a_crash_mid_write(tmp_path, monkeypatch):
    import attnkit._io as io_module

    path = tmp_path / "data.bin"
    io_module.atomic_write_bytes(path, b"old")

    def crash(fd):
        raise OSError("disk full")

    monkeypatch.setattr(io_module.os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        io_module.atomic_write_bytes(path, b"new contents")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["data.bin"]  # no temp file left
