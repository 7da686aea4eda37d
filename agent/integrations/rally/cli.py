"""``rp-bts integrations configure NAME``: a Rally workspace's work item types and the chosen
type's attributes, and the integration's predefined fields checked against them before they are
stored.

ReportPortal's "choose predefined fields" step: list the creatable types (rp-bts files Defects;
the others are shown for reference), show the type's attributes from its TypeDefinition with
their allowed values (Severity, Priority, State, Environment, FoundInBuild, Owner, custom
``c_`` fields), validate ``--field KEY=VALUE`` and write them into the integration's file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rp_bts_agent.kinds import ConfigureRequest
from rp_bts_agent.tracker import TrackerError

from . import RallySettings
from .tracker import DEFECT, OURS, USERS, RallyTracker

__all__ = ["check_field", "configure"]


def check_field(attribute: Mapping[str, Any], value: Any) -> str:
    """Why ``value`` does not fit the attribute, or ``""`` when it does (users apart)."""
    name = attribute.get("ElementName")
    if attribute.get("ReadOnly"):
        return "is read-only"
    if name in OURS:
        return "is filled by rp-bts"
    kind = attribute.get("AttributeType")
    if kind == "COLLECTION" or isinstance(value, (list, dict)):
        return "takes one value"
    if kind == "BOOLEAN" and not isinstance(value, bool):
        return "takes true or false"
    if kind in ("INTEGER", "QUANTITY", "DECIMAL") and not isinstance(value, (int, float)):
        return "takes a number"
    allowed = [v for v in attribute.get("allowed") or [] if v]
    if allowed and str(value) not in allowed:
        return f"{value!r} is not allowed (allowed: {', '.join(allowed)})"
    return ""


def _as_text(attribute: Mapping[str, Any], value: Any) -> Any:
    """A number given for a text attribute (``FoundInBuild=2.0`` reads as TOML) as text;
    quote it (``'FoundInBuild="1.10"'``) to keep it as typed."""
    textual = attribute.get("AttributeType") in ("STRING", "TEXT", "RATING", "STATE")
    if textual and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value


def configure(request: ConfigureRequest) -> int:
    try:
        tracker = RallyTracker(request.integration)
    except TrackerError as exc:
        print(f"FAILED: {exc}")
        return 1
    try:
        return _configure(request, tracker)
    except TrackerError as exc:
        print(f"FAILED: {exc}")
        return 1
    finally:
        tracker.close()


def _configure(request: ConfigureRequest, tracker: RallyTracker) -> int:
    settings = request.integration.settings_as(RallySettings)
    types = {str(t.get("Name")): t for t in tracker.types()}
    where = tracker.scope()
    print(f"work item types in {where.workspace_name}: {', '.join(types)}")
    issue_type = request.issue_type or settings.issue_type or DEFECT
    chosen = types.get(issue_type) or next(
        (t for t in types.values() if t.get("ElementName") == issue_type), None
    )
    if chosen is None:
        print(f"FAILED: no type {issue_type!r}; use --issue-type with one of the above")
        return 1
    attributes = tracker.attributes(int(chosen["ObjectID"]), allowed=True)
    print(f"attributes of {chosen['Name']} (* required):")
    for element, attribute in attributes.items():
        if attribute.get("ReadOnly") or element in OURS:
            continue
        mark = "*" if attribute.get("Required") else " "
        allowed = [v for v in attribute.get("allowed") or [] if v]
        shown = f": {' | '.join(allowed)}" if allowed else ""
        kind = str(attribute.get("AttributeType", "")).lower()
        print(f"  {mark} {element} ({attribute.get('Name', '')}, {kind}){shown}")
    if chosen.get("ElementName") != DEFECT:
        print(f"FAILED: rp-bts files Defects in Rally; {chosen['Name']} is listed for reference")
        return 1

    names = {k.lower(): k for k in attributes}
    names.update({str(a.get("Name", "")).lower(): k for k, a in attributes.items()})
    chosen_fields: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in request.fields:
        element = names.get(key.lower(), "")
        if not element:
            problems.append(f"{key}: no such attribute on {DEFECT}")
            continue
        value = _as_text(attributes[element], value)
        why = check_field(attributes[element], value)
        if not why and element in USERS:
            try:
                tracker.user_ref(str(value), element)
            except TrackerError as exc:
                why = str(exc).split(": ", 2)[-1]
        if why:
            problems.append(f"{element}: {why}")
        chosen_fields[element] = value
    fields = {**settings.fields, **chosen_fields}
    for element, attribute in attributes.items():
        if attribute.get("Required") and element not in OURS and element not in fields:
            problems.append(f"{element} is required: add --field {element}=...")
    for problem in problems:
        print(f"FAILED: {problem}")
    if problems:
        return 1
    changes: dict[str, Any] = {"issue_type": DEFECT}
    changes.update({f"fields.{k}": v for k, v in chosen_fields.items()})
    for note in request.store(changes):
        print(note)
    return 0
