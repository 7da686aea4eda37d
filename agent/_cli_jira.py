"""``rp-bts integrations configure NAME``: a Jira project's issue types and fields, and the
integration's predefined fields checked against them before they are stored.

ReportPortal's "choose predefined fields" step: list the types, show the chosen type's fields
(required ones marked, allowed values shown), validate ``--field KEY=VALUE`` (options,
components, versions, priority, labels, users by account id on Cloud and by login name on Data
Center, custom fields) and write them into the file the integration lives in, keeping its layout.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._cli_common import load
from .config_edit import edit_integration
from .config_types import ConfigError, Integration

__all__ = ["add_configure", "check_field"]

#: fields rp-bts fills itself on every issue.
_OURS = frozenset(("summary", "description", "issuetype", "project", "labels"))


def add_configure(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from ._cli_integrations import _guarded, parse_setting

    cmd = commands.add_parser(
        "configure", help="Jira: show issue types and fields; check and store predefined fields"
    )
    cmd.add_argument("name")
    cmd.add_argument("--issue-type", default=None, metavar="TYPE")
    cmd.add_argument(
        "--field",
        dest="fields",
        action="append",
        default=[],
        type=parse_setting,
        metavar="KEY=VALUE",
        help="a predefined field, by id or name; VALUE is read as TOML when it parses",
    )
    cmd.set_defaults(func=_guarded(configure))


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


def configure(args: argparse.Namespace) -> int:
    from .trackers.base import TrackerError
    from .trackers.jira import JiraTracker

    config = load(args)
    integration = config.integration(args.name)
    if integration is None or integration.kind != "jira":
        raise ConfigError(config.project_file or "", "", f"no jira integration named {args.name!r}")
    tracker = JiraTracker(integration)
    try:
        return _configure(args, integration, tracker)
    except TrackerError as exc:
        print(f"FAILED: {exc}")
        return 1
    finally:
        tracker.close()


def _configure(args: argparse.Namespace, integration: Integration, tracker: Any) -> int:
    types = [str(t.get("name")) for t in tracker.issue_types()]
    print(f"issue types of {integration.project_key}: {', '.join(types)}")
    issue_type = args.issue_type or integration.issue_type or "Bug"
    if issue_type not in types:
        print(f"FAILED: no issue type {issue_type!r}; use --issue-type with one of the above")
        return 1
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
    for key, value in args.fields:
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
    fields = {**integration.fields, **chosen}
    for fid, field in meta.items():
        if field.get("required") and fid not in _OURS and fid not in fields:
            problems.append(f"{fid} ({field.get('name', '')}) is required: add --field {fid}=...")
    for problem in problems:
        print(f"FAILED: {problem}")
    if problems:
        return 1
    changes: dict[str, Any] = {"issue_type": issue_type}
    changes.update({f"fields.{fid}": value for fid, value in chosen.items()})
    file = Path(integration.file)
    if integration.source == "global":
        notes = edit_integration(file, integration.name, changes, scope="global")
    else:
        given = getattr(args, "global_config", None)
        notes = edit_integration(
            file, integration.name, changes, global_file=Path(given) if given else None
        )
    for note in notes:
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
