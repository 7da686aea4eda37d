"""Rally (Broadcom Agile Central): Defects through WSAPI v2.0."""

from __future__ import annotations

from dataclasses import dataclass

from rp_bts_agent.kinds import Kind
from rp_bts_agent.settings import TrackerSettings, choice, secret, text


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


KIND = Kind(name="rally", settings=RallySettings, summary="Rally defects")
