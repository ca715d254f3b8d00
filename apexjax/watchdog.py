"""A progress watchdog: a stuck run ends with a message and every thread's stack, never hangs.

The command line wraps long runs in :class:`Watchdog` and calls :meth:`Watchdog.progress`
at each milestone (compiled, iteration done, checkpoint written). If no milestone arrives
for ``timeout_s`` seconds, a daemon thread writes what stage the run was in and the stacks
of all threads to stderr and ends the process with exit status 3. A collective that never
completes, a deadlocked device thread or a compile that never returns all end this way.

Library code never starts a watchdog; it is the caller's choice (it ends the process).
"""

from __future__ import annotations

import faulthandler
import os
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

__all__ = ["EXIT_STUCK", "Watchdog"]

EXIT_STUCK = 3


class Watchdog:
    """Ends the process (status :data:`EXIT_STUCK`) after ``timeout_s`` without progress.

    Use as a context manager; ``timeout_s <= 0`` disables it. ``stream`` receives the
    message and the stacks (default stderr); ``exit_fn`` is how the process ends
    (default ``os._exit``, which works even when the main thread is blocked inside XLA).
    """

    def __init__(
        self,
        timeout_s: float,
        *,
        stream: TextIO | None = None,
        exit_fn: Callable[[int], object] = os._exit,
        hint: str = "",
    ) -> None:
        self.timeout_s = float(timeout_s)
        self.hint = hint
        self._stream = stream
        self._exit = exit_fn
        self._stage = "start"
        self._last = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="apexjax-watchdog", daemon=True)

    def __enter__(self) -> Watchdog:
        if self.timeout_s > 0:
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()

    def progress(self, stage: str) -> None:
        """Records a milestone: the clock restarts and ``stage`` names what comes next."""
        with self._lock:
            self._stage, self._last = stage, time.monotonic()

    def _run(self) -> None:
        poll = max(0.05, min(10.0, self.timeout_s / 4))
        while not self._stop.wait(poll):
            with self._lock:
                idle, stage = time.monotonic() - self._last, self._stage
            if idle > self.timeout_s:
                out = self._stream or sys.stderr
                out.write(
                    f"\napexjax: no progress for {idle:.0f} s (--hang-timeout "
                    f"{self.timeout_s:.0f} s) during {stage!r}; stopping instead of hanging. "
                    f"{self.hint}XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}. Thread stacks:\n"
                )
                out.flush()
                try:
                    faulthandler.dump_traceback(out, all_threads=True)
                except (AttributeError, ValueError, OSError):  # stream without a file descriptor
                    pass
                out.flush()
                self._exit(EXIT_STUCK)
                return
