"""Clarity PPM: project issues through the REST API v1, and the status sync."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from rp_bts_agent.config_types import ConfigError
from rp_bts_agent.kinds import Kind, OAuthEndpoints
from rp_bts_agent.settings import (
    SettingsContext,
    TrackerSettings,
    choice,
    flag,
    number,
    path,
    secret,
    table,
    text,
    texts,
)

if TYPE_CHECKING:
    from rp_bts_agent.config_types import Integration
    from rp_bts_agent.connection import CheckOptions, CheckResult
    from rp_bts_agent.sync import SyncContext, SyncStep
    from rp_bts_agent.tracker import Tracker

#: the filter operators Clarity documents
OPERATORS: Final = ("=", "!=", ">", ">=", "<", "<=", "startsWith", "endsWith", "contains", "in")
#: our side of a field mapping: what a run knows about an issue it linked failures to
OUR_FIELDS: Final = ("fingerprint", "tests", "occurrences", "last_failure", "last_run")
DEFAULT_PERIOD: Final = 300


@dataclass(frozen=True, slots=True)
class Statement:
    """One line of the expression builder: ``(field op value)``."""

    field: str
    op: str
    value: Any


@dataclass(frozen=True, slots=True)
class ProjectTab:
    """One chosen Clarity project (Plutora's tab): auto-sync, push, and its field mapping."""

    code: str
    auto: bool = True
    push: bool = False
    #: our field -> Clarity attribute (see :data:`OUR_FIELDS`)
    mapping: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SyncSettings:
    """``[integrations.sync]``: how often, which issues, which projects."""

    period: int = DEFAULT_PERIOD
    join: str = "and"
    expression: tuple[Statement, ...] = ()
    projects: tuple[ProjectTab, ...] = ()


@dataclass(frozen=True, slots=True)
class ClaritySettings(TrackerSettings):
    """``kind = "clarity"``: Basic, a session, an API key, or OAuth 1.0a."""

    enabled: bool = flag(True, "a disabled integration is kept but neither files nor syncs")
    auth: str = choice("basic", "session", "api-key", "oauth1")
    username: str = text()
    password: str = secret()
    api_key: str = secret()
    client_id: str = text(help="the API key's client (x-api-ppm-client)")
    consumer_key: str = text()
    private_key_file: str = path()
    access_token: str = secret()
    access_token_secret: str = secret()
    request_token_url: str = text()
    authorize_url: str = text()
    access_token_url: str = text()
    #: the custom attribute that holds a failure's fingerprint: dedupe is one exact filter
    fingerprint_field: str = text("c_rp_fingerprint")
    #: status lookup values (ids or display values) that count as closed
    closed_statuses: tuple[str, ...] = texts(("Resolved", "Closed"))
    #: the status a reopened issue gets (``on_closed = "reopen"``)
    reopen_status: str = text("Open")
    #: a new code is derived from the fingerprint (unique: a second create is refused)
    code_prefix: str = text("RP")
    #: completed from the ``[integrations.sync]`` table by :meth:`complete`
    sync: SyncSettings = table("the status sync: period, join, expression, projects")  # noqa: RUF009 - a TOML table, typed by complete()
    #: attributes written when a failure repeats (a tab for project_key may map others)
    occurrences_field: str = text("c_occurrences")
    last_run_field: str = text("c_last_run")
    tests_field: str = text("c_tests")
    page_size: int = number(200, "issues per page when reading lists (Clarity allows 200)")

    @classmethod
    def complete(cls, values: dict[str, Any], context: SettingsContext) -> dict[str, Any]:
        values["sync"] = _sync(values.get("sync") or {}, context, values)
        for key in ("fingerprint_field", "occurrences_field", "last_run_field", "tests_field"):
            name = values.get(key)
            if isinstance(name, str) and name and not name.isidentifier():
                raise ConfigError(context.file, f"{context.loc}.{key}", f"{name!r} is no attribute")
        return values

    def mapping(self, code: str) -> dict[str, str]:
        """Our field -> attribute for a project: the defaults, then the project's tab."""
        mapped = {
            "fingerprint": self.fingerprint_field,
            "tests": self.tests_field,
            "occurrences": self.occurrences_field,
            "last_run": self.last_run_field,
        }
        for tab in self.sync.projects:
            if tab.code == code:
                mapped.update(tab.mapping)
        return {ours: theirs for ours, theirs in mapped.items() if theirs}

    def tabs(self) -> tuple[ProjectTab, ...]:
        """The chosen projects; none chosen: project_key alone, auto-synced, not pushed."""
        return self.sync.projects or (ProjectTab(self.project_key),)


_SYNC_KEYS: Final = ("period", "join", "expression", "projects")
_STATEMENT_KEYS: Final = ("field", "op", "value")
_TAB_KEYS: Final = ("code", "auto", "push", "mapping")


def _sync(raw: Mapping[str, Any], context: SettingsContext, values: Mapping[str, Any]) -> Any:
    """The ``sync`` table typed and checked; a problem is one line naming file and key."""
    if isinstance(raw, SyncSettings):  # built in code (tests) already typed
        return raw
    where = f"{context.loc}.sync"

    def fail(key: str, message: str) -> ConfigError:
        return ConfigError(context.file, f"{where}.{key}" if key else where, message)

    unknown = [k for k in raw if k not in _SYNC_KEYS]
    if unknown:
        raise fail(unknown[0], f"unknown key; use {', '.join(_SYNC_KEYS)}")
    period = raw.get("period", DEFAULT_PERIOD)
    if isinstance(period, str) and period.isdigit():  # from a ${VAR}
        period = int(period)
    if isinstance(period, bool) or not isinstance(period, int) or period < 1:
        raise fail("period", f"expected seconds (a whole number >= 1), got {period!r}")
    join = raw.get("join", "and")
    if join not in ("and", "or"):
        raise fail("join", f"unknown value {join!r}; use and, or")
    statements = []
    for number_, item in enumerate(_list(raw.get("expression", []), fail, "expression")):
        key = f"expression[{number_}]"
        if not isinstance(item, dict):
            raise fail(key, "expected a table {field, op, value}")
        extra = [k for k in item if k not in _STATEMENT_KEYS] or [
            k for k in _STATEMENT_KEYS if k not in item
        ]
        if extra:
            raise fail(key, f"takes exactly field, op and value (not {extra[0]!r})")
        name, op, value = item["field"], item["op"], item["value"]
        if not isinstance(name, str) or not name.isidentifier():
            raise fail(f"{key}.field", f"{name!r} is no attribute name")
        if op not in OPERATORS:
            raise fail(f"{key}.op", f"unknown operator {op!r}; use {' '.join(OPERATORS)}")
        if (op == "in") != isinstance(value, list) or (isinstance(value, list) and not value):
            raise fail(f"{key}.value", "'in' takes a non-empty list; other operators one value")
        for one in value if isinstance(value, list) else [value]:
            if not isinstance(one, (str, int, float, bool)):
                raise fail(f"{key}.value", f"expected text, a number or a boolean, got {one!r}")
        statements.append(Statement(name, op, tuple(value) if isinstance(value, list) else value))
    tabs = []
    for number_, item in enumerate(_list(raw.get("projects", []), fail, "projects")):
        key = f"projects[{number_}]"
        if not isinstance(item, dict):
            raise fail(key, "expected a table {code, auto, push, mapping}")
        unknown = [k for k in item if k not in _TAB_KEYS]
        if unknown:
            raise fail(f"{key}.{unknown[0]}", f"unknown key; use {', '.join(_TAB_KEYS)}")
        code = item.get("code")
        if not isinstance(code, str) or not code.strip():
            raise fail(f"{key}.code", "the Clarity project's code (such as PR1001) is required")
        for switch in ("auto", "push"):
            if not isinstance(item.get(switch, True), bool):
                raise fail(f"{key}.{switch}", "expected true or false")
        mapping = item.get("mapping", {})
        if not isinstance(mapping, dict):
            raise fail(f"{key}.mapping", "expected a table: our field = Clarity attribute")
        for ours, theirs in mapping.items():
            if ours not in OUR_FIELDS:
                raise fail(f"{key}.mapping.{ours}", f"unknown field; map {', '.join(OUR_FIELDS)}")
            if not isinstance(theirs, str) or not theirs.isidentifier():
                raise fail(f"{key}.mapping.{ours}", f"{theirs!r} is no attribute name")
        tabs.append(
            ProjectTab(code, item.get("auto", True), item.get("push", False), dict(mapping))
        )
    if len({t.code for t in tabs}) != len(tabs):
        raise fail("projects", "a project is chosen twice")
    if not tabs and not values.get("project_key") and raw:
        raise fail("projects", "choose projects, or set project_key")
    return SyncSettings(period, join, tuple(statements), tuple(tabs))


def _list(value: Any, fail: Any, key: str) -> list[Any]:
    if not isinstance(value, list):
        raise fail(key, "expected a list")
    return value


def _tracker(integration: Integration, read_only: bool) -> Tracker:
    from .tracker import ClarityTracker

    return ClarityTracker(integration, read_only=read_only)


def _check(integration: Integration, options: CheckOptions) -> CheckResult:
    from .check import check_connection

    return check_connection(integration, options)


def _sync_steps(integration: Integration, context: SyncContext) -> list[SyncStep]:
    from .sync import steps

    return steps(integration, context)


_OAUTH_PATH = "/ppm/oauth"


def _oauth(integration: Integration) -> OAuthEndpoints:
    """The guide's three URLs; each may be set (a proxy, another context path)."""
    settings = integration.settings_as(ClaritySettings)
    base = settings.url.rstrip("/") + _OAUTH_PATH
    return OAuthEndpoints(
        request_token=settings.request_token_url or base + "/request-token",
        authorize=settings.authorize_url or base + "/authorize",
        access_token=settings.access_token_url or base + "/access-token",
        instructions=(
            "In Clarity: Administration > General Settings > API - Application Links (OAuth):",
            "add an application with",
        ),
        consumer_key=settings.consumer_key,
        private_key_file=settings.private_key_file,
        verify=settings.tls_verify(),
    )


KIND = Kind(
    name="clarity",
    settings=ClaritySettings,
    summary="Clarity PPM project issues",
    tracker=_tracker,
    check=_check,
    oauth=_oauth,
    sync=_sync_steps,
    own_record=False,
)
