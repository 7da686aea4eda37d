"""The embedded tracker: issues in a SQLite file under ``.rp-bts/``, read with ``rp-bts issues``.

A new user needs no server: with no tracker configured, failures are filed here.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rp_bts_agent.kinds import Kind
from rp_bts_agent.settings import SettingsContext, TrackerSettings, path
from rp_bts_agent.state import State

if TYPE_CHECKING:
    from rp_bts_agent.config_types import Integration
    from rp_bts_agent.connection import CheckOptions, CheckResult
    from rp_bts_agent.tracker import Tracker


@dataclass(frozen=True, slots=True)
class LocalSettings(TrackerSettings):
    """``kind = "local"``: ``project_key`` is the key prefix (``LOCAL-1``); ``url`` makes keys
    links when the database is served somewhere."""

    path: str = path(help="the database (default: .rp-bts/tracker.db under the project root)")

    @classmethod
    def complete(cls, values: dict[str, Any], context: SettingsContext) -> dict[str, Any]:
        if not values.get("path"):
            values["path"] = str(State(context.root).tracker_db)
        return values

    def identity(self, kind: str) -> str:
        """A local tracker project is its database file."""
        return f"{kind}:{self.path}:{self.project_key}"


def _tracker(integration: Integration, read_only: bool) -> Tracker:
    from .tracker import LocalTracker

    return LocalTracker.from_integration(integration, read_only=read_only)


def _check(integration: Integration, options: CheckOptions) -> CheckResult:
    from .tracker import check_connection

    return check_connection(integration, options)


def _commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from .cli import add_parser

    add_parser(subparsers)


KIND = Kind(
    name="local",
    settings=LocalSettings,
    summary="issues in a SQLite file under .rp-bts/ (rp-bts issues)",
    tracker=_tracker,
    check=_check,
    commands=_commands,
    pool_size=1,  # SQLite writes one at a time anyway
    own_record=False,  # its own search is never stale
    embedded=True,
    remote=False,  # nothing of a killed run's is left in flight
)
