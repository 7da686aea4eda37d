"""The plugin object registered when ``--rp-bts`` is on: capture everywhere, the agent on the
controller only.

Nothing here may fail the test run: every error of the agent is contained, shown as one line and,
under ``--rp-bts-strict`` alone, turns a passing exit status into a failing one.
"""

from __future__ import annotations

import gc
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
from rp_bts_agent.hooks import HookManager, has_hooks
from rp_bts_agent.plain import PYTEST_COUNTS, Attribute, Launch
from rp_bts_agent.redact import Redactor
from rp_bts_agent.rootdir import default_env_file, find_project_root, nodeid_mapper
from rp_bts_agent.state import State
from rp_bts_agent.summary import (
    display_path,
    flaky_lines,
    issue_lines,
    link_lines,
    plan_lines,
)

from ._capture import ATTACHMENT_DIR, Capture, Collector
from ._options import Settings
from ._progress import ProgressLine

if TYPE_CHECKING:
    from rp_bts_agent.kinds import Kind, LiveReporter
    from rp_bts_agent.launch import LaunchEnd

log = logging.getLogger("rp_bts_agent")

#: the test reports rp-bts reads: pytest's three, and a failed try of a rerun test
_OUTCOMES = ("passed", "failed", "skipped", "rerun")


def project_root(config: pytest.Config, workerinput: dict[str, Any] | None) -> Path:
    """The folder of the rp-bts config found from the test paths upwards, else pytest's rootdir
    (``rootdir.find_project_root``); an xdist worker takes its controller's."""
    if workerinput is not None and "rp_bts_root" in workerinput:
        return Path(workerinput["rp_bts_root"])
    base = Path(config.invocation_params.dir)
    paths = [base / str(arg).split("::", 1)[0] for arg in config.args]
    return find_project_root(paths) or Path(config.rootpath)


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:8]


class RpBtsSession:
    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self.workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
        self.root = project_root(config, self.workerinput)
        nodeid = nodeid_mapper(Path(config.rootpath), self.root)
        self.run_id = str(self.workerinput["rp_bts_run_id"]) if self.workerinput else new_run_id()
        self.started = time.time()
        self.hooks = HookManager()
        for plugin in config.pluginmanager.get_plugins():
            self._adopt(plugin)
        # a dry-run records its results too (a CI shard): attachments stay for `rp-bts process`
        run_dir = config.stash[ATTACHMENT_DIR] = State(self.root).run(self.run_id)
        self.capture = Capture(
            self.root,
            self.hooks,
            include_params=bool(self.workerinput.get("rp_bts_fingerprint_params"))
            if self.workerinput
            else False,
            group_by=str(self.workerinput.get("rp_bts_group_by", "cause"))
            if self.workerinput
            else "cause",
            spill_dir=run_dir,
            redact=self._redact_spilled,
            nodeid=nodeid,
        )
        self.collector = Collector(nodeid)
        #: errors (they fail the run under --rp-bts-strict) and warnings (they never do)
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self.end: LaunchEnd | None = None
        self.fallback: ReportLog | None = None
        if self.workerinput is None and not config.pluginmanager.has_plugin("terminalreporter"):
            self.fallback = ReportLog()
            config.pluginmanager.register(self.fallback, "rp_bts_report_log")
        self.agent_config: Config | None = None
        self.redactor = Redactor(())
        #: for pytest's own lines: weak secrets (``test``) would mask ordinary names there
        self.pytest_redactor = Redactor(())
        self._config_read = False
        if self.workerinput is None or self.workerinput.get("rp_bts_live"):
            self._load_config()  # on workers only for live reporting (Sauce Labs job updates)

    @property
    def is_controller(self) -> bool:
        return self.workerinput is None

    @property
    def masks_ids(self) -> bool:
        """Strong secrets are configured (an xdist worker hears it from its controller, so
        it reads the config only when there are ids to mask)."""
        if self.workerinput is not None:
            return bool(self.workerinput.get("rp_bts_mask_ids"))
        return bool(self.pytest_redactor)

    def live_kinds(self) -> list[Kind]:
        """The configured kinds that report each test as it ends (none in a dry-run)."""
        cfg = self.agent_config
        if cfg is None or not cfg.integrations or self.settings.mode == "dry-run":
            return []
        from rp_bts_agent import kinds  # only with integrations configured

        try:
            found = [kinds.get(name) for name in dict.fromkeys(i.kind for i in cfg.integrations)]
        except kinds.KindError as exc:  # the config loaded it once: not expected, still contained
            self.problems.append(f"rp-bts: {exc}")
            return []
        return [kind for kind in found if kind.live is not None]

    def live_reporters(self) -> list[LiveReporter]:
        cfg = self.agent_config
        tag = f"{self.run_id}-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
        return [
            kind.live(cfg, self.launch_name(), self.run_id, tag)
            for kind in self.live_kinds()
            if kind.live is not None and cfg is not None
        ]

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
        secrets = self.agent_config.secrets()
        self.redactor = Redactor(secrets)
        self.pytest_redactor = Redactor(secrets, strong_only=True)
        self.capture.include_params = self.agent_config.fingerprint_params
        self.capture.group_by = self.agent_config.group_by
        self.warnings = [f"rp-bts warning: {w}" for w in self.agent_config.warnings]

    def _redact_spilled(self, text: str) -> str:
        """A spilled file goes to trackers as it is, so its secrets go first; an xdist worker
        reads the config (for the secrets) only when its first long output is spilled."""
        if not self._config_read:
            self._load_config()
        return self.redactor.redact(text)

    def redact_id(self, text: str) -> str:
        """A parameter id as pytest will print it: masked of strong secrets only."""
        if not self._config_read:
            self._load_config()
        return self.pytest_redactor.redact(text)

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
        return [self.redactor.redact(line) for line in lines + self.problems + self.warnings]

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

    def _reports(self) -> tuple[list[pytest.TestReport], list[pytest.CollectReport]]:
        """Every test report of the run (failed tries of rerun tests too) and every failed
        collection, from the terminal reporter's own record.

        Reading it once at the end, instead of a ``pytest_runtest_logreport`` hook, keeps three
        hook calls per test off the run (the overhead benchmark measured them at 3%).
        """
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if self.fallback is not None or reporter is None:
            if self.fallback is None:
                return [], []
            return self.fallback.reports, self.fallback.collection
        test_report = pytest.TestReport
        reports = [
            r
            for values in reporter.stats.values()
            for r in values
            if isinstance(r, test_report) and r.outcome in _OUTCOMES
        ]
        collect_report = pytest.CollectReport
        broken = {  # xdist's workers each report it; the controller keeps the first
            r.nodeid: r
            for r in reporter.stats.get("error", ())
            if isinstance(r, collect_report) and r.failed
        }
        try:  # TestReport.start is there since pytest 7.3; a report made by hand may lack it
            reports.sort(key=attrgetter("start"))
        except AttributeError:
            reports.sort(key=lambda r: getattr(r, "start", 0.0))
        return reports, list(broken.values())

    def _scrub(self, report: pytest.TestReport | pytest.CollectReport) -> None:
        """Secrets out of what pytest itself prints later (tracebacks, captured output)."""
        redact = self.pytest_redactor.redact
        if report.longrepr is not None:
            text = report.longreprtext
            clean = redact(text)
            if clean != text:
                report.longrepr = clean
        report.sections = [(title, redact(content)) for title, content in report.sections]

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if not self.is_controller or self.config.option.collectonly:
            return  # --collect-only ran no test: the last run's results and report stay
        # What the run built (items, reports, fixtures) is frozen out of the garbage collector:
        # the session end allocates a few objects per test, and each collection those trigger
        # would walk all of pytest's objects again (a fifth of the plugin's cost on 5,000 tests).
        gc.freeze()
        try:
            self._finish(session)
        except Exception as exc:  # contained: the verdict belongs to the tests
            log.exception("rp-bts: agent failed")
            self.problems.append(f"rp-bts: agent failed: {self.redactor.redact(repr(exc))}")
        finally:
            gc.unfreeze()
        errors = list(self.problems)
        if self.end is not None:
            errors += self.end.errors
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
            counts=self._counts(),
        )

    def _counts(self) -> dict[str, int]:
        """pytest's own tally from its terminal reporter (a test failing in its call and again
        in teardown is one failed and one error there); empty without one."""
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:
            return {}
        stats = reporter.stats
        return {key: len(stats[key]) for key in PYTEST_COUNTS if stats.get(key)}

    def _collect(self, session: pytest.Session) -> None:
        """Merge the reports; in this process's own tests, read markers and fixture data once."""
        reports, broken = self._reports()
        scrub = bool(self.pytest_redactor)
        for collect in broken:
            if scrub:
                self._scrub(collect)
            self.collector.collection.append(self.capture.collection_error(collect))
        items: dict[str, pytest.Item] | None = None
        for report in reports:
            failed = report.outcome == "failed"
            if failed and "rp_bts" not in report.__dict__:
                # a failure without an exception (strict XPASS): no exception_interact call
                if items is None:
                    items = {item.nodeid: item for item in getattr(session, "items", ())}
                item = items.get(report.nodeid)
                if item is not None:
                    self.capture.annotate(item, report, None, teardown=False)
            if scrub and (failed or report.sections):
                self._scrub(report)
        self.collector.add_all(reports)
        outcomes = self.collector.outcomes
        merged: set[str] = set()
        # no items on an xdist controller (before pytest 8 not even the attribute): the
        # workers sent their extras with the reports
        for item, extra in self.capture.extras_of(getattr(session, "items", ())):
            nodeid = item.nodeid
            if nodeid in outcomes and nodeid not in merged:
                merged.add(nodeid)
                self.collector.merge(nodeid, extra)
        self.problems += self.collector.problems
        self.warnings += [f"rp-bts warning: {note}" for note in self.collector.notes]

    def _finish(self, session: pytest.Session) -> None:
        """Collected here, handed over: the launch's end is the agent's (``launch.finish``)."""
        from rp_bts_agent.launch import Finish, finish

        self._collect(session)
        watched: frozenset[str] = frozenset()
        history = State(self.root).history_db
        if history.exists():  # tests an open issue waits on: their passes go to the agent too
            from rp_bts_agent.history import History

            watched = History(history, read_only=True).watched()
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        settings = self.settings
        with ProgressLine(reporter) as progress:
            self.end = finish(
                self.agent_config,
                self.root,
                self._launch(),
                self.collector.results(watched),
                Finish(
                    mode=settings.mode,  # type: ignore[arg-type]
                    integration=settings.integration,
                    notify=settings.notify,
                    results=[settings.results] if settings.results else [],
                    report=self._report_path(),
                    spool=State(self.root).run(self.run_id),
                    progress=progress.update,
                ),
                hooks=self.hooks,
                redactor=self.redactor,
            )

    def _report_path(self) -> Path | None:
        """``.rp-bts/report.html`` unless the option names another or ``none``, in a dry-run
        too (issue 12, point 14: the plan's results, without issue references)."""
        settings = self.settings
        if settings.no_report:
            return None
        return settings.report or State(self.root).report

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.is_controller:
            return
        tr = terminalreporter
        tr.section("rp-bts")
        end = self.end
        ended = end.problems + end.loose_errors if end is not None else []
        for problem in self.problems + ended:
            tr.write_line(self.redactor.redact(problem), red=True)
        for warning in self.warnings:
            tr.write_line(self.redactor.redact(warning), yellow=True)
        if end is None:
            return
        if end.filing is not None or end.nothing_to_file:
            plan = end.filing.plan if end.filing is not None else []
            acted = end.filing.run.results if end.filing is not None else ()
            if self.settings.mode == "dry-run":
                for line in plan_lines(plan):
                    tr.write_line(line)
                tr.write_line("dry-run: nothing was filed, sent or recorded")
            else:
                for line in issue_lines(acted) + link_lines(acted):
                    tr.write_line(self.redactor.redact(line))
                if not any(r.issues for r in acted):
                    tr.write_line("no failures to file")
            if end.filing is not None and self.agent_config is not None:
                for line in flaky_lines(acted, self.agent_config.flaky) + end.filing.passing:
                    tr.write_line(self.redactor.redact(line))
                if end.filing.storm:
                    tr.write_line(
                        f"storm guard fired: {self.redactor.redact(end.filing.storm)};"
                        " one issue for the run, each test's failure in its attachment",
                        yellow=True,
                    )
        for line in end.flushed:  # what earlier runs left, sent (or kept) at this run's end
            tr.write_line(self.redactor.redact(line))
        for notice in end.notices:
            tr.write_line(notice.describe(tr.startpath))
        if end.results_path is not None:
            tr.write_line(f"results: {display_path(end.results_path, tr.startpath)}")
        if end.report_path is not None:
            tr.write_line(f"report: {display_path(end.report_path, tr.startpath)}")


class ReportLog:
    """Keeps the reports when pytest runs without its terminal reporter (``-p no:terminal``)."""

    def __init__(self) -> None:
        self.reports: list[pytest.TestReport] = []
        self.collection: list[pytest.CollectReport] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.outcome in _OUTCOMES:
            self.reports.append(report)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.collection.append(report)


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
        node.workerinput["rp_bts_root"] = str(self.session.root)
        node.workerinput["rp_bts_fingerprint_params"] = self.session.capture.include_params
        node.workerinput["rp_bts_group_by"] = self.session.capture.group_by
        node.workerinput["rp_bts_live"] = bool(self.session.live_kinds())
        node.workerinput["rp_bts_mask_ids"] = self.session.masks_ids
