"""benchmarks/rnn_throughput.py as a command: its argument checks, and (slow) one
interleaved cycle of two trees end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "rnn_throughput.py"
SRC = ROOT / "src"


def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          check=False, cwd=ROOT, **kwargs)


@pytest.mark.parametrize(("args", "message"), [
    (["--interleave"], "add --job"),
    (["--job", "--interleave", "--block", "0"], "--block must be a positive integer"),
    (["--job", "--interleave", "--block", "-3"], "--block must be a positive integer"),
    (["--job", "--interleave", "--block", "nan"], "invalid int value: 'nan'"),
    (["--job", "--rounds", "0"], "--rounds must be a positive integer"),
    (["--job", "--warmup", "-1"], "--warmup must be a non-negative integer"),
    (["--job", "--steps", "inf"], "invalid int value: 'inf'"),
    (["--job", "--epoch"], "add --job --interleave"),
    (["--job", "--candidate-vocab", "100"], "--candidate-vocab must be at least"),
    (["--job", "--data-dir", "/nonexistent/attnkit-data"], "is not a folder"),
    (["--job", "--out", "/proc/attnkit-report"], "cannot be written"),
    (["--job", "--out", ""], "expected a non-empty value"),
])
def test_bad_arguments_exit_2_with_one_line(args, message):
    done = run("--baseline-src", str(SRC), *args)
    assert done.returncode == 2
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stdout == ""


def test_a_missing_source_tree_exits_2(tmp_path):
    done = run("--baseline-src", str(tmp_path / "nowhere"), "--job")
    assert done.returncode == 2
    assert "is not a src/ folder" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_one_interleaved_cycle(tmp_path):
    """Both trees are this checkout: two workers take turns block by block and the report
    holds one cycle whose blocks cover the steps of each tree."""
    done = run("--job", "--interleave", "--baseline-src", str(SRC), "--baseline-vocab", "4000",
               "--models", "rnn-none", "--rounds", "1", "--steps", "3", "--block", "2",
               "--warmup", "1", "--out", str(tmp_path), timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "rnn_throughput_interleaved.json").read_text())
    (cycle,) = report["models"]["rnn-none"]["cycles"]
    assert cycle["baseline_pairs"] == cycle["candidate_pairs"] > 0  # same batches, same tree
    assert cycle["baseline_seconds"] > 0 and cycle["candidate_seconds"] > 0
    assert report["settings"]["block"] == 2
    assert (tmp_path / "rnn_throughput_interleaved.md").read_text().startswith("# RNN")
