"""``rp-bts integrations configure NAME``: a Jira project's issue types and fields, and the
integration's predefined fields checked against them before they are stored.

ReportPortal's "choose predefined fields" step: list the types, show the chosen type's fields
(required ones marked, allowed values shown), validate ``--field KEY=VALUE`` (options,
components, versions, priority, labels, users by account id on Cloud and by login name on Data
Center, custom fields) and write them into the file the integration lives in, keeping its layout.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from rp_bts_agent.kinds import ConfigureRequest

from . import JiraSettings

__all__ = ["check_field", "configure"]

#: fields rp-bts fills itself on every issue.
_OURS = frozenset(("summary", "description", "issuetype", "project", "labels"))


def _allowed_names(meta: Mapping[str, Any]) -> list[str]:
    names = []
    for item in meta.get("allowedValues") or []:
        if isinstance(item, Mapping):
            names.append(str(item.get("name") or item.get("value") or item.get("id")))
    return names


def check_field(meta: Mapping[str, Any], value: Any) -> str:
    """Why ``value`` does not fit the field, or ``""`` when it does (users are checked apart)."""
    schema = meta.get("schema") or {}
    values = value if isinstance(value, list) else [value]
    if schema.get("type") != "array" and isinstance(value, list):
        return "takes one value, not a list"
    allowed = _allowed_names(meta)
    for item in values:
        text = (
            str(item.get("name") or item.get("value") or item.get("id"))
            if isinstance(item, Mapping)
            else str(item)
        )
        if allowed and text not in allowed:
            return f"{text!r} is not allowed (allowed: {', '.join(allowed)})"
        if meta.get("fieldId") == "labels" and (" " in text or not text):
            return f"label {text!r} must be one word"
    return ""


def _users(meta: Mapping[str, Any]) -> bool:
    schema = meta.get("schema") or {}
    return "user" in (schema.get("type"), schema.get("items"))


def _failed(*problems: str) -> int:
    """Errors as every rp-bts command gives them: on stderr, one a line, exit status 2."""
    for problem in problems:
        print(f"rp-bts: {problem}", file=sys.stderr)
    return 2


def configure(request: ConfigureRequest) -> int:
    from rp_bts_agent.tracker import TrackerError

    from .tracker import JiraTracker

    tracker = JiraTracker(request.integration)
    try:
        return _configure(request, tracker)
    except TrackerError as exc:
        return _failed(str(exc))
    finally:
        tracker.close()


def _configure(request: ConfigureRequest, tracker: Any) -> int:
    settings = request.integration.settings_as(JiraSettings)
    types = [str(t.get("name")) for t in tracker.issue_types()]
    print(f"issue types of {settings.project_key}: {', '.join(types)}")
    issue_type = request.issue_type or settings.issue_type or "Bug"
    if issue_type not in types:
        return _failed(f"no issue type {issue_type!r}; use --issue-type with one of the above")
    meta: dict[str, dict[str, Any]] = tracker.fields_of(issue_type)
    print(f"fields of {issue_type} (* required):")
    for fid, field in meta.items():
        mark = "*" if field.get("required") else " "
        allowed = _allowed_names(field)
        shown = f": {' | '.join(allowed)}" if allowed else ""
        print(f"  {mark} {fid} ({field.get('name', '')}){shown}")

    by_name = {str(f.get("name", "")).lower(): fid for fid, f in meta.items()}
    chosen: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in request.fields:
        fid = key if key in meta else by_name.get(key.lower(), "")
        if not fid:
            problems.append(f"{key}: no such field on {issue_type}")
            continue
        why = check_field(meta[fid], value)
        if not why and _users(meta[fid]):
            why = _check_users(tracker, value)
        if why:
            problems.append(f"{key}: {why}")
        chosen[fid] = value
    fields = {**settings.fields, **chosen}
    for fid, field in meta.items():
        if field.get("required") and fid not in _OURS and fid not in fields:
            problems.append(f"{fid} ({field.get('name', '')}) is required: add --field {fid}=...")
    if problems:
        return _failed(*problems)
    changes: dict[str, Any] = {"issue_type": issue_type}
    changes.update({f"fields.{fid}": value for fid, value in chosen.items()})
    for note in request.store(changes):
        print(note)
    return 0


def _check_users(tracker: Any, value: Any) -> str:
    """Users are account ids on Cloud and login names on Data Center; each is looked up."""
    for user in value if isinstance(value, list) else [value]:
        key = "accountId" if tracker.cloud else "username"
        try:
            tracker._get(tracker.client, "/rest/api/2/user", "user", **{key: str(user)})
        except Exception:
            kind = "an account id" if tracker.cloud else "a login name"
            return f"no user {user!r} ({'Cloud' if tracker.cloud else 'Data Center'} wants {kind})"
    return ""
