"""The training budget's clock leaves out the time a process spends stopped (SIGSTOP/SIGCONT)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from attnkit.train.clock import MIN_PAUSE_S, PauseClock

CHILD = Path(__file__).with_name("_pause_child.py")
posix_only = pytest.mark.skipif(not hasattr(signal, "SIGCONT"), reason="needs SIGSTOP/SIGCONT")


def test_estimate_takes_the_running_part_at_the_recent_rate() -> None:
    # 10 s of wall, 0.5 CPU-s at 1 CPU-s per wall-s while running: 9.5 s stopped.
    assert PauseClock.estimate(10.0, 0.5, 1.0) == pytest.approx(9.5)
    # Two busy threads (rate 2): the same CPU time took 0.25 s of wall.
    assert PauseClock.estimate(10.0, 0.5, 2.0) == pytest.approx(9.75)
    # A machine shared with other programs (rate 0.5): only 9 s were a stop.
    assert PauseClock.estimate(10.0, 0.5, 0.5) == pytest.approx(9.0)


def test_estimate_is_clamped_and_ignores_short_or_unknown() -> None:
    assert PauseClock.estimate(10.0, 0.0, 1.0) == pytest.approx(10.0)   # never above wall
    assert PauseClock.estimate(2.0, 3.0, 1.0) == 0.0                   # never negative
    assert PauseClock.estimate(10.0, 0.0, None) == 0.0                 # no rate yet
    assert PauseClock.estimate(10.0, 0.0, 0.0) == 0.0
    short = MIN_PAUSE_S * 0.9
    assert PauseClock.estimate(short, 0.0, 1.0) == 0.0                 # too short to count


def test_settle_without_sigcont_counts_nothing_and_learns_the_rate() -> None:
    clock = PauseClock()
    clock.mark()
    for segment in range(2):
        deadline = time.perf_counter() + 0.05
        while time.perf_counter() < deadline:  # busy: the rate is about one CPU-s per wall-s
            pass
        assert clock.settle() == 0.0
        # A segment joins the rate's history once the next one came in without SIGCONT.
        assert (clock.rate() is None) == (segment == 0)
    assert clock.rate() > 0.3
    assert clock.total_paused == 0.0


@posix_only
def test_sigcont_without_a_stop_discounts_nothing() -> None:
    clock = PauseClock()
    with clock.installed():
        for _ in range(3):
            clock.mark()
            deadline = time.perf_counter() + 0.02
            while time.perf_counter() < deadline:
                pass
            clock.settle()
        os.kill(os.getpid(), signal.SIGCONT)
        deadline = time.perf_counter() + 0.02
        while time.perf_counter() < deadline:
            pass
        assert clock.settle() == 0.0  # the segment ran the whole time


@posix_only
def test_installed_restores_the_previous_handler() -> None:
    before = signal.getsignal(signal.SIGCONT)
    with PauseClock().installed():
        assert signal.getsignal(signal.SIGCONT) is not before
    assert signal.getsignal(signal.SIGCONT) == before


@posix_only
def test_trainer_budget_leaves_out_a_stop(tmp_path: Path) -> None:
    out = tmp_path / "summary.json"
    budget = 4.0
    proc = subprocess.Popen([sys.executable, str(CHILD), str(out), str(budget)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "READY", proc.stderr.read()
        stopped = time.perf_counter()
        os.kill(proc.pid, signal.SIGSTOP)
        time.sleep(2.5)
        os.kill(proc.pid, signal.SIGCONT)
        stop_s = time.perf_counter() - stopped
        assert proc.wait(timeout=120) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    summary = json.loads(out.read_text())
    assert summary["out_of_time"]
    assert len(summary["pauses"]) == 1, summary
    assert summary["pauses"][0]["step"] >= 20
    assert summary["paused"] == pytest.approx(summary["pauses"][0]["seconds"])
    # The stop's length is estimated to within one short update; the budget got it back.
    assert summary["paused"] == pytest.approx(stop_s, abs=0.5)
    assert summary["elapsed"] == pytest.approx(budget, abs=0.5)
    assert summary["fit_wall"] == pytest.approx(summary["elapsed"] + summary["paused"], abs=0.5)
