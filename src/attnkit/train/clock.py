"""A wall clock for training budgets that does not count the time a process spent stopped.

A run whose budget is wall-clock minutes (``TrainConfig.max_time_s``) should not lose budget
while it is suspended: ``kill -STOP`` / ``kill -CONT`` to free the machine for a measurement,
Ctrl-Z then ``fg`` in a shell. On POSIX a stopped process always receives SIGCONT when it
resumes, so the stop itself is detected exactly; how long it lasted is estimated from the
process's CPU time, which does not advance while it is stopped::

    paused = wall - cpu / rate        # rate: CPU seconds per wall second, recent segments

clamped to ``[0, wall]``, over the segment in which SIGCONT was seen and the one before it.
``rate`` is measured over the last :data:`HISTORY` segments that saw no SIGCONT, so a
machine shared with other programs (rate below the thread count) is still charged the wall
time it really took; only the stopped stretch is discounted. The estimate's error is at
most the un-paused part of two segments (a training step). Stops shorter than
:data:`MIN_PAUSE_S` are not discounted. Without SIGCONT (Windows) or outside the main
thread nothing is detected and the clock is plain wall time.

Shapes of use (see :class:`attnkit.train.Trainer`)::

    clock = PauseClock()
    with clock.installed():          # SIGCONT handler; restored on exit
        clock.mark()
        ... one step ...
        paused = clock.settle()      # seconds spent stopped (0.0 if no SIGCONT came)
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

__all__ = ["PauseClock", "HISTORY", "MIN_PAUSE_S"]

HISTORY = 64          # recent un-paused segments whose CPU/wall rate estimates a stop's length
MIN_PAUSE_S = 1.0     # shorter stops are not worth discounting (and not logged)


class PauseClock:
    """Segments of wall time, each reported with the part of it the process spent stopped.

    :meth:`mark` starts a segment; :meth:`settle` ends it, returns the paused seconds found
    and starts the next. Only a segment during which SIGCONT arrived is examined (together
    with the one before it); the others feed the CPU rate."""

    def __init__(self) -> None:
        self._continued = False
        self._history: deque[tuple[float, float]] = deque(maxlen=HISTORY)
        self._wall0 = time.perf_counter()
        self._cpu0 = time.process_time()
        self._previous: tuple[float, float] | None = None  # (cpu, wall) of the last segment
        self.total_paused = 0.0

    @contextlib.contextmanager
    def installed(self) -> Iterator[PauseClock]:
        """Install the SIGCONT handler for the duration (main thread only; elsewhere, or
        without SIGCONT, a no-op) and restore the previous handler afterwards."""
        sigcont = getattr(signal, "SIGCONT", None)
        if sigcont is None or threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = signal.getsignal(sigcont)

        def on_continue(signum: int, frame: Any) -> None:
            self._continued = True
            if callable(previous):
                previous(signum, frame)

        signal.signal(sigcont, on_continue)
        try:
            yield self
        finally:
            signal.signal(sigcont, previous if previous is not None else signal.SIG_DFL)

    def mark(self) -> None:
        """Start a segment now."""
        self._wall0 = time.perf_counter()
        self._cpu0 = time.process_time()
        self._previous = None

    def rate(self) -> float | None:
        """CPU seconds per wall second over the recent un-paused segments (None: no data)."""
        wall = sum(w for _, w in self._history)
        if wall <= 0.0:
            return None
        return sum(c for c, _ in self._history) / wall

    def settle(self) -> float:
        """End the current segment and start the next; return the seconds the process spent
        stopped since the previous segment began (0.0 when no SIGCONT arrived meanwhile).

        One reading of each clock ends a segment and starts the next, so every stretch of
        time lies in exactly one segment. A stop can be taken at any instruction, and the
        SIGCONT handler runs at the interpreter's next check, possibly in the segment after
        the stop's: so a flagged segment is judged together with the one before it, which
        joins the rate's history only once the next segment comes in unflagged."""
        continued = self._continued  # read before the clocks (a stop after them is the next's)
        now, cpu_now = time.perf_counter(), time.process_time()
        wall, cpu = now - self._wall0, cpu_now - self._cpu0
        self._wall0, self._cpu0 = now, cpu_now
        previous, self._previous = self._previous, (cpu, wall)
        if not continued:
            if previous is not None and previous[1] > 0.0:
                self._history.append(previous)
            return 0.0
        self._continued = False
        self._previous = None
        if previous is not None:
            cpu, wall = cpu + previous[0], wall + previous[1]
        paused = self.estimate(wall, cpu, self.rate())
        self.total_paused += paused
        return paused

    @staticmethod
    def estimate(wall: float, cpu: float, rate: float | None) -> float:
        """Stopped seconds in a segment of ``wall`` s that used ``cpu`` CPU-s, at ``rate``
        CPU-s per wall-s when running (None or <= 0: unknown, nothing is discounted)."""
        if rate is None or rate <= 0.0:
            return 0.0
        paused = min(max(wall - cpu / rate, 0.0), wall)
        return paused if paused >= MIN_PAUSE_S else 0.0
