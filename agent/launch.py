"""What a launch's end does, for the pytest plugin and the CLI alike (``rp-bts process``).

In this order: the results (and the report) are written first, so an agent that fails later
loses nothing; then what earlier runs left is replayed and this run's failures are filed, both
under one time budget and one breaker per integration; then the results are written again with
their issue references, the rules send their mails and old run folders are pruned.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .config_types import Config
from .deadline import time_limit
from .files import prune_runs, write_atomic
from .hooks import HookManager
from .modes import Mode
from .plain import Launch, Plain, dumps_results
from .redact import Redactor
from .state import State

if TYPE_CHECKING:
    from .model import RunResults, TestResult
    from .notify import Notice
    from .pipeline import FilingReport

__all__ = ["Finish", "LaunchEnd", "finish", "whole_run"]

log = logging.getLogger("rp_bts_agent")

#: run folders (attachments written by tests, spooled failure details) kept under .rp-bts/runs
KEEP_RUNS = 20


@dataclass(frozen=True, slots=True)
class Finish:
    """How to end this launch: what the plugin's options or the CLI's arguments said."""

    mode: Mode = "post"
    #: where failures go unless a marker or hook says otherwise
    integration: str = ""
    notify: bool = True
    #: results JSON files to write besides ``.rp-bts/results.json`` (``--rp-bts-results``)
    results: Sequence[Path] = ()
    #: write ``.rp-bts/results.json`` (a test run does, a dry-run too; the CLI writes the file
    #: it was given or ``--output`` instead)
    default_results: bool = True
    report: Path | None = None
    #: generated attachments go here (the run's folder)
    spool: Path | None = None
    #: replay what earlier runs left first
    replay: bool = True
    prune: bool = True
    include: tuple[str, ...] | None = None
    log_lines: int | None = None
    #: file only these results (``rp-bts post``); the others pass through, and the filed
    #: ones keep the issues they had besides the new ones
    only: frozenset[str] | None = None
    #: ``rp-bts post --issue-type`` and ``--field``: this issue's type and fields
    issue_type: str = ""
    fields: Mapping[str, str] = field(default_factory=dict)
    progress: Callable[[int, int], None] | None = None


@dataclass(slots=True)
class LaunchEnd:
    """What the launch's end did, for the terminal summary or the CLI's output."""

    filing: FilingReport | None = None
    #: the agent had nothing to do (all passed, nothing attached)
    nothing_to_file: bool = False
    notices: list[Notice] = field(default_factory=list)
    #: one line per item replayed from earlier runs
    flushed: list[str] = field(default_factory=list)
    #: errors (they fail the run under --rp-bts-strict)
    problems: list[str] = field(default_factory=list)
    results_path: Path | None = None
    report_path: Path | None = None
    #: every result, with its issues
    results: list[TestResult | Plain] = field(default_factory=list)

    @property
    def errors(self) -> list[str]:
        return self.problems + (self.filing.errors if self.filing is not None else [])

    @property
    def loose_errors(self) -> list[str]:
        """Filing errors no issue reference carries (a user hook that raised, an issue filed
        without its attachments): a summary shows them, or they would be in the log only."""
        if self.filing is None:
            return []
        carried = {ref.error for r in self.filing.run.results for ref in r.issues}
        return [e for e in self.filing.errors if e not in carried]


def whole_run(launch: Launch, results: Sequence[TestResult | Plain]) -> RunResults:
    """Every result as a TestResult, for the readers of the whole run (the report, notices)."""
    from .model import RunResults, TestResult

    return RunResults(launch, tuple(TestResult(*r) if isinstance(r, tuple) else r for r in results))


def finish(
    config: Config | None,
    root: Path,
    launch: Launch,
    results: Sequence[TestResult | Plain],
    how: Finish,
    *,
    hooks: HookManager,
    redactor: Redactor,
) -> LaunchEnd:
    """End the launch; nothing here raises (a failure is a problem line, the results stay).

    ``config`` is None when it could not be read: the results are still written, so
    ``rp-bts process`` can file them once it is fixed.
    """
    end = LaunchEnd(results=list(results))
    state = State(root)
    rich = [  # the model (TestResult) loaded only when some result is one
        (i, r)
        for i, r in enumerate(end.results)
        if not isinstance(r, tuple) and (how.only is None or r.nodeid in how.only)
    ]
    # with filing to come, the results go first (a run killed while filing loses nothing), and
    # once more with the issue references, then the report; else both once
    _write(end, state, launch, how, redactor, report=config is None or not rich)
    if config is None:
        return end
    started = time.monotonic()
    # every HTTP call from here on (trackers, Sauce Labs, the replay) ends by the budget
    with time_limit(started + config.time_budget):
        _act(config, state, launch, how, end, rich, hooks=hooks, redactor=redactor, started=started)
    return end


def _act(
    config: Config,
    state: State,
    launch: Launch,
    how: Finish,
    end: LaunchEnd,
    rich: list[tuple[int, TestResult]],
    *,
    hooks: HookManager,
    redactor: Redactor,
    started: float,
) -> None:
    """Replay tracker work, file, write again, replay mail and other kept work, notify,
    prune: each contained."""
    #: integration -> why it is down: shared by the replay and the run's own filing
    breakers: dict[str, str] = {}
    replay = how.replay and how.mode != "dry-run" and state.has_leftovers()
    if replay:  # the outbox, SQLite and the kinds' flushers load only when there is one
        from .flush import flush
        from .replay import flush_trackers

        _replay(
            end,
            redactor,
            "tracker work",
            lambda: flush_trackers(config, breakers, config.time_budget),
        )
    if rich:
        budget = max(config.time_budget - (time.monotonic() - started), 0.0)
        try:
            _file(config, launch, rich, end, how, hooks, redactor, breakers, budget)
        except Exception as exc:  # contained: the verdict belongs to the tests
            log.exception("rp-bts: agent failed")
            end.problems.append(f"rp-bts: agent failed: {redactor.redact(repr(exc))}")
        _write(end, state, launch, how, redactor, report=True)  # with the issue references
    else:
        end.nothing_to_file = True  # the pipeline, its trackers and SQLite stay unloaded
    if replay:  # after the filing: a mail server that does not answer never starves it
        _replay(end, redactor, "mail and other kept work", lambda: flush(config, trackers=False))
    if how.notify and how.mode != "dry-run" and config.rules:
        from .notify import notify  # jinja2 and email only when needed

        try:
            notes = (
                [f"rp-bts storm guard: {end.filing.storm}"]
                if end.filing and end.filing.storm
                else []
            )
            end.notices = notify(config, whole_run(launch, end.results), hooks, notes)
        except Exception as exc:  # contained like the filing
            log.exception("rp-bts: notification failed")
            end.problems.append(f"rp-bts: notification failed: {redactor.redact(repr(exc))}")
    if how.prune and how.mode != "dry-run":
        _prune(state)
        _prune_history(state, end, redactor)


def _prune(state: State) -> None:
    """Old run folders go, but never one whose work the outbox still holds (its replay
    attaches the run's files); an outbox that cannot be read keeps them all."""
    needed: set[str] = set()
    if state.outbox_db.exists():  # the outbox and SQLite load only when there is one
        import sqlite3

        from .outbox import Outbox

        try:
            needed = Outbox(state.outbox_db).run_ids()
        except (sqlite3.Error, OSError) as exc:
            log.warning("rp-bts: old run folders kept: the outbox cannot be read: %s", exc)
            return
    prune_runs(state.runs, KEEP_RUNS, needed)


def _prune_history(state: State, end: LaunchEnd, redactor: Redactor) -> None:
    """The record of runs keeps as many runs as there are run folders."""
    if not state.history_db.exists():
        return
    import sqlite3

    from .history import History

    try:
        History(state.history_db).prune(KEEP_RUNS)
    except (sqlite3.Error, OSError) as exc:
        end.problems.append(
            f"rp-bts: the record of runs was not pruned: {redactor.redact(str(exc))}"
        )


def _replay(end: LaunchEnd, redactor: Redactor, what: str, step: Callable[[], list[str]]) -> None:
    """What earlier runs could not send goes too (nothing lost). Tracker work goes first, so
    a tracker found down there stays down for this run's own filing (``breakers``): it costs
    one connect timeout, not two (benchmarks/unreachable.py). Tracker work, mail and each
    kind's own outbox are flushed each on its own: one that fails leaves the others to go
    (issue 11, point 5); mail and the rest go after the filing, under what is left of the
    time budget."""
    try:
        end.flushed += [f"flush: {line}" for line in step()]
    except Exception as exc:  # leftovers stay for `rp-bts flush`; this run files its own
        log.exception("rp-bts: flushing earlier %s failed", what)
        end.problems.append(f"rp-bts: flushing earlier {what} failed: {redactor.redact(repr(exc))}")


def _file(
    config: Config,
    launch: Launch,
    rich: list[tuple[int, TestResult]],
    end: LaunchEnd,
    how: Finish,
    hooks: HookManager,
    redactor: Redactor,
    breakers: dict[str, str],
    budget: float,
) -> None:
    """The agent's work on the results it may act on (failures, attributes, attachments)."""
    from .model import RunResults
    from .pipeline import Agent, Options

    agent = Agent(
        config,
        hooks=hooks,
        redactor=redactor,
        options=Options(
            mode=how.mode,
            integration=how.integration,
            spool=how.spool,
            time_budget=budget,
            include=how.include,
            log_lines=how.log_lines,
            issue_type=how.issue_type,
            fields=how.fields,
            total=len(end.results),
        ),
        progress=how.progress,
        breakers=breakers,
    )
    end.filing = agent.run(RunResults(launch, tuple(r for _, r in rich)))
    # in order (a masked node id no longer matches the one the result had)
    for (i, result), filed in zip(rich, end.filing.run.results, strict=True):
        if how.only is not None:
            filed = filed.with_issues((*result.issues, *filed.issues))
        end.results[i] = filed


def _write(
    end: LaunchEnd,
    state: State,
    launch: Launch,
    how: Finish,
    redactor: Redactor,
    *,
    report: bool,
) -> None:
    """The results JSON and (``report``) the report; a file that cannot be written is a
    problem line."""
    targets = list(how.results)
    try:
        if how.default_results:
            state.ensure()  # with its own .gitignore, as .pytest_cache has
            targets.append(state.results)
        text = redactor.redact(dumps_results(launch, end.results))
        for path in targets:
            write_atomic(path, text)
        end.results_path = targets[0] if targets else None
    except (OSError, ValueError) as exc:
        end.problems.append(f"rp-bts: results not written: {exc}")
    if how.report is None or not report:
        return
    from .report import render_results

    try:
        html = render_results(launch, end.results, how.report.parent.resolve())
        write_atomic(how.report, redactor.redact(html))
        end.report_path = how.report
    except (OSError, ValueError) as exc:
        end.report_path = None
        end.problems.append(f"rp-bts: report not written: {exc}")
