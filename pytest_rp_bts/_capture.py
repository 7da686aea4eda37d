"""Result capture: each finished phase as plain data on the worker, merged on the controller.

The worker adds a plain dict ``rp_bts`` to a report only when there is something to say (a failure,
attributes, attachments, markers), so a passing test costs one dict update on the controller.
Pytest's own report serialization carries the dict across xdist's wire.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

import pytest

from rp_bts_agent.files import spill
from rp_bts_agent.hooks import HookManager
from rp_bts_agent.plain import FAILING, Attribute, Outcome, Plain, text_safe, to_plain

if TYPE_CHECKING:
    from rp_bts_agent.model import Attachment, TestResult

log = logging.getLogger("rp_bts_agent")

#: caps on short texts a result carries; long output is spilled to files (agent.files.spill).
MESSAGE_CAP: Final = 4 * 1024
#: what a failing phase adds to a report; a later phase's failure keeps them apart
_FAILURE_KEYS: Final = frozenset(
    (
        "exc_type",
        "message",
        "longrepr",
        "log",
        "stdout",
        "stderr",
        "fingerprint",
        "description",
        "spilled",
    )
)
OUR_MARKERS: Final = ("slid", "rp_attributes", "issue", "bts")


def clip(text: str, cap: int) -> str:
    if len(text) <= cap:
        return text
    half = cap // 2
    return f"{text[:half]}\n[... {len(text) - cap} characters cut ...]\n{text[-half:]}"


def _safe_str(value: object) -> str:
    """``str()`` of a hostile exception may itself raise, or hold lone surrogates; the run
    must not care."""
    try:
        return text_safe(str(value))
    except Exception as exc:  # pragma: no branch - any error from user code
        return f"<unprintable {type(value).__name__}: {type(exc).__name__}>"


def _fingerprint_text(exc_type: str, message: str) -> str:
    """An assertion's first line: pytest's ``where`` lines below it only repeat the values."""
    return message.split("\n", 1)[0] if exc_type == "AssertionError" else message


def exception_type(exc_type: type[BaseException]) -> str:
    module = exc_type.__module__
    name = exc_type.__qualname__
    return name if module in ("builtins", "__builtin__") else f"{module}.{name}"


def _texts(report: pytest.TestReport) -> dict[str, str]:
    """The traceback and the captured log, stdout and stderr, whole (pytest holds them anyway),
    each with any lone surrogate a test printed as ``?``."""
    found = {"longrepr": text_safe(report.longreprtext), "log": "", "stdout": "", "stderr": ""}
    for title, content in report.sections:
        if title.startswith("Captured log"):
            found["log"] += text_safe(content)
        elif title.startswith("Captured stdout"):
            found["stdout"] += text_safe(content)
        elif title.startswith("Captured stderr"):
            found["stderr"] += text_safe(content)
    return found


def _skip_reason(longrepr: object) -> str:
    """A skip's reason from pytest's ``(path, line, "Skipped: reason")``."""
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return ""


def _last_error(longrepr: str) -> tuple[str, str]:
    """``("ModuleNotFoundError", "No module named 'x'")`` from a collection error's text: its
    last ``E`` line (pytest's), else its last line."""
    lines = [line for line in longrepr.splitlines() if line.strip()]
    errors = [line[1:].strip() for line in lines if line.startswith("E ")]
    last = errors[-1] if errors else (lines[-1].strip() if lines else "")
    head, sep, rest = last.partition(": ")
    if sep and head.replace(".", "").replace("_", "").isalnum():
        return head, rest
    return "CollectionError", last


def shared_fixture(item: pytest.Item, tb: TracebackType | None) -> str | None:
    """The fixture wider than one test (session, package, module or class scope) whose code
    raised, as ``<where it is defined>::<name>``; None when the error is not one of those."""
    info = getattr(item, "_fixtureinfo", None)
    chains = getattr(info, "name2fixturedefs", None) or {}
    codes = set()
    while tb is not None:
        codes.add(tb.tb_frame.f_code)
        tb = tb.tb_next
    for chain in chains.values():
        for fixturedef in chain:
            if getattr(fixturedef, "scope", "function") == "function":
                continue
            func = getattr(fixturedef, "func", None)
            if func is None:
                continue
            func = inspect.unwrap(func)
            code = getattr(getattr(func, "__func__", func), "__code__", None)
            if code in codes:
                return f"{fixturedef.baseid}::{fixturedef.argname}"
    return None


def _capture_failed(item: pytest.Item, exc: Exception) -> dict[str, Any]:
    log.exception("rp-bts: capturing %s failed", item.nodeid)
    return {"problems": [f"rp-bts: capturing {item.nodeid} failed: {exc!r}"]}


class ItemState:
    """What the ``rp_bts`` fixture and the markers added to one test, kept on the item."""

    __slots__ = ("attachments", "attributes", "problems")

    def __init__(self) -> None:
        self.attributes: list[Attribute] = []
        self.attachments: list[Attachment] = []
        #: what the fixture could not do (an attachment not found), kept on the result
        self.problems: list[str] = []


ITEM_STATE = pytest.StashKey[ItemState]()
#: the run's folder, where the fixture copies attachments (here, so the session does not load
#: the fixture's module: a run that never uses it costs nothing for it)
ATTACHMENT_DIR = pytest.StashKey[Path]()


class Capture:
    """The worker half: turns a phase's report and its exception into plain data.

    Output too long to carry is spilled to ``spill_dir`` (the run folder; None when nothing will
    file the run) through ``redact``, so only its tail travels to the controller.
    """

    def __init__(
        self,
        rootdir: Path,
        hooks: HookManager,
        include_params: bool = False,
        *,
        group_by: str = "cause",
        spill_dir: Path | None = None,
        redact: Callable[[str], str] | None = None,
        nodeid: Callable[[str], str] | None = None,
    ) -> None:
        self.rootdir = rootdir
        #: pytest's node id to the project root's (``rootdir.nodeid_mapper``); None: the same
        self.nodeid = nodeid
        self.hooks = hooks
        self.include_params = include_params
        #: the config's ``group_by``: "cause" groups failures raised outside the test module
        self.group_by = group_by
        self.spill_dir = spill_dir
        self.redact = redact
        self._inherited: dict[object, frozenset[str]] = {}

    def annotate(
        self,
        item: pytest.Item,
        report: pytest.TestReport,
        excinfo: pytest.ExceptionInfo[BaseException] | None,
        *,
        teardown: bool,
    ) -> None:
        """Add what rp-bts knows of this phase to the report (``report.rp_bts``, plain data)."""
        data: dict[str, Any] = dict(report.__dict__.get("rp_bts") or {})
        if report.failed:
            data.update(self._guarded(item, lambda: self.failure(item, excinfo, report)))
        if teardown:
            data.update(self.extras_safely(item))
        if data:
            report.rp_bts = data  # type: ignore[attr-defined]

    def extras_safely(self, item: pytest.Item) -> dict[str, Any]:
        """:meth:`extras`, guarded as :meth:`_guarded` does, with no closure: it runs per test."""
        try:
            return self.extras(item)
        except Exception as exc:
            return _capture_failed(item, exc)

    def extras_of(
        self, items: Iterable[pytest.Item]
    ) -> Iterator[tuple[pytest.Item, dict[str, Any]]]:
        """Each item with its :meth:`extras`, where it has any. Most tests have no marker (nor a
        parent with one) and no fixture data, which is told here without three calls per test."""
        inherited = self._inherited
        for item in items:
            if (
                not item.own_markers
                and not inherited.get(item.parent, True)  # a parent not yet seen: ask extras
                and ITEM_STATE not in item.stash
            ):
                continue
            extra = self.extras_safely(item)
            if extra:
                yield item, extra

    @staticmethod
    def _guarded(item: pytest.Item, capture: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Never an INTERNALERROR because of us: a capture bug becomes a one-line problem."""
        try:
            return capture()
        except Exception as exc:
            return _capture_failed(item, exc)

    def failure(
        self,
        item: pytest.Item,
        excinfo: pytest.ExceptionInfo[BaseException] | None,
        report: pytest.TestReport,
    ) -> dict[str, Any]:
        from rp_bts_agent import fingerprint as fp  # its patterns compile on the first failure

        fixture = None
        if excinfo is not None:
            exc_type = exception_type(excinfo.type)
            message = clip(_safe_str(excinfo.value), MESSAGE_CAP)
            frames = fp.frames_from_traceback(excinfo.tb, self.rootdir)
            if report.when == "setup" and self.group_by == "cause":
                fixture = shared_fixture(item, excinfo.tb)
        else:  # a strict XPASS, or a failure reported without an exception
            exc_type = "Failed"
            message = clip(text_safe(report.longreprtext), MESSAGE_CAP)
            frames = ()
        nodeid = item.nodeid if self.nodeid is None else self.nodeid(item.nodeid)
        text = _fingerprint_text(exc_type, message)
        rule: fp.Rule
        if fixture is not None:  # one issue for the fixture, not one per test that needed it
            rule = "fixture"
            default = fp.compute_for(rule, fixture, exc_type, text)
        else:
            rule = fp.rule_for(nodeid, frames, self.group_by)
            default = fp.compute(
                nodeid, exc_type, text, frames, include_params=self.include_params, rule=rule
            )
        texts, spilled = spill(_texts(report), self.spill_dir, self.redact)
        data: dict[str, Any] = {"exc_type": exc_type, "message": message, **texts}
        doc = inspect.getdoc(getattr(item, "obj", None))
        if doc:
            data["description"] = clip(doc, MESSAGE_CAP)
        self._choose(nodeid, "failed", data, default, rule)
        if spilled:  # apart from "attachments": the teardown phase adds the test's own files
            data["spilled"] = [to_plain(a) for a in spilled]
        return data

    def _choose(
        self, nodeid: str, outcome: Outcome, data: dict[str, Any], default: str, rule: str
    ) -> None:
        """The fingerprint a conftest hook chooses, else ``default``; and which rule made it."""
        from rp_bts_agent.model import TestResult  # with the first failure

        probe = TestResult(
            nodeid=nodeid, outcome=outcome, fingerprint=default, grouped_by=rule, **data
        )
        chosen = self.hooks.hook.rp_bts_fingerprint(result=probe, default=default)
        data["fingerprint"] = str(chosen) if chosen else default
        data["grouped_by"] = "hook" if chosen and str(chosen) != default else rule

    def collection_error(self, report: pytest.CollectReport) -> TestResult:
        """A test module that does not import (or a collector that failed): one result per
        module, whose fingerprint is the module and its error, so every run of the broken
        module (and every xdist worker that collected it) files one issue."""
        from rp_bts_agent import fingerprint as fp
        from rp_bts_agent.model import TestResult

        longrepr = text_safe(report.longreprtext)
        exc_type, message = _last_error(longrepr)
        data: dict[str, Any] = {"exc_type": exc_type, "message": clip(message, MESSAGE_CAP)}
        data["longrepr"] = clip(longrepr, MESSAGE_CAP * 4)
        default = fp.compute_for("collection", report.nodeid, exc_type, message)
        self._choose(report.nodeid, "error", data, default, "collection")
        return TestResult(nodeid=report.nodeid, outcome="error", phase="collect", **data)

    def _markers_of(self, item: pytest.Item) -> list[str]:
        """Which of our markers apply; what the parents carry is looked up once per parent."""
        parent = item.parent
        inherited = self._inherited.get(parent)
        if inherited is None:
            keywords = parent.keywords if parent is not None else {}
            inherited = self._inherited[parent] = frozenset(
                name for name in OUR_MARKERS if name in keywords
            )
        if not item.own_markers and not inherited:
            return []  # most tests: no marker at all
        own = {mark.name for mark in item.own_markers}
        return [name for name in OUR_MARKERS if name in own or name in inherited]

    def extras(self, item: pytest.Item) -> dict[str, Any]:
        """Markers, attributes and attachments, read once per test at teardown."""
        data: dict[str, Any] = {}
        attributes: list[Attribute] = []
        markers = self._markers_of(item)
        if markers:
            from ._markers import MarkerError, read_markers  # loaded with the first marked test

            try:
                found = read_markers(item)
            except MarkerError as exc:
                data["problems"] = [f"{item.nodeid}: {exc}"]
            else:
                attributes += found.attributes
                if found.known:
                    data["known_issues"] = [to_plain(k) for k in found.known]
                if found.route is not None:
                    data["route"] = to_plain(found.route)
            data["markers"] = markers
        if ITEM_STATE in item.stash:  # Stash.get would raise and catch a KeyError per test
            state = item.stash[ITEM_STATE]
            attributes += state.attributes
            if state.attachments:
                data["attachments"] = [to_plain(a) for a in state.attachments]
            if state.problems:
                data["notes"] = [f"{item.nodeid}: {p}" for p in state.problems]
        if attributes:
            data["attributes"] = [to_plain(a) for a in attributes]
        callspec = getattr(item, "callspec", None) if data else None
        if callspec is not None:
            data["params"] = callspec.id
        return data


class Collector:
    """The controller half: merges phase reports from any worker into one result per test."""

    def __init__(self, nodeid: Callable[[str], str] | None = None) -> None:
        #: pytest's node id to the project root's; None when they are the same
        self.nodeid = nodeid
        #: nodeid -> [outcome, phase, duration]; mutable, as this runs three times per test
        self.outcomes: dict[str, list[Any]] = {}
        self.extras: dict[str, dict[str, Any]] = {}
        #: what the failed tries of rerun tests said (pytest-rerunfailures): the first try's
        self.reruns: dict[str, Mapping[str, Any]] = {}
        #: collection errors, one per module, first in the results
        self.collection: list[TestResult] = []
        #: one-line errors found on the workers (wrong marker arguments)
        self.problems: list[str] = []
        #: one-line warnings from the tests (an attachment not found): they never fail the run
        self.notes: list[str] = []

    def add_all(self, reports: Iterable[pytest.TestReport]) -> None:
        """Merge phase reports in the order they ran (one loop: a 5,000-test run has 15,000)."""
        outcomes = self.outcomes
        for report in reports:
            nodeid = report.nodeid
            state = outcomes.get(nodeid)
            if state is None:
                state = outcomes[nodeid] = ["passed", "call", 0.0]
            state[2] += report.duration
            result: str = report.outcome  # "rerun" too, from pytest-rerunfailures
            if result == "passed":
                if "wasxfail" in report.__dict__ and report.when == "call":
                    state[0] = "xpassed"
            elif result == "failed":
                if state[0] in FAILING:  # a later phase failed too (teardown after call)
                    self._also(nodeid, report)
                    continue
                if report.when == "call":
                    state[0], state[1] = "failed", "call"
                else:
                    state[0], state[1] = "error", report.when
            elif result == "rerun":  # a failed try: the test runs again
                self.reruns.setdefault(nodeid, report.__dict__.get("rp_bts") or {})
                continue
            else:
                xfailed = hasattr(report, "wasxfail")
                state[0] = "xfailed" if xfailed else "skipped"
                state[1] = report.when
                reason = str(report.wasxfail) if xfailed else _skip_reason(report.longrepr)
                if reason:  # shown in the report beside the outcome
                    self.extras.setdefault(nodeid, {}).setdefault("message", reason)
            extra = report.__dict__.get("rp_bts")
            if extra is not None and isinstance(extra, Mapping):
                self.merge(nodeid, extra)

    def _also(self, nodeid: str, report: pytest.TestReport) -> None:
        """Keep a later phase's failure beside the first one: pytest counts it as an error."""
        extra = report.__dict__.get("rp_bts")
        extra = extra if isinstance(extra, Mapping) else {}
        also = {
            "phase": report.when,
            "exc_type": str(extra.get("exc_type") or "Failed"),
            "message": str(extra.get("message") or ""),
            "longrepr": clip(str(extra.get("longrepr") or report.longreprtext), MESSAGE_CAP),
        }
        merged = self.extras.setdefault(nodeid, {})
        merged["also_failed"] = [*merged.get("also_failed", ()), also]
        self.merge(nodeid, {k: v for k, v in extra.items() if k not in _FAILURE_KEYS})

    def merge(self, nodeid: str, extra: Mapping[str, Any]) -> None:
        if not extra:
            return  # a plain test keeps no extras, so :meth:`results` builds it directly
        self.problems += extra.get("problems", ())
        self.notes += extra.get("notes", ())
        merged = self.extras.setdefault(nodeid, {})
        for key, value in extra.items():
            merged.setdefault(key, value)  # the first failing phase tells the story

    def results(self, watched: frozenset[str] = frozenset()) -> list[TestResult | Plain]:
        """One result per test, in the order they ran (collection errors first); a test that
        passed (or was skipped) with nothing more to say stays a
        :data:`~rp_bts_agent.model.Plain` tuple, unless an open issue waits on it (``watched``)
        or it passed on a rerun (flaky: it carries its failed try's details)."""
        out: list[TestResult | Plain] = list(self.collection)
        reruns = self.reruns
        mapped = self.nodeid
        for pytest_id, (outcome, phase, seconds) in self.outcomes.items():
            # to the microsecond: pytest's clock says more, which only lengthens every row
            duration = round(seconds * 1e6) / 1e6
            extra = self.extras.get(pytest_id)
            nodeid = pytest_id if mapped is None else mapped(pytest_id)
            if reruns and outcome == "passed" and pytest_id in reruns:
                extra = {**reruns[pytest_id], **(extra or {}), "flaky": True}
            if extra is None:
                if outcome in FAILING or (watched and nodeid in watched):
                    # the model loads with the first result that is more than a plain row
                    from rp_bts_agent.model import TestResult

                    out.append(TestResult(nodeid, outcome, phase, duration))
                else:
                    out.append((nodeid, outcome, phase, duration))
                continue
            data: dict[str, Any] = {
                **extra,
                "nodeid": nodeid,
                "outcome": outcome,
                "phase": phase,
                "duration": duration,
            }
            if "spilled" in extra:
                data["attachments"] = [*extra.get("attachments", ()), *extra["spilled"]]
            from rp_bts_agent.model import result_from_json

            out.append(result_from_json(data))
        return out


__all__ = ["ITEM_STATE", "Capture", "Collector", "ItemState"]
