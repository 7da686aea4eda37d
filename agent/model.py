"""Typed values that cross process boundaries: a test result, an issue reference, a launch.

They are built on pytest workers, travel to the controller on the report, are written as results
JSON and read back by ``rp-bts process``; so every type here round-trips through plain JSON.
"""

from __future__ import annotations

import dataclasses
import json
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, TypeVar, get_args

from .plain import (
    FAILING,
    OUTCOMES,
    PYTEST_COUNTS,
    RESULTS_FORMAT,
    Attribute,
    Launch,
    Outcome,
    Plain,
    dumps_results,
    plain_row,
    text_safe,
    to_plain,
)

#: what the agent did for a result in one integration, in the order the summary lists them;
#: ``already filed``: this run filed the issue before (a replay of a run stopped while filing, or
#: ``rp-bts process`` of the same results again): only what it lacked was added;
#: ``already commented``: the issue carries this run's comment already, none was added
Action = Literal[
    "created",
    "already filed",
    "commented",
    "already commented",
    "linked",
    "known",
    "queued",
    "failed",
]
ACTIONS: Final[tuple[Action, ...]] = get_args(Action)


class ResultsFormatError(ValueError):
    """A results file that cannot be read; the message names the file and the problem."""


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file attached to a result; ``path`` is on disk so it is streamed, never held in memory."""

    name: str
    path: str
    mime: str = "application/octet-stream"
    size: int = 0
    #: the captured text (longrepr, log, stdout, stderr) this file holds in full, spilled to disk
    #: because it was too long to carry; "" for a file the test attached
    spilled: str = ""


@dataclass(frozen=True, slots=True)
class Link:
    """A web page about a result (a Sauce Labs job, its video); ``key`` is stable, for dedup."""

    title: str
    url: str
    key: str = ""


@dataclass(frozen=True, slots=True)
class KnownIssue:
    """From the ``issue`` marker: the failure is already tracked, so link it, never file it."""

    issue_id: str
    integration: str | None = None
    url: str | None = None
    #: pytest-reportportal's ``reason`` and ``issue_type`` (its defect type, such as "PB")
    reason: str = ""
    issue_type: str = ""


@dataclass(frozen=True, slots=True)
class Route:
    """From the ``bts`` marker: where one test's failures go and with which extra fields."""

    integration: str | None = None
    issue_type: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PhaseFailure:
    """A later phase that failed too (a teardown error after a failing call): pytest counts it
    as an error of its own, and the issue, report and mail show it."""

    phase: str
    exc_type: str
    message: str = ""
    longrepr: str = ""


@dataclass(frozen=True, slots=True)
class IssueRef:
    """What the agent did for one result in one integration."""

    integration: str
    key: str
    url: str = ""
    status: str = ""
    action: Action = "created"
    error: str = ""


@dataclass(frozen=True, slots=True)
class TestResult:
    """One finished test, merged over its setup, call and teardown phases."""

    __test__ = False  # not a pytest test class, despite the name

    nodeid: str
    outcome: Outcome
    phase: str = "call"
    duration: float = 0.0
    exc_type: str = ""
    message: str = ""
    longrepr: str = ""
    log: str = ""
    stdout: str = ""
    stderr: str = ""
    fingerprint: str = ""
    #: the rule that made the fingerprint: cause, test, hook, collection, fixture, storm
    grouped_by: str = ""
    #: failed, then passed on a rerun (pytest-rerunfailures) or in our record of recent runs
    flaky: bool = False
    params: str = ""
    #: the test's docstring, sent with ``include = ["comments"]`` (ReportPortal's item comment).
    description: str = ""
    attributes: tuple[Attribute, ...] = ()
    attachments: tuple[Attachment, ...] = ()
    known_issues: tuple[KnownIssue, ...] = ()
    route: Route | None = None
    markers: tuple[str, ...] = ()
    #: web pages about the result (its Sauce Labs job and video), signed, never keyed
    links: tuple[Link, ...] = ()
    issues: tuple[IssueRef, ...] = ()
    #: failures of later phases (the first failure is the result's own ``exc_type``/``message``)
    also_failed: tuple[PhaseFailure, ...] = ()
    #: what rp-bts could not do for this test (an attachment that was not there)
    notes: tuple[str, ...] = ()

    @property
    def failing(self) -> bool:
        return self.outcome in FAILING

    def attribute(self, key: str) -> str | None:
        """The last value given for ``key`` (a fixture call overrides a marker)."""
        for attr in reversed(self.attributes):
            if attr.key == key:
                return attr.value
        return None

    def with_issues(self, issues: Iterable[IssueRef]) -> TestResult:
        return dataclasses.replace(self, issues=tuple(issues))


@dataclass(frozen=True, slots=True)
class RunResults:
    """A launch and its results: what the results JSON holds."""

    launch: Launch
    results: tuple[TestResult, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": RESULTS_FORMAT,
            "launch": to_plain(self.launch),
            "results": [result_to_json(r) for r in self.results],
        }

    def dumps(self) -> str:
        """Compact JSON: what :meth:`to_json` holds, as ``json.dumps`` writes it."""
        return dumps_results(self.launch, self.results)

    @classmethod
    def from_json(cls, data: Any, *, source: str = "<results>") -> RunResults:
        try:
            launch = _launch_from(data["launch"])
            results = tuple(result_from_json(item) for item in data["results"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ResultsFormatError(f"{source}: not an rp-bts results file ({exc!r})") from None
        return cls(launch, results)

    @classmethod
    def load(cls, path: str | Path) -> RunResults:
        try:
            text = Path(path).read_text(encoding="utf-8")
            data = json.loads(text)
            if _has_lone_surrogate(data):
                raise ValueError(
                    "a string holds a lone surrogate (such as \\ud800), which is no text;"
                    " rp-bts never writes one"
                )
        except RecursionError:
            raise ResultsFormatError(f"{path}: cannot read results (nested too deeply)") from None
        except (OSError, ValueError) as exc:
            raise ResultsFormatError(f"{path}: cannot read results ({exc})") from None
        return cls.from_json(data, source=str(path))


#: written for every result, as the brief fixes them; the other fields only when not empty.
_ALWAYS: Final = ("nodeid", "outcome", "fingerprint", "attributes", "issues")
#: the optional fields after ``phase`` and ``duration`` (which nearly every result sets): a
#: passing test leaves them all at their defaults, which one tuple comparison tells.
_REST: Final = tuple(
    (f.name, f.default)
    for f in dataclasses.fields(TestResult)
    if f.name not in (*_ALWAYS, "phase", "duration", "route")
)
_rest_of: Final = operator.attrgetter(*(name for name, _ in _REST))
_REST_DEFAULTS: Final = tuple(default for _, default in _REST)


def _record(
    value: Attribute | Attachment | KnownIssue | IssueRef | Link | PhaseFailure,
) -> dict[str, Any]:
    """A flat record as a dict: no recursion, as this runs for every test of a large run."""
    return {name: getattr(value, name) for name in value.__slots__}


def result_to_json(result: TestResult) -> dict[str, Any]:
    """Passing tests make most of a large run: keep their rows short (fields set, not defaults).

    ``nodeid``, ``outcome``, ``fingerprint``, ``attributes`` and ``issues`` are always written.
    """
    data: dict[str, Any] = {
        "nodeid": result.nodeid,
        "outcome": result.outcome,
        "fingerprint": result.fingerprint,
        "attributes": [_record(a) for a in result.attributes] if result.attributes else [],
        "issues": [_record(i) for i in result.issues] if result.issues else [],
    }
    if result.phase != "call":
        data["phase"] = result.phase
    if result.duration != 0.0:
        data["duration"] = result.duration
    rest = _rest_of(result)
    if rest != _REST_DEFAULTS:
        for (name, default), value in zip(_REST, rest, strict=True):
            if value != default:
                data[name] = (
                    [v if isinstance(v, str) else _record(v) for v in value]
                    if isinstance(value, tuple)
                    else value
                )
    if result.route is not None:
        data["route"] = to_plain(result.route)
    return data


def _attrs(items: Sequence[Mapping[str, Any]]) -> tuple[Attribute, ...]:
    return tuple(Attribute(str(a["key"]), str(a["value"])) for a in items)


_TEXTS: Final = ("nodeid", "phase", "exc_type", "message", "longrepr", "log", "stdout", "stderr")
_TEXTS_TOO: Final = ("fingerprint", "params", "description")


def result_from_json(data: Mapping[str, Any]) -> TestResult:
    for key in (*_TEXTS, *_TEXTS_TOO):
        if key in data and not isinstance(data[key], str):
            raise TypeError(f"{key}: expected a string, got {data[key]!r}"[:200])
    outcome = data["outcome"]
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {outcome!r}")
    route = data.get("route")
    return TestResult(
        nodeid=str(data["nodeid"]),
        outcome=outcome,
        phase=str(data.get("phase", "call")),
        duration=float(data.get("duration", 0.0)),
        exc_type=str(data.get("exc_type", "")),
        message=str(data.get("message", "")),
        longrepr=str(data.get("longrepr", "")),
        log=str(data.get("log", "")),
        stdout=str(data.get("stdout", "")),
        stderr=str(data.get("stderr", "")),
        fingerprint=str(data.get("fingerprint", "")),
        grouped_by=str(data.get("grouped_by", "")),
        flaky=bool(data.get("flaky", False)),
        params=str(data.get("params", "")),
        description=str(data.get("description", "")),
        attributes=_attrs(data.get("attributes", ())),
        attachments=tuple(_typed(Attachment, a) for a in data.get("attachments", ())),
        known_issues=tuple(_typed(KnownIssue, k) for k in data.get("known_issues", ())),
        route=_typed(Route, route) if route else None,
        markers=tuple(str(m) for m in data.get("markers", ())),
        links=tuple(_typed(Link, link) for link in data.get("links", ())),
        issues=tuple(_issue_from(i) for i in data.get("issues", ())),
        also_failed=tuple(PhaseFailure(**f) for f in data.get("also_failed", ())),
        notes=tuple(str(n) for n in data.get("notes", ())),
    )


def _issue_from(data: Mapping[str, Any]) -> IssueRef:
    if data.get("action") not in ACTIONS:
        raise ValueError(f"unknown issue action {data.get('action')!r}")
    return _typed(IssueRef, data)


_C = TypeVar("_C")
_SCALARS: Final[Mapping[str, type | tuple[type, ...]]] = {
    "str": str,
    "int": int,
    "float": (int, float),
    "bool": bool,
}


def _typed(cls: type[_C], data: Any) -> _C:
    """A record from a results file, each scalar of the type its field declares: a results
    file comes from elsewhere (issue 11, point 7), and a ``null`` path is an error here, not
    a crash where it is used."""
    if not isinstance(data, Mapping):
        raise TypeError(f"{cls.__name__}: expected an object, got {type(data).__name__}")
    for spec in dataclasses.fields(cls):  # type: ignore[arg-type]
        want = _SCALARS.get(str(spec.type))
        value = data.get(spec.name)
        if want is not None and spec.name in data and not isinstance(value, want):
            raise TypeError(f"{cls.__name__}.{spec.name}: expected {spec.type}, got {value!r}")
    return cls(**data)


def _has_lone_surrogate(value: Any) -> bool:
    """Whether JSON as read holds a lone surrogate (``"\\ud800"``): no UTF-8 file, terminal or
    tracker takes one, and a results file of rp-bts never has one (:func:`text_safe`), so a
    file with one is refused, not silently changed (issue 11, point 7)."""
    if isinstance(value, str):
        return text_safe(value) is not value
    if isinstance(value, list):
        return any(_has_lone_surrogate(v) for v in value)
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    return False


def _launch_from(data: Mapping[str, Any]) -> Launch:
    return Launch(
        name=str(data["name"]),
        run_id=str(data["run_id"]),
        project=str(data.get("project", "")),
        owner=str(data.get("owner", "")),
        start=float(data.get("start", 0.0)),
        end=float(data.get("end", 0.0)),
        attributes=_attrs(data.get("attributes", ())),
        mode=str(data.get("mode", "post")),
        environment={str(k): str(v) for k, v in data.get("environment", {}).items()},
        counts={str(k): int(v) for k, v in data.get("counts", {}).items()},
    )


__all__ = [
    "ACTIONS",
    "FAILING",
    "OUTCOMES",
    "PYTEST_COUNTS",
    "RESULTS_FORMAT",
    "Action",
    "Attachment",
    "Attribute",
    "IssueRef",
    "KnownIssue",
    "Launch",
    "Link",
    "Outcome",
    "PhaseFailure",
    "Plain",
    "ResultsFormatError",
    "Route",
    "RunResults",
    "TestResult",
    "dumps_results",
    "plain_row",
    "result_from_json",
    "result_to_json",
    "text_safe",
    "to_plain",
]
