"""Typed configuration values: what the loader produces and everything else reads.

Kept apart from the loader so trackers and the pipeline depend on shapes, not on TOML parsing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

KINDS: Final = ("jira", "rally", "clarity", "sauce", "email", "local")
#: kinds that receive failures; ``sauce`` and ``email`` only decorate and notify.
TRACKER_KINDS: Final = frozenset(("jira", "rally", "clarity", "local"))
#: keys whose values are credentials: redacted everywhere, warned about when literal.
SECRET_KEYS: Final = frozenset(
    (
        "password",
        "token",
        "api_key",
        "access_key",
        "access_token",
        "access_token_secret",
        "consumer_secret",
        "client_secret",
    )
)

Source = Literal["global", "project", "default"]


class ConfigError(Exception):
    """A configuration problem, shown as one line naming the file, the key and the fix."""

    def __init__(self, file: str | Path, key: str, message: str) -> None:
        self.file = str(file)
        self.key = key
        self.message = message
        where = f"{self.file}: {key}" if key else self.file
        super().__init__(f"rp-bts config error: {where}: {message}")


@dataclass(frozen=True, slots=True)
class Integration:
    """One named integration, with ``${VAR}`` already filled and paths made absolute."""

    kind: str
    name: str
    source: Source = "project"
    file: str = ""
    url: str = ""
    project_key: str = ""
    workspace: str = ""
    auth: str = ""
    username: str = ""
    password: str = ""
    token: str = ""
    api_key: str = ""
    client_id: str = ""
    issue_type: str = ""
    fields: Mapping[str, Any] = field(default_factory=dict)
    include: tuple[str, ...] = ("logs", "attachments", "comments")
    log_lines: int = 50
    #: seconds a tracker may take to answer one call (connecting has its own, shorter limit)
    timeout: int = 60
    on_closed: Literal["new", "reopen"] = "new"
    verify_tls: bool = True
    ca_file: str = ""
    # email
    host: str = ""
    port: int = 0
    security: str = "starttls"
    sender: str = ""
    smtp_auth: bool = False
    # sauce
    access_key: str = ""
    data_center: str = "us-west-1"
    api_url: str = ""
    driver_fixture: str = "driver"
    assets: tuple[str, ...] = ()
    asset_cap: int = 50 * 1024 * 1024
    # local
    path: str = ""
    #: keys of other issues (OAuth, Clarity sync, ...) kept verbatim until their code reads them.
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: key -> its ``${VAR}`` text as written, so listings show the reference, never the value.
    refs: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_tracker(self) -> bool:
        return self.kind in TRACKER_KINDS

    def secrets(self) -> tuple[str, ...]:
        """Every credential value of this integration, for the redactor."""
        values = [getattr(self, key, "") for key in SECRET_KEYS]
        values += [str(v) for k, v in self.extra.items() if k in SECRET_KEYS]
        return tuple(v for v in values if isinstance(v, str) and v)


@dataclass(frozen=True, slots=True)
class Rule:
    """One ``[[rules]]`` table: when a launch's summary mail goes out, and to whom."""

    name: str
    enabled: bool = True
    send_case: str = "failed"
    recipients: tuple[str, ...] = ()
    launch_names: tuple[str, ...] = ()
    attributes: tuple[str, ...] = ()
    attributes_operator: Literal["and", "or"] = "and"


@dataclass(frozen=True, slots=True)
class Config:
    """The resolved view: the project's settings with global integrations linked per kind."""

    project: str = ""
    launch: str = ""
    owner: str = ""
    unlinked: tuple[str, ...] = ()
    default_integration: str = ""
    #: keep parameter ids in the fingerprint (one issue per parameter set)
    fingerprint_params: bool = False
    #: seconds the agent may spend filing at session end (the rest goes to the outbox)
    time_budget: int = 60
    integrations: tuple[Integration, ...] = ()
    rules: tuple[Rule, ...] = ()
    project_file: str = ""
    global_file: str = ""
    #: the project root: ``.rp-bts/`` lives here.
    root: str = "."
    #: non-fatal findings (literal secrets, group-writable files, ignored integrations).
    warnings: tuple[str, ...] = ()

    def integration(self, name: str) -> Integration | None:
        for integration in self.integrations:
            if integration.name == name:
                return integration
        return None

    def of_kind(self, kind: str) -> tuple[Integration, ...]:
        return tuple(i for i in self.integrations if i.kind == kind)

    def secrets(self) -> tuple[str, ...]:
        return tuple(s for i in self.integrations for s in i.secrets())
