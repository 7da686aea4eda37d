"""What the terminal shows: the header line, a progress line at session end, the summary section."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from typing import Final

import pytest

from rp_bts_agent.model import IssueRef, TestResult
from rp_bts_agent.pipeline import PlannedAction

#: the agent's work at session end gets a progress line once it takes longer than this.
PROGRESS_AFTER: Final = 1.0


class Progress:
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

    def __enter__(self) -> Progress:
        if self.reporter is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if self.shown and self.reporter is not None and self.reporter.isatty():
            self.reporter.write_line("")

    def update(self, done: int, total: int) -> None:
        self.done, self.total = done, total

    def _loop(self) -> None:
        started = time.monotonic()
        while not self._stop.wait(self.interval):
            line = f"rp-bts: filing issues... {self.done}/{self.total} actions done, " \
                   f"{time.monotonic() - started:.0f}s"
            assert self.reporter is not None
            if self.reporter.isatty():
                self.reporter.rewrite(line)
            else:
                self.reporter.write_line(line)
            self.shown = True


def _label(ref: IssueRef) -> str:
    key = ref.key or "-"
    return f"{key} ({ref.status})" if ref.status else key


def issue_lines(results: Iterable[TestResult]) -> list[str]:
    """One line per issue and action: what was filed, commented, linked, known, queued, failed."""
    grouped: dict[tuple[str, str, str, str], list[str]] = {}
    for result in results:
        for ref in result.issues:
            grouped.setdefault((ref.action, ref.integration, _label(ref), ref.error), []).append(
                result.nodeid
            )
    order = {a: i for i, a in enumerate(("created", "commented", "linked", "known", "queued",
                                        "failed"))}
    lines = []
    for (action, integration, label, error), nodeids in sorted(
        grouped.items(), key=lambda kv: (order.get(kv[0][0], 9), kv[0][2])
    ):
        more = f" (+{len(nodeids) - 1} more)" if len(nodeids) > 1 else ""
        where = f"[{integration}] " if integration else ""
        detail = f": {error}" if error else ""
        lines.append(f"{action:<9} {where}{label} {nodeids[0]}{more}{detail}")
    return lines


def plan_lines(plan: Sequence[PlannedAction]) -> list[str]:
    return [f"would {action.describe()}" for action in plan] or ["nothing to file"]
