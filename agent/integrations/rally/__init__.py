"""Rally (Broadcom Agile Central): Defects through WSAPI v2.0."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rp_bts_agent.kinds import ConfigureRequest, Kind
from rp_bts_agent.settings import TrackerSettings, choice, secret, text

if TYPE_CHECKING:
    from rp_bts_agent.config_types import Integration
    from rp_bts_agent.connection import CheckOptions, CheckResult
    from rp_bts_agent.tracker import Tracker


@dataclass(frozen=True, slots=True)
class RallySettings(TrackerSettings):
    """``kind = "rally"``: an API key (``ZSESSIONID``), or Basic with a security token for
    on-premises and sandbox servers, which take no API keys."""

    url: str = text("https://rally1.rallydev.com")
    workspace: str = text(help="the workspace's name, ObjectID or ref")
    auth: str = choice("api-key", "basic")
    api_key: str = secret()
    username: str = text()
    password: str = secret()


def _tracker(integration: Integration, read_only: bool) -> Tracker:
    from .tracker import RallyTracker

    return RallyTracker(integration, read_only=read_only)


def _check(integration: Integration, options: CheckOptions) -> CheckResult:
    from .tracker import check_connection

    return check_connection(integration, options)


def _configure(request: ConfigureRequest) -> int:
    from .cli import configure

    return configure(request)


KIND = Kind(
    name="rally",
    settings=RallySettings,
    summary="Rally defects",
    tracker=_tracker,
    check=_check,
    configure=_configure,
    # Rally's queries see a write at once: no record of our own is needed to find it again
    own_record=False,
)
