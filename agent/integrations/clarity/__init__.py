"""Clarity PPM: project issues through the REST API v1, and the status sync."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rp_bts_agent.kinds import Kind
from rp_bts_agent.settings import TrackerSettings, choice, flag, path, secret, table, text


@dataclass(frozen=True, slots=True)
class ClaritySettings(TrackerSettings):
    """``kind = "clarity"``: Basic, a session, an API key, or OAuth 1.0a."""

    enabled: bool = flag(True, "a disabled integration is kept but neither files nor syncs")
    auth: str = choice("basic", "session", "api-key", "oauth1")
    username: str = text()
    password: str = secret()
    api_key: str = secret()
    client_id: str = text()
    consumer_key: str = text()
    private_key_file: str = path()
    access_token: str = secret()
    access_token_secret: str = secret()
    request_token_url: str = text()
    authorize_url: str = text()
    access_token_url: str = text()
    sync: Mapping[str, Any] = table("the status sync: period, expression, projects, push")


KIND = Kind(name="clarity", settings=ClaritySettings, summary="Clarity PPM project issues")
