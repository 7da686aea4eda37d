"""``rp-bts integrations test`` for Clarity: reach the REST API, log in, find the project."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit, urlunsplit

from rp_bts_agent.connection import CheckOptions, CheckResult
from rp_bts_agent.tracker import TrackerError

from . import ClaritySettings
from .client import API_PATH, HINTS, Clarity, api_base
from .tracker import ClarityTracker

if TYPE_CHECKING:
    from rp_bts_agent.config_types import Integration

_CODE: Final = re.compile(r"\bAPI-\d{4}\b")


def _speaks_clarity(integration: Integration, url: str) -> bool:
    """Whether Clarity's REST API answers at ``url`` with these credentials (its JSON, even
    a refusal)."""
    client = Clarity(integration.with_settings(url=url))
    try:
        client.call("GET", "/describe", "probe")
    except TrackerError as exc:
        return _CODE.search(str(exc)) is not None
    finally:
        client.close()
    return True


def _url_hints(integration: Integration) -> tuple[str, ...]:
    """Where the API is when it is not at ``url``: the site's root, or the path left off."""
    settings = integration.settings_as(ClaritySettings)
    parts = urlsplit(settings.url)
    root = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
    if root.rstrip("/") != settings.url.rstrip("/") and _speaks_clarity(integration, root):
        return (f'Clarity\'s REST API answers at {root}{API_PATH}: set url = "{root}"',)
    return (
        f"check url: the address you open Clarity at (such as https://clarity.example.com);"
        f" rp-bts adds {API_PATH}, and the server must have the REST API enabled",
    )


def _failed(integration: Integration, exc: TrackerError, what: str) -> CheckResult:
    text = str(exc)
    found = _CODE.search(text)
    if found and found.group(0) in HINTS:
        return CheckResult(
            False, f"Clarity: {what} refused ({found.group(0)})", (HINTS[found.group(0)],)
        )
    if "HTTP 401" in text:
        return CheckResult(False, f"Clarity: {what} refused (HTTP 401)", (HINTS["API-1001"],))
    if "no Clarity REST API" in text or "not Clarity's JSON" in text or "connect" in text:
        return CheckResult(False, f"Clarity: {text}", _url_hints(integration))
    return CheckResult(False, f"Clarity: {text}")


def check_connection(integration: Integration, options: CheckOptions) -> CheckResult:
    """Reach the API, log in, find the project and the fingerprint attribute."""
    settings = integration.settings_as(ClaritySettings)
    try:
        tracker = ClarityTracker(integration)
    except TrackerError as exc:
        return CheckResult(False, str(exc), ("complete the integration in the config file",))
    try:
        try:
            tracker.client.call("GET", "/describe", "login")
        except TrackerError as exc:
            return _failed(integration, exc, "login")
        try:
            project = tracker.project_id()
        except TrackerError as exc:
            if "no project" not in str(exc):
                return _failed(integration, exc, "project")
            return _no_project(tracker, settings)
        try:
            attributes = tracker.attributes
            for name, value in settings.fields.items():
                tracker.field_value(name, value)
        except TrackerError as exc:
            return CheckResult(False, str(exc), ("fix fields in the config file",))
        notes = []
        if settings.fingerprint_field not in attributes:
            return CheckResult(
                False,
                f"Clarity: issues have no attribute {settings.fingerprint_field!r}",
                (
                    "create a custom string attribute for fingerprints on Issue (API-enabled),"
                    " or set fingerprint_field to one",
                ),
            )
        if not settings.enabled:
            notes.append("enabled = false: kept, but nothing is filed or synced")
        return CheckResult(
            True,
            f"Clarity at {api_base(settings.url)}: logged in ({settings.auth}); project"
            f" {settings.project_key} (id {project}); {len(attributes)} issue attributes",
            tuple(notes),
        )
    finally:
        tracker.close()


def _no_project(tracker: ClarityTracker, settings: ClaritySettings) -> CheckResult:
    hints = ["project_key is the project's code (such as PR1001) or its internal id"]
    try:
        seen = list(tracker.client.pages("/projects", "list projects", {"fields": "code,name"}))
    except TrackerError:
        seen = []
    if seen:
        named = [p for p in seen if str(p.get("name", "")).lower() == settings.project_key.lower()]
        if named:
            code = named[0]["code"]
            hints = [f'{settings.project_key!r} is the name of {code}: set project_key = "{code}"']
        codes = ", ".join(f"{p.get('code')} ({p.get('name')})" for p in seen[:20])
        hints.append(f"projects this user can see: {codes}")
    return CheckResult(
        False, f"Clarity: no project {settings.project_key!r} visible to this user", tuple(hints)
    )
