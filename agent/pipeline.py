"""From a finished run to issue references: route, group by fingerprint, plan, execute.

Planning reads trackers only, so ``dry-run`` is the plan printed and nothing executed. Every error
of a tracker is contained here: it becomes a ``failed`` reference and one line in ``errors``,
never an exception into the test run.
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import logging
import sqlite3
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, TypeVar

from . import http, kinds
from .config import build_integration
from .config_types import Config, Integration
from .content import comment_draft, issue_draft, one_line
from .deadline import before_each_send
from .filed import FiledRecord
from .fingerprint import compute_for, normalize_message
from .history import Due, History
from .hooks import HookManager
from .known import KnownRecord, KnownStore
from .model import Action, IssueRef, KnownIssue, Launch, Link, RunResults, TestResult
from .modes import Mode
from .outbox import Key, Outbox, settings_digest
from .redact import Redactor
from .state import State
from .tracker import (
    AttachmentFile,
    Body,
    CommentDraft,
    IssueDraft,
    Notes,
    RemoteIssue,
    Resolves,
    Section,
    Tracker,
    TrackerError,
    run_marker,
)

log = logging.getLogger("rp_bts_agent")

Verb = Literal["create", "complete", "comment", "reopen", "link"]
ProgressCallback = Callable[[int, int], None]
T = TypeVar("T")

#: tries of one tracker step whose failure was transient (a 500, a lost answer), and the pause
#: before the second (doubling after)
ATTEMPTS: Final = 3
PAUSE = 0.5
#: seconds between two asks for fingerprints another process is filing in this folder
TURN_PAUSE = 0.1


def embedded_tracker(root: str | Path) -> Integration:
    """The tracker used when no integration is configured: a new user needs no server."""
    kind = kinds.get_embedded().name
    return build_integration(kind, kind, root=Path(root), source="default")


def open_tracker(integration: Integration, *, read_only: bool = False) -> Tracker:
    """The tracker behind an integration; ``read_only`` (dry-run) must change nothing."""
    try:
        kind = kinds.get(integration.kind)
    except kinds.KindError as exc:
        raise TrackerError(f"integration '{integration.name}': {exc}") from None
    if kind.tracker is None:
        raise TrackerError(
            f"integration '{integration.name}': kind '{integration.kind}' does not file issues"
        )
    return kind.tracker(integration, read_only)


@dataclass(frozen=True, slots=True)
class PlannedAction:
    """One write the agent means to make, for all failures that share a fingerprint."""

    verb: Verb
    integration: str
    fingerprint: str
    results: tuple[TestResult, ...]
    existing: RemoteIssue | None = None

    def describe(self) -> str:
        tests = f"{len(self.results)} test(s): {self.results[0].nodeid}"
        if len(self.results) > 1:
            tests += f" (+{len(self.results) - 1} more)"
        key = self.existing.key if self.existing else ""
        what = {
            "create": f"create an issue{f' related to closed {key}' if key else ''}",
            "complete": f"complete {key}, filed by this run before it stopped",
            "comment": f"comment on {key}",
            "reopen": f"reopen {key} and comment",
            "link": f"link to {key}",
        }[self.verb]
        return f"{self.integration}: {what} for {tests} [{self.fingerprint}]"


#: what a create step leaves: the reference (when it went no further), or the draft and the
#: issue filed for it, whose attachments and links are still to follow
Filed = IssueRef | tuple[IssueDraft, RemoteIssue]


@dataclass(slots=True)
class FilingReport:
    """What the agent did; ``errors`` are one-line, already redacted."""

    run: RunResults
    plan: list[PlannedAction] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: why the storm guard fired ("" when it did not)
    storm: str = ""
    #: one line per issue whose tests pass again (``on_pass``: commented, resolved)
    passing: list[str] = field(default_factory=list)
    #: what happened to a tracker's own storage (also in ``errors``): a replay says them
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Options:
    mode: Mode = "post"
    #: ``--rp-bts-integration``: where failures go unless a marker or hook says otherwise.
    integration: str = ""
    #: per-post override of the integration's ``include`` (``rp-bts post --include``).
    include: tuple[str, ...] | None = None
    #: per-post override of the integration's ``log_lines`` (``rp-bts post --log-lines``).
    log_lines: int | None = None
    #: where generated attachment files (full failure details) are written.
    spool: Path | None = None
    #: keep work a tracker could not take now in the outbox (``rp-bts flush`` replays it; the
    #: replay itself sets this off and settles the outbox entries it ran)
    keep_in_outbox: bool = True
    #: seconds the filing may take (the plugin sets the config's ``time_budget`` at session
    #: end, where a test run must not wait); None for no limit, as in ``rp-bts flush``
    time_budget: float | None = None
    #: ``rp-bts post --issue-type``: this issue's type, over the integration's and a marker's
    issue_type: str = ""
    #: ``rp-bts post --field KEY=VALUE``: fields of this issue, over the integration's
    fields: Mapping[str, str] = field(default_factory=dict)
    #: tests in the run, for the storm guard's ratio (the agent is handed only the results it
    #: may act on); 0: the results handed over are the whole run
    total: int = 0


def _submit(pool: ThreadPoolExecutor, call: Callable[..., T], *args: object) -> Future[T]:
    """A task that runs under the caller's deadline (context variables do not cross into a
    pool's threads by themselves)."""
    return pool.submit(contextvars.copy_context().run, call, *args)


def tracker_identity(integration: Integration) -> str:
    """Which tracker project an integration files into: integrations may share one."""
    return integration.tracker_settings.identity(integration.kind)


def redact_result(result: TestResult, redactor: Redactor) -> TestResult:
    """Scrub every text a test produced before anything is filed, written or hooked."""
    r = redactor.redact
    return dataclasses.replace(
        result,
        nodeid=r(result.nodeid),  # an explicit parametrize id may hold a secret
        params=r(result.params),
        message=r(result.message),
        longrepr=r(result.longrepr),
        log=r(result.log),
        stdout=r(result.stdout),
        stderr=r(result.stderr),
        description=r(result.description),
        attributes=tuple(dataclasses.replace(a, value=r(a.value)) for a in result.attributes),
        also_failed=tuple(
            dataclasses.replace(f, message=r(f.message), longrepr=r(f.longrepr))
            for f in result.also_failed
        ),
    )


def redact_launch(launch: Launch, redactor: Redactor) -> Launch:
    """A launch's name and attributes go into every issue and comment: masked first."""
    r = redactor.redact
    return dataclasses.replace(
        launch,
        name=r(launch.name),
        attributes=tuple(dataclasses.replace(a, value=r(a.value)) for a in launch.attributes),
    )


class Agent:
    """Runs the pipeline for one launch; trackers are opened lazily and closed at the end."""

    def __init__(
        self,
        config: Config,
        *,
        hooks: HookManager,
        redactor: Redactor,
        options: Options = Options(),
        progress: ProgressCallback | None = None,
        breakers: dict[str, str] | None = None,
    ) -> None:
        self.config = config
        self.hooks = hooks
        self.redactor = redactor
        self.options = options
        self.progress = progress
        self._trackers: dict[str, Tracker] = {}
        #: circuit breaker: integrations that did not answer, with the line that said so; shared
        #: by the agents of one process (the replay of earlier work, then the run's own), so a
        #: tracker that does not answer costs the process one timeout
        self._down: dict[str, str] = breakers if breakers is not None else {}
        #: (integration, group, reference) of the work a tracker did not take
        self._kept: list[tuple[str, tuple[TestResult, ...], IssueRef]] = []
        #: the integration's name behind each target of another issue type (see _target)
        self._names: dict[str, str] = {}
        self.state = State(config.root)
        self.record = FiledRecord(self.state.filed_db, read_only=options.mode == "dry-run")
        self.history = History(self.state.history_db, read_only=options.mode == "dry-run")
        self.known = KnownStore(self.state.known_db, read_only=options.mode == "dry-run")
        self._errors: list[str] = []
        #: storm fingerprint -> why the guard made that group
        self._storms: dict[str, str] = {}
        #: ``time.monotonic()`` by which this run's work ends (its budget, or a caller's)
        self._deadline: float | None = None
        #: the run marker of the launch being filed: an issue that carries it is this run's own
        self._marker = ""
        #: user hooks that raised in this run (each is said once)
        self._hooks_failed: set[str] = set()
        self._lock = threading.Lock()

    # -- routing ---------------------------------------------------------------------------

    def _trackers_configured(self) -> tuple[Integration, ...]:
        return tuple(i for i in self.config.integrations if i.is_tracker)

    def resolve(self, name: str) -> Integration | None:
        found = self.config.integration(name)
        if found is None and not self._trackers_configured():
            embedded = embedded_tracker(self.config.root)
            return embedded if name == embedded.name else None
        return found

    def route(self, result: TestResult) -> Integration:
        """Hook, then ``bts`` marker, then option, then config default, then the first tracker."""
        try:
            chosen = self.hooks.hook.rp_bts_route(result=result, config=self.config)
        except Exception as exc:  # a user's hook: said once, and routed as without it
            self._hook_failed("rp_bts_route", exc)
            chosen = None
        if not chosen and result.route is not None:
            chosen = result.route.integration
        chosen = chosen or self.options.integration or self.config.default_integration
        if chosen:
            integration = self.resolve(chosen)
            if integration is None or not integration.is_tracker:
                raise TrackerError(f"no tracker integration named '{chosen}'")
            return integration
        configured = self._trackers_configured()
        return configured[0] if configured else embedded_tracker(self.config.root)

    def _target(self, integration: Integration, result: TestResult) -> tuple[str, Integration]:
        """Where a result files: its integration, or, when ``--issue-type`` or a ``bts``
        marker asks for another issue type, that integration for that type, a target of its
        own (issues of one type are found apart from another's, as ReportPortal's several
        integrations per project file apart). The target's key names both."""
        wanted = self.options.issue_type or (result.route.issue_type if result.route else "")
        wanted = wanted or ""
        if not wanted or wanted == integration.tracker_settings.issue_type:
            return integration.name, integration
        target = f"{integration.name} [{wanted}]"
        self._names[target] = integration.name
        return target, integration.with_settings(issue_type=wanted)

    def _name(self, target: str) -> str:
        """The integration's own name behind a target key (the outbox replays by name)."""
        return self._names.get(target, target)

    def tracker(self, integration: Integration) -> Tracker:
        key = f"{integration.name}\0{integration.tracker_settings.issue_type}"
        tracker = self._trackers.get(key)
        if tracker is None:
            tracker = open_tracker(integration, read_only=self.options.mode == "dry-run")
            self._trackers[key] = tracker
        return tracker

    def close(self) -> None:
        for tracker in self._trackers.values():
            try:
                tracker.close()
            except Exception as exc:  # closing must not hide the run's results
                self._error(f"closing a tracker failed: {exc}")
        self._trackers.clear()

    def _error(self, message: str) -> str:
        line = one_line(self.redactor.redact(message), 500)
        log.warning("%s", line)
        self._errors.append(line)
        return line

    # -- the pipeline ----------------------------------------------------------------------

    def run(self, run: RunResults) -> FilingReport:
        self._errors = []
        self._kept = []
        self._storms = {}
        self._marker = run_marker(run.launch.run_id)
        budget = self.options.time_budget
        limits = [http.deadline(), time.monotonic() + budget if budget is not None else None]
        self._deadline = min((d for d in limits if d is not None), default=None)
        try:
            # every HTTP call of every tracker, in this thread and in the pools' tasks,
            # ends by the deadline (issue 11, point 3)
            with http.time_limit(self._deadline):
                return self._run(run)
        finally:
            self.close()

    def _run(self, run: RunResults) -> FilingReport:
        if self.redactor:
            run = RunResults(
                redact_launch(run.launch, self.redactor),
                tuple(redact_result(r, self.redactor) for r in run.results),
            )
        if self._linkers:  # before drafting: issues, mails and the report show the links
            run = RunResults(run.launch, tuple(self._linked(r) for r in run.results))
        run = self._flaky(run)
        refs: dict[str, list[IssueRef]] = defaultdict(list)
        groups: dict[tuple[str, str], list[TestResult]] = defaultdict(list)
        integrations: dict[str, Integration] = {}
        for result in run.results:
            if not self._files(result):
                continue
            if result.known_issues:
                refs[result.nodeid] += [self._known(result, k) for k in result.known_issues]
                continue
            try:
                integration = self.route(result)
            except TrackerError as exc:
                line = self._error(f"{result.nodeid}: {exc}")
                refs[result.nodeid].append(IssueRef("", "", action="failed", error=line))
                continue
            pulled = self._pulled_known(result, integration)
            if pulled is not None:
                self.known.hit(pulled, result.nodeid, run.launch.run_id)
                refs[result.nodeid].append(
                    self._known(result, KnownIssue(pulled.key, pulled.integration))
                )
                continue
            target, integration = self._target(integration, result)
            integrations[target] = integration
            groups[(target, result.fingerprint)].append(result)

        storm = self._storm(groups, integrations, self.options.total or len(run.results))
        if self._keeps and groups:
            plan = self._in_turns(run.launch, groups, integrations, refs)
        else:
            plan = self._plan(groups, integrations, refs)
            if self.options.mode != "dry-run":
                self._execute(plan, integrations, run.launch, refs)
        stormed = {  # the results the storm guard regrouped: the results JSON says so
            r.nodeid: r for key, group in groups.items() if key[1] in self._storms for r in group
        }
        results = tuple(
            stormed.get(r.nodeid, r).with_issues(refs[r.nodeid])
            if r.nodeid in refs
            else stormed.get(r.nodeid, r)
            for r in run.results
        )
        report = FilingReport(RunResults(run.launch, results), plan, storm=storm)
        if self.options.mode == "post":
            report.passing = self._on_pass(report.run)
        for tracker in self._trackers.values():
            if isinstance(tracker, Notes):
                report.notes += [self._error(note) for note in tracker.take_notes()]
        report.errors = list(self._errors)
        return report

    # -- flaky tests, the storm guard, issues whose tests pass again -----------------------

    def _files(self, result: TestResult) -> bool:
        """A failure is filed; so is a test that passed on a rerun (flaky) unless the config
        says ``flaky = "skip"``."""
        if result.flaky:
            return self.config.flaky != "skip" and bool(result.fingerprint)
        return result.failing

    def _flaky(self, run: RunResults) -> RunResults:
        """Failures that our record shows passing and failing alike within ``flaky.window``
        runs are flaky too (a rerun plugin marks its own on the result)."""
        failures = [(r.nodeid, r.fingerprint) for r in run.results if r.failing and r.fingerprint]
        try:
            flaky = self.history.flaky(failures, self.config.flaky_window) if failures else set()
        except OSError as exc:
            self._error(f"the record of runs {self.history.path} cannot be read: {exc}")
            return run
        if not flaky:
            return run
        return RunResults(
            run.launch,
            tuple(
                dataclasses.replace(r, flaky=True) if r.nodeid in flaky and r.failing else r
                for r in run.results
            ),
        )

    def _lookup(
        self,
        groups: Mapping[tuple[str, str], list[TestResult]],
        integrations: Mapping[str, Integration],
    ) -> dict[str, Mapping[str, RemoteIssue] | IssueRef]:
        """Each integration's issues for its groups' fingerprints, or the reference that says
        why they could not be looked up (its tracker is down)."""
        by_integration: dict[str, list[str]] = defaultdict(list)
        for name, fingerprint in groups:
            by_integration[name].append(fingerprint)
        return {
            name: self._guarded(
                name, "", functools.partial(self._find, integrations[name], fingerprints)
            )
            for name, fingerprints in by_integration.items()
        }

    def _storm(
        self,
        groups: dict[tuple[str, str], list[TestResult]],
        integrations: Mapping[str, Integration],
        total: int,
    ) -> str:
        """The storm guard: more than ``storm.ratio`` of at least ``storm.min_tests`` tests
        failing with one cause, or more than ``max_new_issues`` new issues, go into one "run
        broken" issue per integration (its fingerprint is the cause, so the next run of the
        broken environment comments on it). Changes ``groups``; says why it fired. Issues are
        looked up only when there are more groups than ``max_new_issues`` (planning looks
        again, under the outbox's lease)."""
        if self.options.mode == "link" or not groups:
            return ""
        cfg = self.config
        reasons: list[str] = []
        moved: list[tuple[str, TestResult]] = []
        causes = Counter(_cause(r) for group in groups.values() for r in group)
        causes.pop(None, None)
        (cause, count) = causes.most_common(1)[0] if causes else (None, 0)
        subject = "max_new_issues"
        if cause is not None and total >= cfg.storm_min_tests and count > cfg.storm_ratio * total:
            subject = " ".join(cause)
            reasons.append(
                f"{count} of {total} tests failed with {': '.join(filter(None, cause))}"
                f" (more than {cfg.storm_ratio:.0%} of at least {cfg.storm_min_tests} tests)"
            )
            for key in list(groups):
                moved += [(key[0], r) for r in groups[key] if _cause(r) == cause]
                rest = [r for r in groups[key] if _cause(r) != cause]
                if rest:
                    groups[key] = rest
                else:
                    del groups[key]
        new: list[tuple[str, str]] = []
        if len(groups) + bool(moved) > cfg.max_new_issues:
            found = self._lookup(groups, integrations)
            new = [key for key in groups if self._new(key, integrations, found)]
        opening = len(new) + bool(moved)
        if opening > cfg.max_new_issues:
            reasons.append(
                f"the run would open {opening} new issues, more than max_new_issues ="
                f" {cfg.max_new_issues}"
            )
            for key in new:
                moved += [(key[0], r) for r in groups.pop(key)]
        if not moved:
            return ""
        reason = "; ".join(reasons)
        fingerprint = compute_for("storm", subject, "", "")
        self._storms[fingerprint] = reason
        for name, result in moved:
            storm = dataclasses.replace(result, fingerprint=fingerprint, grouped_by="storm")
            groups.setdefault((name, fingerprint), []).append(storm)
        log.warning("rp-bts: the storm guard fired: %s", reason)
        return reason

    def _new(
        self,
        key: tuple[str, str],
        integrations: Mapping[str, Integration],
        found: Mapping[str, Mapping[str, RemoteIssue] | IssueRef],
    ) -> bool:
        """Whether the group would open a new issue (unknown when its tracker is down: yes)."""
        name, fingerprint = key
        existing = found.get(name)
        if existing is None or isinstance(existing, IssueRef):
            return True
        return self._decide(integrations[name], existing.get(fingerprint)) == "create"

    def _on_pass(self, run: RunResults) -> list[str]:
        """Record the run; each open issue whose tests have all passed ``on_pass.runs`` runs in
        a row gets one comment "passing since run X" (and with ``on_pass = "resolve"`` its
        tracker's resolved state), then no longer waits on them."""
        try:
            due = self.history.record(run.launch.run_id, run.results, self.config.on_pass_runs)
        except (sqlite3.Error, OSError) as exc:
            self._error(f"the record of runs {self.history.path} cannot be written: {exc}")
            return []
        lines = []
        for issue in due:
            integration = self.resolve(issue.integration)
            if integration is None or not integration.is_tracker:
                self.history.forget(issue.integration, issue.key)  # its integration is gone
                continue
            done = self._guarded(
                issue.integration,
                "on_pass failed: ",
                functools.partial(self._passing, integration, issue, run.launch),
            )
            if isinstance(done, str):  # else: said in errors; the next passing run tries again
                lines.append(done)
                self.history.forget(issue.integration, issue.key)
        return lines

    def _passing(self, integration: Integration, issue: Due, launch: Launch) -> str:
        name, key = integration.name, issue.key
        tracker = self.tracker(integration)
        current = tracker.get(key)
        if current.closed:
            return f"passing   [{name}] {key} ({current.status}): its tests pass again"
        text = (
            f"Passing since run {issue.since}: its {len(issue.nodeids)} test(s) passed in"
            f" {issue.passes} runs in a row (launch '{launch.name}', run {launch.run_id})."
        )
        body = Body((Section("", text), Section("Tests", "\n".join(issue.nodeids))))
        added = tracker.comment(key, CommentDraft(body, run_id=launch.run_id))
        did = "commented" if added else "already commented"
        if self.config.on_pass == "resolve":
            if isinstance(tracker, Resolves):
                current = tracker.resolve(key)
                did = "resolved"
            else:
                self._error(f"{name}: a {integration.kind} tracker cannot resolve {key}")
        return f"passing   [{name}] {key} ({current.status}): since run {issue.since}, {did}"

    @property
    def _queues(self) -> bool:
        """Work a tracker cannot take now waits for a replay only when filing: a replay files,
        and linking never does."""
        return self.options.mode == "post"

    @property
    def _keeps(self) -> bool:
        """This run writes its queued work to the outbox (a replay settles its own entries)."""
        return self.options.keep_in_outbox and self._queues

    def _in_turns(
        self,
        launch: Launch,
        groups: Mapping[Key, list[TestResult]],
        integrations: Mapping[str, Integration],
        refs: dict[str, list[IssueRef]],
    ) -> list[PlannedAction]:
        """File the groups through the outbox: all of them are written there before anything
        is sent (nothing lost if the run dies half way), and each is filed only while this
        process holds it, so parallel runs and flushes in one folder never file one
        fingerprint at once (issue 11, point 1): a group another process is filing waits for
        it to finish and then finds its issue. Done groups leave, the rest stays for a replay."""
        outbox = Outbox(self.state.outbox_db)
        plan: list[PlannedAction] = []
        waiting = dict(groups)
        try:
            with outbox.lease() as lease, before_each_send(lease.sending):
                # the outbox knows integrations by name: a target of another issue type
                # (``_target``) is its integration's for it
                real = {key: (self._name(key[0]), key[1]) for key in groups}
                outbox.begin(launch, ((real[k][0], g) for k, g in groups.items()), lease.owner)
                while waiting:
                    free = outbox.acquire(lease.owner, launch.run_id, {real[k] for k in waiting})
                    got = {k for k in waiting if real[k] in free}
                    if not got:
                        if self._deadline is not None and time.monotonic() >= self._deadline:
                            break
                        time.sleep(TURN_PAUSE)
                        continue
                    turn = {key: waiting.pop(key) for key in sorted(got)}
                    before = len(self._kept)
                    actions = self._plan(turn, integrations, refs)
                    self._execute(actions, integrations, launch, refs)
                    plan += actions
                    kept = self._kept[before:]
                    stays = {(name, results[0].fingerprint) for name, results, _ in kept}
                    outbox.release(
                        lease.owner,
                        launch,
                        {real[k] for k in set(turn) - stays},
                        self._outbox_rows(kept, integrations),
                    )
        except (sqlite3.Error, OSError) as exc:
            self._error(f"the outbox {outbox.path} cannot be written: {exc}")
            if waiting:  # filed without it: nothing is lost that a tracker takes now
                actions = self._plan(waiting, integrations, refs)
                self._execute(actions, integrations, launch, refs)
                plan += actions
                waiting = {}
        for note in outbox.notes:
            self._error(note)
        for (name, _), results in waiting.items():  # left in the outbox by the lease's end
            line = self._error(
                f"{name}: another run in this folder was still filing"
                f" {results[0].fingerprint}; kept for rp-bts flush"
            )
            for result in results:
                ref = IssueRef(self._name(name), "", action="queued", error=line)
                refs[result.nodeid].append(ref)
        return plan

    def _outbox_rows(
        self,
        kept: Iterable[tuple[str, tuple[TestResult, ...], IssueRef]],
        integrations: Mapping[str, Integration],
    ) -> list[tuple[str, tuple[TestResult, ...], str, str, str]]:
        """What stays in the outbox: ``pending`` for a replay; ``failed`` (a refusal) with the
        configuration it was refused with, tried again once that changes (issue 12)."""
        rows = []
        for target, results, ref in kept:
            name = self._name(target)  # the outbox knows the integration, not the target
            if ref.action == "queued":
                rows.append((name, results, ref.error, "pending", ""))
            else:
                configured = self.config.integration(name) or integrations[target]
                digest = settings_digest(configured.settings)
                rows.append((name, results, ref.error, "failed", digest))
        return rows

    def _linked(self, result: TestResult) -> TestResult:
        """Links to the result's pages (a Sauce Labs job and its video), computed once here and
        kept on the result: the results JSON, issues, the summary, mail and report read them."""
        if not result.attributes:
            return result
        links = tuple(link for linker in self._linkers for link in linker(result, self.config))
        return dataclasses.replace(result, links=links) if links else result

    @functools.cached_property
    def _linkers(self) -> list[Callable[[TestResult, Config], tuple[Link, ...]]]:
        """Every installed kind that links results: a ``slid`` marker links its job even with
        no Sauce Labs integration configured (unsigned, then)."""
        linkers = []
        for name in kinds.names():
            try:
                linker = kinds.get(name).links
            except kinds.KindError as exc:  # a broken third-party kind: said once, skipped
                self._error(str(exc))
                continue
            if linker is not None:
                linkers.append(linker)
        return linkers

    @functools.cached_property
    def _kinds(self) -> list[kinds.Kind]:
        """The kinds of the configured integrations (each loaded once)."""
        return [kinds.get(name) for name in dict.fromkeys(i.kind for i in self.config.integrations)]

    @functools.cached_property
    def _pulled(self) -> list[KnownRecord]:
        """Known issues ``rp-bts sync`` pulled (open first), of integrations configured here."""
        records = self.known.records()
        return [r for r in records if r.source == "pull" and self.config.integration(r.integration)]

    def _pulled_known(self, result: TestResult, integration: Integration) -> KnownRecord | None:
        """A pulled issue whose mapped fields name this test or fingerprint: linked, never
        filed. Not when the tracker the failure goes to finds it by fingerprint anyway: then
        the usual path updates that issue, once per run."""
        for record in self._pulled:
            if record.links(result.nodeid, result.fingerprint):
                own = record.integration == integration.name
                return None if own and result.fingerprint in record.fingerprints else record
        return None

    def _known(self, result: TestResult, known: KnownIssue) -> IssueRef:
        """The ``issue`` marker: fetch the status where we can, never file."""
        name = known.integration or ""
        if known.url and not name:
            return IssueRef("", known.issue_id, known.url, "", "known")  # nothing to ask
        try:
            integration = self.resolve(name) if name else self.route(result)
            if integration is None:
                raise TrackerError(f"no integration named '{name}'")
            remote = self.tracker(integration).get(known.url or known.issue_id)
        except (TrackerError, OSError) as exc:
            line = self._error(f"{result.nodeid}: status of known issue {known.issue_id}: {exc}")
            stored = self.known.get(name, known.issue_id) if name else None  # the last sync's
            status = stored.status if stored is not None else ""
            return IssueRef(name, known.issue_id, known.url or "", status, "known", error=line)
        flag = ""
        if remote.closed:  # flagged on the result, in the summary, and an error under --strict
            self._error(f"{result.nodeid}: known issue {remote.key} is {remote.status}")
            flag = f"{remote.status}, but the test still fails"
        return IssueRef(
            integration.name, remote.key, known.url or remote.url, remote.status, "known", flag
        )

    def _plan(
        self,
        groups: Mapping[tuple[str, str], list[TestResult]],
        integrations: Mapping[str, Integration],
        refs: dict[str, list[IssueRef]],
    ) -> list[PlannedAction]:
        by_integration: dict[str, list[str]] = defaultdict(list)
        for name, fingerprint in groups:
            by_integration[name].append(fingerprint)
        plan: list[PlannedAction] = []
        for name, fingerprints in by_integration.items():
            integration = integrations[name]
            existing = self._guarded(
                name, "", functools.partial(self._find, integration, fingerprints)
            )
            if isinstance(existing, IssueRef):
                ref = existing
                for fingerprint in fingerprints:
                    results = tuple(groups[(name, fingerprint)])
                    self._keep(name, results, ref)
                    for result in results:
                        refs[result.nodeid].append(ref)
                continue
            for fingerprint in fingerprints:
                action = self._decide(integration, existing.get(fingerprint))
                if action is not None:
                    results = tuple(groups[(name, fingerprint)])
                    plan.append(
                        PlannedAction(action, name, fingerprint, results, existing.get(fingerprint))
                    )
        return plan

    def _find(
        self, integration: Integration, fingerprints: Sequence[str]
    ) -> Mapping[str, RemoteIssue]:
        """The tracker's issues for these fingerprints, our own record of what we filed first."""
        known = self.record.lookup(tracker_identity(integration), fingerprints)
        return self.tracker(integration).find(fingerprints, known)

    def _decide(self, integration: Integration, existing: RemoteIssue | None) -> Verb | None:
        if self.options.mode == "link":
            return "link" if existing is not None else None
        if existing is None:
            return "create"
        if existing.filed_by and existing.filed_by == self._marker:
            return "complete"  # this run filed it and was stopped before it was complete
        if not existing.closed:
            return "comment"
        return "reopen" if integration.tracker_settings.on_closed == "reopen" else "create"

    def _execute(
        self,
        plan: Sequence[PlannedAction],
        integrations: Mapping[str, Integration],
        launch: Launch,
        refs: dict[str, list[IssueRef]],
    ) -> None:
        """Tracker I/O on a bounded pool per integration (the local tracker: one at a time, as
        SQLite writes one at a time anyway). Creates go in batches as large as the tracker
        takes (Jira: 50 a call); each new issue's attachments and links follow as tasks of
        their own. Each action is one fingerprint, so no two of them race for the same issue."""
        by_integration: dict[str, list[PlannedAction]] = defaultdict(list)
        for action in plan:
            by_integration[action.integration].append(action)
        pools = {
            name: ThreadPoolExecutor(
                max_workers=kinds.get(integrations[name].kind).pool_size,
                thread_name_prefix=f"rp-bts-{integrations[name].kind}",
            )
            for name in by_integration
        }
        done = 0
        if self.progress is not None:
            self.progress(done, len(plan))

        def settle(action: PlannedAction, ref: IssueRef) -> None:
            nonlocal done
            for result in action.results:
                refs[result.nodeid].append(ref)
            done += 1
            if self.progress is not None:
                self.progress(done, len(plan))

        try:
            first: dict[Future[list[Filed]], list[PlannedAction]] = {}
            for name, actions in by_integration.items():
                integration, pool = integrations[name], pools[name]
                creates = [a for a in actions if a.verb == "create"]
                size = max(1, self.tracker(integration).batch)
                for start in range(0, len(creates), size):
                    chunk = creates[start : start + size]
                    task = _submit(pool, self._create, chunk, integration, launch)
                    first[task] = chunk
                for action in actions:
                    if action.verb != "create":
                        task = _submit(pool, self._attempt, action, integration, launch)
                        first[task] = [action]
            then: dict[Future[IssueRef], PlannedAction] = {}
            for future in as_completed(first):
                for action, filed in zip(first[future], future.result(), strict=True):
                    if isinstance(filed, IssueRef):
                        settle(action, filed)
                        continue
                    integration = integrations[action.integration]
                    follow = _submit(
                        pools[action.integration],
                        self._follow_up,
                        action,
                        integration,
                        launch,
                        *filed,
                    )
                    then[follow] = action
            for done_step in as_completed(then):
                settle(then[done_step], done_step.result())
        finally:
            for pool in pools.values():
                pool.shutdown(wait=True)

    def _spent(self, name: str, ahead: float = 0.0) -> bool:
        """Whether the time budget is over (or will be in ``ahead`` seconds); the first time,
        the integration's breaker opens with the line that says so."""
        if self._deadline is None or time.monotonic() + ahead < self._deadline:
            return False
        if name not in self._down:
            budget = self.options.time_budget
            spent = (
                f"the time budget of {budget:g} s is spent"
                if budget is not None
                else ("the time budget is spent")
            )
            self._down[name] = self._error(f"{name}: {spent}; the rest is kept for rp-bts flush")
        return True

    def _guarded(self, name: str, what: str, call: Callable[[], T]) -> T | IssueRef:
        """One tracker step, unless its integration's breaker is open or the time budget is
        spent; a transient failure is tried again while the budget lasts (every step is
        idempotent: a create looks its fingerprint up first, a comment its run id). A ref
        says why it gave up."""
        for attempt in range(ATTEMPTS):
            self._spent(name)
            down = self._down.get(name)
            if down is not None:  # the breaker is open: straight to the outbox, no call
                target = self._name(name)
                if self._queues:
                    return IssueRef(target, "", action="queued", error=down)
                return IssueRef(target, "", action="failed", error=down)
            try:
                return call()
            except (TrackerError, OSError) as exc:
                pause = PAUSE * 2**attempt
                if (
                    isinstance(exc, TrackerError)
                    and exc.transient
                    and attempt + 1 < ATTEMPTS
                    and not self._spent(name, pause)
                ):
                    log.info("%s: %s%s; trying again", name, what, self.redactor.redact(str(exc)))
                    time.sleep(pause)
                    continue
                if name in self._down and isinstance(exc, TrackerError) and exc.transient:
                    down = self._down[name]  # the budget ran out between tries
                    return IssueRef(
                        name, "", action="queued" if self._queues else "failed", error=down
                    )
                return self._unavailable(name, exc, what)
            except Exception as exc:  # an answer a kind's code did not expect: its step fails
                log.exception("rp-bts: %s: %s", name, what)
                unexpected = TrackerError(f"unexpected answer ({type(exc).__name__}: {exc})")
                return self._unavailable(name, unexpected, what)
        raise AssertionError("unreachable")  # pragma: no cover - the loop always returns

    def _attempt(
        self, action: PlannedAction, integration: Integration, launch: Launch
    ) -> list[Filed]:
        """A comment, reopen, link, or the completion of this run's own issue."""
        what = f"{action.verb} failed: "
        ref = self._guarded(
            action.integration, what, lambda: self._perform(action, integration, launch)
        )
        if ref.action in ("queued", "failed"):
            self._keep(action.integration, action.results, ref)
        return [ref]

    def _create(
        self,
        actions: Sequence[PlannedAction],
        integration: Integration,
        launch: Launch,
    ) -> list[Filed]:
        """File a batch in one call where the tracker can; per action the issue and its draft
        (whose attachments and links follow), or the reference that says why not."""
        name = integration.name
        drafts = [
            self._draft(a, integration, launch, a.existing.key if a.existing else "")
            for a in actions
        ]
        tracker = self.tracker(integration)
        tries = 0

        def create_many() -> list[RemoteIssue | TrackerError]:
            nonlocal tries
            tries += 1
            # the plan has just looked these fingerprints up; after a failed try, look again:
            # it may have filed them (two jobs filing at once are settled after the create)
            answers = list(tracker.create_many(drafts, look_first=tries > 1))[: len(drafts)]
            missing = TrackerError("no answer for this draft", retryable=True)
            return answers + [missing] * (len(drafts) - len(answers))

        answers = self._guarded(name, "create failed: ", create_many)
        if isinstance(answers, IssueRef):
            for action in actions:
                self._keep(name, action.results, answers)
            return [answers] * len(actions)
        filed: list[Filed] = []
        for action, draft, answer in zip(actions, drafts, answers, strict=True):
            if isinstance(answer, TrackerError):
                ref = self._unavailable(name, answer, "create failed: ")
                self._keep(name, action.results, ref)
                filed.append(ref)
                continue
            if kinds.get(integration.kind).own_record:  # a search that lags behind writes
                self.record.add(
                    tracker_identity(integration), action.fingerprint, answer.key, answer.issue_id
                )
            if answer.existed and tries > 1:
                # found on a second try: most likely our first one, whose answer was lost; it
                # gets this draft's attachments and links rather than a comment repeating it
                answer = dataclasses.replace(answer, existed=False)
            filed.append((draft, answer))
        return filed

    def _follow_up(
        self,
        action: PlannedAction,
        integration: Integration,
        launch: Launch,
        draft: IssueDraft,
        issue: RemoteIssue,
    ) -> IssueRef:
        """A new issue gets its attachments and links; one another job filed a moment ago
        gets this run's comment instead."""
        name = integration.name
        if not issue.existed:
            self._complete(action, integration, draft, issue)
            return IssueRef(name, issue.key, issue.url, issue.status, "created")
        if issue.filed_by == self._marker:
            # this run's own create, found standing: a killed run's last request that the
            # tracker committed after the replay looked: completed, not commented on
            self._complete(action, integration, draft, issue)
            return IssueRef(name, issue.key, issue.url, issue.status, "already filed")
        ref = self._guarded(
            name,
            "comment failed: ",
            lambda: self._comment(action, integration, launch, issue),
        )
        if ref.action in ("queued", "failed"):
            self._keep(name, action.results, ref)
        return ref

    def _complete(
        self, action: PlannedAction, integration: Integration, draft: IssueDraft, issue: RemoteIssue
    ) -> None:
        """Attachments and links of an issue filed by this run. What the budget or an absent
        tracker left undone is kept: the replay finds the issue by its run marker and
        completes it, without a comment (issue 11, point 2)."""
        name = integration.name
        try:
            if not self._spent(name):
                self.tracker(integration).complete(issue.key, draft)
                return
            error = self._down[name]
        except TrackerError as exc:
            if not (exc.retryable or exc.transient) or not self._queues:
                self._error(f"{name}: {issue.key} was filed without attachments: {exc}")
                return
            error = self._error(
                f"{name}: {issue.key} was filed, its attachments are kept for rp-bts flush: {exc}"
            )
        except OSError as exc:  # the issue stands; say what it lacks
            self._error(f"{name}: {issue.key} was filed without attachments: {exc}")
            return
        if self._queues:
            self._keep(
                name, action.results, IssueRef(name, issue.key, action="queued", error=error)
            )

    def _unavailable(self, name: str, exc: Exception, what: str) -> IssueRef:
        """A tracker error as a reference: ``queued`` (and the breaker opens) when a later
        replay may succeed, ``failed`` when retrying will not fix it (a 4xx, a bad config)."""
        retryable = isinstance(exc, TrackerError) and exc.retryable
        kept = "; kept for rp-bts flush" if retryable and self._keeps else ""
        line = self._error(f"{name}: {what}{exc}{kept}")
        if retryable:
            self._down[name] = line  # the breaker opens: no more calls to it in this run
        queued = retryable and self._queues
        return IssueRef(self._name(name), "", action="queued" if queued else "failed", error=line)

    def _keep(self, target: str, results: tuple[TestResult, ...], ref: IssueRef) -> None:
        self._kept.append((target, results, ref))

    def _extra_attachments(self, results: Sequence[TestResult]) -> tuple[AttachmentFile, ...]:
        """Files other integrations add to a new issue (the chosen Sauce Labs assets)."""
        if self.options.spool is None:
            return ()
        files: list[AttachmentFile] = []
        for kind in self._kinds:
            if kind.attachments is None:
                continue
            found, problems = kind.attachments(results, self.config, self.options.spool)
            files += found
            for problem in problems:
                self._error(problem)
        return tuple(files)

    def _log_lines(self, integration: Integration) -> int:
        chosen = self.options.log_lines
        return integration.tracker_settings.log_lines if chosen is None else chosen

    def _include(self, integration: Integration) -> tuple[str, ...]:
        chosen = self.options.include
        return integration.tracker_settings.include if chosen is None else chosen

    def _perform(self, action: PlannedAction, integration: Integration, launch: Launch) -> IssueRef:
        tracker = self.tracker(integration)
        existing = action.existing
        assert existing is not None  # only creates have none, and they go through _create
        if action.verb == "link":
            return IssueRef(integration.name, existing.key, existing.url, existing.status, "linked")
        if action.verb == "complete":
            self._complete(
                action, integration, self._draft(action, integration, launch, ""), existing
            )
            return IssueRef(
                integration.name, existing.key, existing.url, existing.status, "already filed"
            )
        if action.verb == "reopen":
            existing = tracker.reopen(existing.key)
        return self._comment(action, integration, launch, existing)

    def _comment(
        self,
        action: PlannedAction,
        integration: Integration,
        launch: Launch,
        issue: RemoteIssue,
    ) -> IssueRef:
        comment = comment_draft(
            action.results,
            launch,
            include=self._include(integration),
            log_lines=self._log_lines(integration),
            spool=self.options.spool,
            storm=self._storms.get(action.fingerprint, ""),
            labels=self._labels(action),
        )
        added = self.tracker(integration).comment(issue.key, comment)
        # the same results processed again: the run's comment is there, and none was added
        did: Action = "commented" if added else "already commented"
        return IssueRef(integration.name, issue.key, issue.url, issue.status, did)

    def _labels(self, action: PlannedAction) -> tuple[str, ...]:
        """What the issue of a group with a flaky result gets, new or commented on."""
        flaky = self.config.flaky == "label" and any(r.flaky for r in action.results)
        return ("flaky",) if flaky else ()

    def _draft(
        self, action: PlannedAction, integration: Integration, launch: Launch, relates_to: str
    ) -> IssueDraft:
        draft = issue_draft(
            action.results,
            integration,
            launch,
            include=self._include(integration),
            spool=self.options.spool,
            relates_to=relates_to,
            log_lines=self._log_lines(integration),
            storm=self._storms.get(action.fingerprint, ""),
        )
        draft = dataclasses.replace(draft, labels=(*draft.labels, *self._labels(action)))
        if "attachments" in self._include(integration):
            assets = self._extra_attachments(action.results)
            if assets:
                draft = dataclasses.replace(draft, attachments=draft.attachments + assets)
        if self.options.fields:
            draft = dataclasses.replace(draft, fields={**draft.fields, **self.options.fields})
        results = list(action.results)
        try:
            changed = self.hooks.hook.rp_bts_issue_fields(
                draft=draft, results=results, integration=integration, launch=launch
            )
        except Exception as exc:  # a user's hook: said once, and the draft filed as it was
            self._hook_failed("rp_bts_issue_fields", exc)
            return draft
        for one in changed:
            if isinstance(one, IssueDraft):
                draft = one
        return draft

    def _hook_failed(self, name: str, exc: Exception) -> None:
        """A user's hook raised: one line per hook and run, not one per failure."""
        with self._lock:
            if name in self._hooks_failed:
                return
            self._hooks_failed.add(name)
        self._error(f"the {name} hook failed: {exc!r}; going on without it")


def _cause(result: TestResult) -> tuple[str, str] | None:
    """What the storm guard counts as one cause: the exception type and the first line of its
    normalized message, wherever it was raised (a refused connection in every test alike).
    None for a failed assertion: ``assert <num> == <num>`` in many tests is many checks, not
    one cause (``max_new_issues`` still bounds them)."""
    if result.exc_type in ("AssertionError", "Failed", ""):
        return None
    message = result.message.strip().splitlines()[0] if result.message.strip() else ""
    return result.exc_type, normalize_message(message)


def merge_runs(runs: Iterable[RunResults]) -> RunResults:
    """CI shards into one launch: the first shard's launch, every test once (the last wins)."""
    runs = list(runs)
    if not runs:
        raise ValueError("no results to merge")
    by_nodeid: dict[str, TestResult] = {}
    for run in runs:
        for result in run.results:
            by_nodeid[result.nodeid] = result
    first = runs[0].launch
    launch = dataclasses.replace(
        first,
        start=min(r.launch.start for r in runs),
        end=max(r.launch.end for r in runs),
    )
    return RunResults(launch, tuple(by_nodeid.values()))
