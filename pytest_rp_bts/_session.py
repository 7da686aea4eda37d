"""The plugin object registered when ``--rp-bts`` is on: capture everywhere, the agent on the
controller only.

Nothing here may fail the test run: every error of the agent is contained, shown as one line and,
under ``--rp-bts-strict`` alone, turns a passing exit status into a failing one.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Generator
from operator import attrgetter
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest

from rp_bts_agent import environment
from rp_bts_agent.config import load_config
from rp_bts_agent.config_types import Config, ConfigError
from rp_bts_agent.files import prune_runs, write_atomic
from rp_bts_agent.hooks import HookManager, has_hooks
from rp_bts_agent.model import Attribute, Launch, Plain, RunResults, TestResult, dumps_results
from rp_bts_agent.redact import Redactor
from rp_bts_agent.rootdir import default_env_file
from rp_bts_agent.summary import display_path, issue_lines, link_lines, plan_lines

from ._capture import Capture, Collector
from ._fixture import ATTACHMENT_DIR
from ._options import Settings
from ._summary import Progress

if TYPE_CHECKING:
    from rp_bts_agent.notify import Notice
    from rp_bts_agent.pipeline import Outcome

log = logging.getLogger("rp_bts_agent")
RESULTS_DEFAULT = Path(".rp-bts") / "results.json"
#: run folders (attachments written by tests, spooled failure details) kept under .rp-bts/runs
KEEP_RUNS = 20


def whole_run(launch: Launch, results: list[TestResult | Plain]) -> RunResults:
    """Every result as a TestResult, for the readers of the whole run (the report, notices)."""
    return RunResults(
        launch, tuple(r if isinstance(r, TestResult) else TestResult(*r) for r in results)
    )


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:8]


class RpBtsSession:
    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self.root = Path(config.rootpath)
        self.workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
        self.run_id = str(self.workerinput["rp_bts_run_id"]) if self.workerinput else new_run_id()
        self.started = time.time()
        self.hooks = HookManager()
        for plugin in config.pluginmanager.get_plugins():
            self._adopt(plugin)
        run_dir: Path | None = None
        if self.settings.mode != "dry-run" or self.settings.results is not None:
            # a dry-run that records results (a CI shard) keeps attachments for `rp-bts process`
            run_dir = config.stash[ATTACHMENT_DIR] = self.root / ".rp-bts" / "runs" / self.run_id
        self.capture = Capture(
            self.root,
            self.hooks,
            include_params=bool(self.workerinput.get("rp_bts_fingerprint_params"))
            if self.workerinput
            else False,
            spill_dir=run_dir,
            redact=self._redact_spilled,
        )
        self.collector = Collector()
        #: errors (they fail the run under --rp-bts-strict) and warnings (they never do)
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self.outcome: Outcome | None = None
        #: no result needed the agent (all passed, nothing attached): it did not run
        self.nothing_to_file = False
        self.notices: list[Notice] = []
        self.flushed: list[str] = []
        self.fallback: ReportLog | None = None
        if self.workerinput is None and not config.pluginmanager.has_plugin("terminalreporter"):
            self.fallback = ReportLog()
            config.pluginmanager.register(self.fallback, "rp_bts_report_log")
        self.results_path: Path | None = None
        self.agent_config: Config | None = None
        self.redactor = Redactor(())
        self._config_read = False
        if self.workerinput is None or self.workerinput.get("rp_bts_sauce"):
            self._load_config()  # on workers only for Sauce Labs job updates, sent as tests end

    @property
    def is_controller(self) -> bool:
        return self.workerinput is None

    def _adopt(self, plugin: object) -> None:
        """``rp_bts_*`` functions in conftest files become hook implementations of the agent."""
        if (
            isinstance(plugin, ModuleType)
            and has_hooks(plugin)
            and not self.hooks.is_registered(plugin)
        ):
            self.hooks.register(plugin)

    def _load_config(self) -> None:
        self._config_read = True
        try:
            self.agent_config = load_config(
                self.root,
                project_file=self.settings.config,
                global_file=self.settings.global_config,
                env_file=self.settings.env_file or default_env_file(self.root),
            )
        except ConfigError as exc:
            self.problems.append(str(exc))
            return
        self.redactor = Redactor(self.agent_config.secrets())
        self.capture.include_params = self.agent_config.fingerprint_params
        self.warnings = [f"rp-bts warning: {w}" for w in self.agent_config.warnings]

    def _redact_spilled(self, text: str) -> str:
        """A spilled file goes to trackers as it is, so its secrets go first; an xdist worker
        reads the config (for the secrets) only when its first long output is spilled."""
        if not self._config_read:
            self._load_config()
        return self.redactor.redact(text)

    # -- hooks -----------------------------------------------------------------------------

    def pytest_plugin_registered(self, plugin: object) -> None:
        self._adopt(plugin)

    def pytest_report_header(self) -> list[str]:
        cfg = self.agent_config
        trackers = [i for i in cfg.integrations if i.is_tracker] if cfg else []
        if cfg is None:
            where = "integrations off (config error below)"
        elif trackers:
            where = ", ".join(f"{i.name} ({i.kind}, {i.source})" for i in trackers)
        else:
            where = "local tracker under .rp-bts/"
        lines = [f"rp-bts: launch '{self.launch_name()}', mode {self.settings.mode}, {where}"]
        return lines + [self.redactor.redact(p) for p in self.problems + self.warnings]

    def launch_name(self) -> str:
        cfg = self.agent_config
        return self.settings.launch or (cfg.launch if cfg else "") or "pytest"

    def pytest_exception_interact(
        self, node: pytest.Item | pytest.Collector, call: pytest.CallInfo[Any], report: Any
    ) -> None:
        """A failure in this process, while its exception still exists: take its fingerprint.

        Called only for failures, so a passing test costs no hook call at all; on xdist workers
        :class:`WorkerCapture` does this instead, before the report travels.
        """
        if self.is_controller and isinstance(node, pytest.Item) and report.when is not None:
            self.capture.annotate(node, report, call.excinfo, teardown=False)

    def _reports(self) -> list[pytest.TestReport]:
        """Every test report of the run, from the terminal reporter's own record.

        Reading it once at the end, instead of a ``pytest_runtest_logreport`` hook, keeps three
        hook calls per test off the run (the overhead benchmark measured them at 3%).
        """
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if self.fallback is not None or reporter is None:
            return self.fallback.reports if self.fallback is not None else []
        test_report = pytest.TestReport
        reports = [
            r
            for values in reporter.stats.values()
            for r in values
            if isinstance(r, test_report) and r.outcome in ("passed", "failed", "skipped")
        ]
        try:  # TestReport.start is there since pytest 7.3; a report made by hand may lack it
            reports.sort(key=attrgetter("start"))
        except AttributeError:
            reports.sort(key=lambda r: getattr(r, "start", 0.0))
        return reports

    def _scrub(self, report: pytest.TestReport) -> None:
        """Secrets out of what pytest itself prints later (tracebacks, captured output)."""
        redact = self.redactor.redact
        if report.longrepr is not None:
            text = report.longreprtext
            clean = redact(text)
            if clean != text:
                report.longrepr = clean
        report.sections = [(title, redact(content)) for title, content in report.sections]

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if not self.is_controller:
            return
        try:
            self._finish(session)
        except Exception as exc:  # contained: the verdict belongs to the tests
            log.exception("rp-bts: agent failed")
            self.problems.append(f"rp-bts: agent failed: {self.redactor.redact(repr(exc))}")
        errors = list(self.problems)
        if self.outcome is not None:
            errors += self.outcome.errors
        if self.settings.strict and errors and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _launch(self) -> Launch:
        cfg = self.agent_config
        return Launch(
            name=self.launch_name(),
            run_id=self.run_id,
            project=cfg.project if cfg else "",
            owner=(cfg.owner if cfg else "") or environment.ci_user(os.environ),
            start=self.started,
            end=time.time(),
            attributes=tuple(Attribute.parse(a) for a in self.settings.attributes),
            mode=self.settings.mode,
            environment=environment.describe(os.environ),
        )

    def _collect(self, session: pytest.Session) -> None:
        """Merge the reports; in this process's own tests, read markers and fixture data once."""
        reports = self._reports()
        scrub = bool(self.redactor)
        items: dict[str, pytest.Item] | None = None
        for report in reports:
            failed = report.outcome == "failed"
            if failed and "rp_bts" not in report.__dict__:
                # a failure without an exception (strict XPASS): no exception_interact call
                if items is None:
                    items = {item.nodeid: item for item in session.items}
                item = items.get(report.nodeid)
                if item is not None:
                    self.capture.annotate(item, report, None, teardown=False)
            if scrub and (failed or report.sections):
                self._scrub(report)
        self.collector.add_all(reports)
        outcomes = self.collector.outcomes
        merged: set[str] = set()
        # no items on an xdist controller: the workers sent their extras with the reports
        for item, extra in self.capture.extras_of(session.items):
            nodeid = item.nodeid
            if nodeid in outcomes and nodeid not in merged:
                merged.add(nodeid)
                self.collector.merge(nodeid, extra)
        self.problems += self.collector.problems

    def _finish(self, session: pytest.Session) -> None:
        self._collect(session)
        launch = self._launch()
        results = self.collector.results()
        # The agent sees the results it may act on; a plain one (passed, nothing attached) has
        # nothing to file, link or redact, and stays a tuple: most of a large run is such.
        rich = [(i, result) for i, result in enumerate(results) if isinstance(result, TestResult)]
        run = RunResults(launch, tuple(result for _, result in rich))
        cfg = self.agent_config
        if cfg is not None:
            started = time.monotonic()
            #: integration -> why it is down: shared by the replay and the run's own filing
            breakers: dict[str, str] = {}
            self._flush_leftovers(cfg, breakers)
            if run.results:
                budget = max(cfg.time_budget - (time.monotonic() - started), 0.0)
                run = self._file(cfg, run, breakers, budget)
                done = {result.nodeid: result for result in run.results}
                for i, result in rich:
                    results[i] = done.get(result.nodeid, result)
            else:
                self.nothing_to_file = True  # the agent, its trackers and SQLite stay unloaded
            if self.settings.notify and self.settings.mode != "dry-run" and cfg.rules:
                from rp_bts_agent.notify import notify  # jinja2 and email only when needed

                self.notices = notify(cfg, whole_run(launch, results), self.hooks)
        self._write_results(launch, results)
        if self.settings.mode != "dry-run":
            prune_runs(self.root / ".rp-bts" / "runs", KEEP_RUNS)

    def _file(
        self, cfg: Config, run: RunResults, breakers: dict[str, str], budget: float
    ) -> RunResults:
        """The agent's work on this run's failures; its outcome goes to the terminal summary."""
        from rp_bts_agent.pipeline import Agent, Options

        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        agent = Agent(
            cfg,
            hooks=self.hooks,
            redactor=self.redactor,
            options=Options(
                mode=self.settings.mode,  # type: ignore[arg-type]
                integration=self.settings.integration,
                spool=self.root / ".rp-bts" / "runs" / self.run_id,
                time_budget=budget,
            ),
            breakers=breakers,
        )
        with Progress(reporter) as progress:
            agent.progress = progress.update
            self.outcome = agent.run(run)
        return self.outcome.run

    def _flush_leftovers(self, cfg: Config, breakers: dict[str, str]) -> None:
        """What earlier runs could not send goes first (issue 6: nothing lost). A tracker found
        down here stays down for this run's own filing (``breakers``): it costs the session end
        one connect timeout, not two (benchmarks/unreachable.py)."""
        state = self.root / ".rp-bts"
        if self.settings.mode == "dry-run" or not (
            (state / "outbox.db").exists() or (state / "outbox").is_dir()
        ):
            return
        from rp_bts_agent.flush import flush
        from rp_bts_agent.replay import flush_trackers

        try:
            lines = flush_trackers(cfg, breakers, cfg.time_budget)
            lines += flush(cfg, skip=("trackers",))
            self.flushed = [f"flush: {line}" for line in lines]
        except Exception as exc:  # leftovers stay for `rp-bts flush`; this run files its own
            log.exception("rp-bts: flushing earlier work failed")
            self.problems.append(f"rp-bts: flushing earlier work failed: {exc!r}")

    def _write_results(self, launch: Launch, results: list[TestResult | Plain]) -> None:
        """Written even when the config is broken: ``rp-bts process`` can file it later."""
        text = self.redactor.redact(dumps_results(launch, results))
        targets = [self.settings.results] if self.settings.results else []
        if self.settings.mode != "dry-run":
            targets.append(self.root / RESULTS_DEFAULT)
        for path in targets:
            assert path is not None
            write_atomic(path, text)
        self.results_path = targets[0] if targets else None
        report = self.settings.report
        if report is not None:
            from rp_bts_agent.report import render as render_report

            html = render_report(
                whole_run(launch, results), report.parent.resolve(), config=self.agent_config
            )
            write_atomic(report, self.redactor.redact(html))

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.is_controller:
            return
        tr = terminalreporter
        tr.section("rp-bts")
        for problem in self.problems:
            tr.write_line(self.redactor.redact(problem), red=True)
        for warning in self.warnings:
            tr.write_line(self.redactor.redact(warning), yellow=True)
        outcome = self.outcome
        if outcome is not None or self.nothing_to_file:
            plan = outcome.plan if outcome is not None else []
            acted = outcome.run.results if outcome is not None else ()
            if self.settings.mode == "dry-run":
                for line in plan_lines(plan):
                    tr.write_line(line)
                tr.write_line("dry-run: nothing was changed")
            else:
                for line in issue_lines(acted) + link_lines(acted):
                    tr.write_line(self.redactor.redact(line))
                if not any(r.issues for r in acted):
                    tr.write_line("no failures to file")
        for line in self.flushed:  # sent after this run's own filing
            tr.write_line(self.redactor.redact(line))
        for notice in self.notices:
            tr.write_line(notice.describe(tr.startpath))
        if self.results_path is not None:
            tr.write_line(f"results: {display_path(self.results_path, tr.startpath)}")
        if self.settings.report is not None:
            tr.write_line(f"report: {display_path(self.settings.report, tr.startpath)}")


class ReportLog:
    """Keeps the reports when pytest runs without its terminal reporter (``-p no:terminal``)."""

    def __init__(self) -> None:
        self.reports: list[pytest.TestReport] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.outcome in ("passed", "failed", "skipped"):
            self.reports.append(report)


class WorkerCapture:
    """On an xdist worker: annotate each report before it travels to the controller."""

    def __init__(self, capture: Capture) -> None:
        self.capture = capture

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        teardown = call.when == "teardown"
        if report.outcome != "passed" or teardown:
            self.capture.annotate(item, report, call.excinfo, teardown=teardown)
        return report


class XdistHooks:
    """Registered only with xdist loaded: an unconditional xdist hook is an unknown-hook error."""

    def __init__(self, session: RpBtsSession) -> None:
        self.session = session

    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput["rp_bts_run_id"] = self.session.run_id
        node.workerinput["rp_bts_fingerprint_params"] = self.session.capture.include_params
        cfg = self.session.agent_config
        node.workerinput["rp_bts_sauce"] = bool(cfg and cfg.of_kind("sauce"))
