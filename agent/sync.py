"""``rp-bts sync``: the status sync between runs, every ``period`` seconds or once.

A kind with a sync (``Kind.sync``, Clarity's pull and push) gives its steps; the core adds one
step per integration whose issues runs linked: their status is refreshed with the tracker's
``get`` (Jira, Clarity, any tracker), so ``issue`` markers and known-issue detection see fresh
status between runs. Each step is appended to the sync log. A step that fails is logged and
tried again at its next period (a tracker that is down); the loop never dies of one; Ctrl-C
stops it between steps. The clock and the sleep are injected, so the loop is tested without
waiting.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from . import kinds
from .config_types import Config, Integration
from .known import KnownStore
from .model import ResultsFormatError, RunResults
from .redact import Redactor
from .state import State
from .tracker import TrackerError

__all__ = [
    "DEFAULT_PERIOD",
    "Stop",
    "SyncContext",
    "SyncEntry",
    "SyncLog",
    "SyncStep",
    "plan",
    "run",
]

#: seconds between refreshes of linked issues when no integration sets a period
DEFAULT_PERIOD: Final = 300


@dataclass(frozen=True, slots=True)
class SyncStep:
    """One unit of the sync; ``run`` answers lines for the log and raises
    :class:`~rp_bts_agent.tracker.TrackerError` when it could not be done (tried again at
    its next period)."""

    name: str
    run: Callable[[], list[str]]
    period: int = DEFAULT_PERIOD


@dataclass(frozen=True, slots=True)
class SyncContext:
    config: Config
    known: KnownStore
    #: ``--once`` (cron, CI): tabs without auto-sync are synced too
    once: bool = False
    #: ``--refresh-fields``: reload and show attributes and lookups
    refresh_fields: bool = False


@dataclass(frozen=True, slots=True)
class SyncEntry:
    """One line of the sync log."""

    time: str
    step: str
    ok: bool
    lines: tuple[str, ...]

    def describe(self) -> list[str]:
        head = f"{self.time} {'ok    ' if self.ok else 'FAILED'} {self.step}"
        return [head, *(f"    {line}" for line in self.lines)]


class SyncLog:
    """``.rp-bts/sync.log``: JSON lines, appended."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, entry: SyncEntry) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(dataclasses.asdict(entry)) + "\n")

    def tail(self, count: int) -> list[SyncEntry]:
        """The latest ``count`` entries (a damaged line is left out)."""
        if not self.path.exists():
            return []
        entries = []
        for line in self.path.read_text(encoding="utf-8").splitlines()[-count:]:
            try:
                data = json.loads(line)
                entries.append(
                    SyncEntry(data["time"], data["step"], data["ok"], tuple(data["lines"]))
                )
            except (ValueError, KeyError, TypeError):
                continue
        return entries


def _ingest(config: Config, known: KnownStore) -> None:
    """The issues the last run filed or linked (``issue`` markers among them) become link
    records, so their status is refreshed."""
    path = State(config.root).results
    if not path.exists():
        return
    try:
        run = RunResults.load(path)
    except (ResultsFormatError, OSError):
        return
    for result in run.results:
        for ref in result.issues:
            if ref.integration and ref.key and config.integration(ref.integration):
                known.linked(ref.integration, ref.key, ref.url, ref.status)


def _refresh(integration: Integration, known: KnownStore) -> list[str]:
    """The status of every linked issue of one integration, through the tracker's ``get``;
    an issue that cannot be read is one line, the others go on."""
    from .pipeline import open_tracker

    records = [r for r in known.records(integration.name) if r.source == "link"]
    tracker = open_tracker(integration, read_only=True)
    lines = []
    try:
        for record in records:
            try:
                remote = tracker.get(record.key)
            except TrackerError as exc:
                if exc.retryable:
                    raise  # the tracker is down: the whole step again next period
                lines.append(f"skipped {record.key}: {exc}")
                continue
            change = known.status(integration.name, record.key, remote.status, remote.closed)
            if change:
                lines.append(f"{record.key} {change}")
    finally:
        tracker.close()
    return [f"{len(records)} linked issue(s) refreshed", *lines]


def plan(context: SyncContext) -> list[SyncStep]:
    """Every kind's steps, then the refresh of linked issues of each tracker."""
    config = context.config
    _ingest(config, context.known)
    out: list[SyncStep] = []
    for integration in config.integrations:
        kind = kinds.get(integration.kind)
        if kind.sync is not None:
            out += kind.sync(integration, context)
    periods = [s.period for s in out] or [DEFAULT_PERIOD]
    linked = {r.integration for r in context.known.records() if r.source == "link"}
    for integration in config.integrations:
        if integration.name in linked and integration.is_tracker:
            out.append(
                SyncStep(
                    f"{integration.name}: refresh linked issues",
                    functools.partial(_refresh, integration, context.known),
                    min(periods),
                )
            )
    return out


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())


def _run_step(step: SyncStep, redactor: Redactor) -> SyncEntry:
    """One step; whatever goes wrong is its entry, never the loop's end."""
    try:
        lines = step.run()
        ok = True
    except TrackerError as exc:
        lines, ok = [str(exc) + ("; tried again next period" if exc.retryable else "")], False
    except Exception as exc:  # a bug in one step must not stop the others or the loop
        lines, ok = [f"{type(exc).__name__}: {exc}"], False
    return SyncEntry(_now(), step.name, ok, tuple(redactor.redact(line) for line in lines))


class Stop:
    """Ctrl-C between steps: SIGINT sets it (a step under way ends first), and the wait for
    the next period wakes on it. A second Ctrl-C interrupts at once."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        return self._event.wait(seconds)

    @contextmanager
    def on_interrupt(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def interrupted(signum: int, frame: Any) -> None:
            self.set()
            signal.signal(signal.SIGINT, previous)

        previous = signal.signal(signal.SIGINT, interrupted)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


def run(
    context: SyncContext,
    *,
    log: SyncLog,
    redactor: Redactor,
    report: Callable[[SyncEntry], None] = lambda entry: None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], bool] | None = None,
    stop: Stop | None = None,
    planner: Callable[[SyncContext], Sequence[SyncStep]] = plan,
) -> list[SyncEntry]:
    """Run the steps that are due, then wait for the next one, until stopped (or once).

    ``sleep(seconds)`` waits and answers True when the sync was stopped meanwhile; the steps
    are planned again each round (a run may have linked new issues)."""
    stop = stop or Stop()
    wait = sleep or stop.wait
    due: dict[str, float] = {}
    entries: list[SyncEntry] = []
    while not stop.is_set():
        current = planner(context)
        for step in current:
            if stop.is_set():
                break
            if due.get(step.name, float("-inf")) > clock():
                continue
            entry = _run_step(step, redactor)
            log.append(entry)
            report(entry)
            entries.append(entry)
            due[step.name] = clock() + step.period
        if context.once or not current or stop.is_set():
            break
        nearest = min(due.get(step.name, clock()) for step in current)
        if wait(max(0.0, nearest - clock())):
            break
    return entries
