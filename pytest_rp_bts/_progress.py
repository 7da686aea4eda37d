"""The progress line shown while the agent works at session end."""

from __future__ import annotations

import threading
import time
from typing import Final

import pytest

#: the agent's work at session end gets a progress line once it takes longer than this.
PROGRESS_AFTER: Final = 1.0


class ProgressLine:
    """Reports ``done/total`` every second from a thread, only after the first second.

    On a terminal the line is rewritten in place; otherwise (CI logs) each report is a plain line.
    """

    def __init__(self, reporter: pytest.TerminalReporter | None, interval: float = PROGRESS_AFTER):
        self.reporter = reporter
        self.interval = interval
        self.done = 0
        self.total = 0
        self.shown = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rp-bts-progress", daemon=True)

    def __enter__(self) -> ProgressLine:
        if self.reporter is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if self.shown and self.reporter is not None and _isatty(self.reporter):
            self.reporter.write_line("")

    def update(self, done: int, total: int) -> None:
        self.done, self.total = done, total

    def _loop(self) -> None:
        started = time.monotonic()
        while not self._stop.wait(self.interval):
            # before the run's own plan: earlier work replayed, the trackers looked up
            done = f"{self.done}/{self.total} actions done, " if self.total else ""
            line = f"rp-bts: filing issues... {done}{time.monotonic() - started:.0f}s"
            assert self.reporter is not None
            if _isatty(self.reporter):
                self.reporter.rewrite(line)
            else:
                self.reporter.write_line(line)
            self.shown = True


def _isatty(reporter: pytest.TerminalReporter) -> bool:
    """``TerminalReporter.isatty`` is a method since pytest 8.4, a bool before."""
    isatty: object = reporter.isatty
    return bool(isatty() if callable(isatty) else isatty)
