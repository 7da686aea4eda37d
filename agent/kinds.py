"""Integration kinds: what each one is, found through the ``rp_bts.kinds`` entry-point group.

A kind is one package that exposes one :class:`Kind` record: its settings class, and the
capabilities it has (a tracker, a connection check, an outbox flusher, a mail sender, links on
results...). The core asks the record and never names a kind, so a third party adds a tracker
with a package of its own (as pytest-randomly's plugins add entry points); the built-in kinds
are registered the same way, in this distribution's ``pyproject.toml``.

Only the entry points' names are read at start-up; a kind's module is imported when an
integration of that kind is used, and its heavy parts (``jira``, ``requests``) only when called.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol, cast

from .settings import Settings, TrackerSettings

if TYPE_CHECKING:
    import argparse
    from email.message import EmailMessage

    from .config_types import Config, Integration
    from .connection import CheckOptions, CheckResult
    from .model import Attribute, Link, TestResult
    from .sync import SyncContext, SyncStep
    from .tracker import AttachmentFile, Tracker

__all__ = [
    "GROUP",
    "ConfigureRequest",
    "Kind",
    "KindError",
    "LiveReporter",
    "LiveTest",
    "Mailer",
    "OAuthEndpoints",
    "SendError",
    "get",
    "names",
]

GROUP: Final = "rp_bts.kinds"


class KindError(Exception):
    """A kind that is not installed, or whose package does not load: one line for the user."""


@dataclass(frozen=True, slots=True)
class OAuthEndpoints:
    """Where ``rp-bts integrations oauth`` gets its tokens, and what it tells the user to do."""

    request_token: str
    authorize: str
    access_token: str
    #: lines shown before the dance: where to paste the consumer key and the public key
    instructions: tuple[str, ...] = ()
    #: the integration's own, when it has them already
    consumer_key: str = ""
    private_key_file: str = ""
    #: ``requests``' ``verify`` for the token calls (the integration's TLS settings)
    verify: bool | str = True


class SendError(Exception):
    """A mail not sent: one line saying why and what to change; never a credential."""


@dataclass(frozen=True, slots=True)
class Mailer:
    """How a kind delivers mail."""

    #: sends one message; raises :class:`SendError`
    send: Callable[[Integration, EmailMessage], None]
    #: the From header for this integration's mail, "" for rp-bts' default
    sender: Callable[[Integration], str]


@dataclass(frozen=True, slots=True)
class ConfigureRequest:
    """``rp-bts integrations configure NAME``: show types and fields, check and store choices."""

    integration: Integration
    issue_type: str | None
    #: ``--field KEY=VALUE`` pairs, values typed as TOML
    fields: Sequence[tuple[str, Any]]
    #: writes settings of this integration into its file (comments kept); returns notes
    store: Callable[[Mapping[str, Any]], list[str]]


@dataclass(frozen=True, slots=True)
class LiveTest:
    """A test that has just ended, in the process that ran it (an xdist worker or the only one)."""

    nodeid: str
    #: False when any phase failed, None when it was skipped, True when it passed
    passed: bool | None
    attributes: Sequence[Attribute]
    #: names of the markers on the test (custom ones become job tags)
    markers: Sequence[str]


class LiveReporter(Protocol):
    """Tells a service about each test as it ends (Sauce Labs job status); never raises."""

    #: fixtures whose values may say which external job a test ran in (a WebDriver)
    fixtures: Sequence[str]

    def attributes_from(self, value: object) -> Sequence[Attribute]:
        """Attributes a fixture's value gives the test (its job id), or none."""
        ...

    def test_finished(self, test: LiveTest) -> str | None:
        """Send what the test's end means; a problem as one line, or None."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Kind:
    """One integration kind, as its package declares it. Every capability is optional."""

    name: str
    settings: type[Settings]
    #: one line for listings and help
    summary: str
    #: (integration, read_only) -> the tracker; ``read_only`` (dry-run) must change nothing
    tracker: Callable[[Integration, bool], Tracker] | None = None
    #: ``rp-bts integrations test``
    check: Callable[[Integration, CheckOptions], CheckResult] | None = None
    #: sends what earlier runs left in this kind's outbox; one line per item
    flush: Callable[[Config], list[str]] | None = None
    configure: Callable[[ConfigureRequest], int] | None = None
    #: adds the kind's own ``rp-bts`` commands (the local tracker's ``issues``)
    commands: Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None] | None = None
    oauth: Callable[[Integration], OAuthEndpoints] | None = None
    #: delivers summary mails; with no kind that does, they are written as .eml files
    mail: Mailer | None = None
    #: (config, launch name, run id, outbox tag) -> a reporter of each test's end
    live: Callable[[Config, str, str, str], LiveReporter] | None = None
    #: web pages about a result (a job and its video), computed once and kept on the result
    links: Callable[[TestResult, Config], tuple[Link, ...]] | None = None
    #: files to attach to a new issue for these results, written under the folder given;
    #: returns them with one line per problem
    attachments: (
        Callable[[Sequence[TestResult], Config, Path], tuple[list[AttachmentFile], list[str]]]
        | None
    ) = None
    #: ``rp-bts sync``: the steps of this integration's status sync (pull, push), run every
    #: period or once; linked issues of any tracker are refreshed by the core without it
    sync: Callable[[Integration, SyncContext], list[SyncStep]] | None = None
    #: tracker calls in flight at once (SQLite writes one at a time: 1)
    pool_size: int = 4
    #: keep our own record of what we filed (a tracker whose search lags behind its writes)
    own_record: bool = True
    #: the tracker used when none is configured (a new user needs no server)
    embedded: bool = False
    #: its writes travel to a server, which may commit one after its sender was killed, so a
    #: replay of a killed run waits for them to land (the local tracker writes in-process)
    remote: bool = True

    @property
    def files_issues(self) -> bool:
        return self.tracker is not None and issubclass(self.settings, TrackerSettings)


_entry_points: dict[str, Any] | None = None


def _points() -> Mapping[str, Any]:
    """The group's entry points by name; read once per process (metadata scans cost)."""
    global _entry_points
    if _entry_points is None:
        from importlib.metadata import entry_points

        _entry_points = {ep.name: ep for ep in entry_points(group=GROUP)}
    return _entry_points


def names() -> tuple[str, ...]:
    """Every installed kind, built-in ones first."""
    found = _points()
    builtin = [n for n in ("jira", "rally", "clarity", "sauce", "email", "local") if n in found]
    return (*builtin, *sorted(set(found) - set(builtin)))


def get(name: str) -> Kind:
    """The kind's record, from its module as it is now (nothing cached here: pytester's
    in-process runs drop modules they imported, and a stale record would hold stale classes)."""
    point = _points().get(name)
    if point is None:
        raise KindError(f"unknown kind {name!r}; use one of {', '.join(names())}")
    try:
        kind = point.load()
    except Exception as exc:  # a third party's package: its failure is one line, not ours
        raise KindError(f"kind {name!r} ({point.value}) cannot be loaded: {exc!r}") from None
    # duck-typed: pytester's in-process runs may import this module afresh, and a Kind made
    # by the other copy of the class is a Kind all the same
    if getattr(kind, "name", None) != name or not hasattr(kind, "settings"):
        raise KindError(f"kind {name!r}: {point.value} is not a Kind named {name!r}")
    return cast(Kind, kind)


def get_embedded() -> Kind:
    """The kind that files when no tracker is configured."""
    for name in names():
        kind = get(name)
        if kind.embedded:
            return kind
    raise KindError("no embedded tracker kind is installed (rp-bts ships 'local')")
