"""Typed configuration values: what the loader produces and everything else reads.

Kept apart from the loader so trackers and the pipeline depend on shapes, not on TOML parsing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar

if TYPE_CHECKING:
    from .settings import Settings, TrackerSettings

Source = Literal["global", "project", "default"]
S = TypeVar("S", bound="Settings")


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
    """One named integration: its identity, and its kind's typed settings (``${VAR}`` filled,
    paths made absolute)."""

    kind: str
    name: str
    settings: Settings
    source: Source = "project"
    file: str = ""
    #: key -> its ``${VAR}`` text as written, so listings show the reference, never the value.
    refs: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_tracker(self) -> bool:
        from .settings import TrackerSettings  # loaded with the first integration's kind

        return isinstance(self.settings, TrackerSettings)

    def settings_as(self, cls: type[S]) -> S:
        """The settings as the kind's own class (what the kind's code reads)."""
        if not isinstance(self.settings, cls):
            raise TypeError(f"integration {self.name!r} ({self.kind}) has no {cls.__name__}")
        return self.settings

    def with_settings(self, **changes: object) -> Integration:
        """The same integration with some settings changed (a test, a data centre tried)."""
        return dataclasses.replace(self, settings=dataclasses.replace(self.settings, **changes))

    @property
    def tracker_settings(self) -> TrackerSettings:
        from .settings import TrackerSettings

        return self.settings_as(TrackerSettings)

    def secrets(self) -> tuple[str, ...]:
        """Every credential value of this integration, for the redactor."""
        return self.settings.secrets()


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
    #: the e-mail integration (its name) that sends this rule's mail; "" the first one
    email: str = ""


GroupBy = Literal["cause", "test"]


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
    #: one issue per raise site outside the test module ("cause") or one per test ("test")
    group_by: GroupBy = "cause"
    #: the storm guard: more than ``storm_ratio`` of at least ``storm_min_tests`` tests failing
    #: alike, or more than ``max_new_issues`` new issues, make one "run broken" issue
    max_new_issues: int = 20
    storm_ratio: float = 0.5
    storm_min_tests: int = 20
    #: a test that failed, then passed (a rerun, or within ``flaky_window`` recorded runs)
    flaky: Literal["label", "skip", "file"] = "label"
    flaky_window: int = 5
    #: what ``on_pass_runs`` passing runs in a row do to an open issue
    on_pass: Literal["comment", "resolve"] = "comment"
    on_pass_runs: int = 3
    integrations: tuple[Integration, ...] = ()
    rules: tuple[Rule, ...] = ()
    project_file: str = ""
    global_file: str = ""
    #: the project root: ``.rp-bts/`` lives here.
    root: str = "."
    #: non-fatal findings (literal secrets, group-writable files, ignored integrations).
    warnings: tuple[str, ...] = ()
    #: ``${VAR}`` names set nowhere, when loaded without filling (``integrations list``)
    unset: tuple[str, ...] = ()

    def integration(self, name: str) -> Integration | None:
        for integration in self.integrations:
            if integration.name == name:
                return integration
        return None

    def of_kind(self, kind: str) -> tuple[Integration, ...]:
        return tuple(i for i in self.integrations if i.kind == kind)

    def secrets(self) -> tuple[str, ...]:
        return tuple(s for i in self.integrations for s in i.secrets())
