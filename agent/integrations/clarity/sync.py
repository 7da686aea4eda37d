"""Clarity's part of ``rp-bts sync``: per chosen project (Plutora's tab) a pull and a push.

- **pull**: the project's issues that match the expression become known-issue records; an issue
  whose mapped ``tests`` field holds a test id, or whose ``fingerprint`` field a fingerprint,
  links that test's future failures (the pipeline reads the records before filing).
- **push**: what runs noted on those records since (their runs, tests, last failure) is written
  to the mapped fields, only the fields that changed, in batches of at most 50 issues (Clarity's
  v1 takes one issue per PATCH, so a batch is 50 PATCHes, logged as one line).
- ``--refresh-fields``: the attributes and lookups ``/describe`` reports now, shown.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from rp_bts_agent.known import KnownRecord
from rp_bts_agent.sync import SyncContext, SyncStep
from rp_bts_agent.tracker import TrackerError

from . import ClaritySettings, ProjectTab
from .expression import ExpressionError, compile_expression
from .tracker import ClarityTracker, split_tests

if TYPE_CHECKING:
    from rp_bts_agent.config_types import Integration

__all__ = ["steps"]

PUSH_BATCH: Final = 50


def steps(integration: Integration, context: SyncContext) -> list[SyncStep]:
    settings = integration.settings_as(ClaritySettings)
    period = settings.sync.period
    name = integration.name
    if not settings.enabled:
        return [SyncStep(name, lambda: ["disabled (enabled = false): not synced"], period)]
    out = []
    if context.refresh_fields:
        out.append(SyncStep(f"{name}: fields", functools.partial(fields, integration), period))
    for tab in settings.tabs():
        if not (tab.auto or context.once):
            continue
        out.append(
            SyncStep(
                f"{name}: pull {tab.code}",
                functools.partial(pull, integration, tab, context),
                period,
            )
        )
        if tab.push:
            out.append(
                SyncStep(
                    f"{name}: push {tab.code}",
                    functools.partial(push, integration, tab, context),
                    period,
                )
            )
    return out


def fields(integration: Integration) -> list[str]:
    """``/describe/issues`` and every lookup's values, fresh."""
    tracker = ClarityTracker(integration)
    try:
        lines = []
        for name, attr in sorted(tracker.attributes.items()):
            line = f"{name} ({attr.get('dataType')}"
            if attr.get("isReadOnly"):
                line += ", read-only"
            line += f"): {attr.get('label', '')}"
            code = attr.get("lookupCode")
            if code:
                values = [str(v.get("displayValue")) for v in tracker.lookup(str(code))]
                line += f"; lookup {code}: {', '.join(values)}"
            lines.append(line)
        return lines
    finally:
        tracker.close()


def _mapped(tracker: ClarityTracker, mapping: Mapping[str, str]) -> dict[str, str]:
    """The tab's mapping, each attribute checked against ``/describe/issues``."""
    for ours, theirs in mapping.items():
        if theirs not in tracker.attributes:
            raise TrackerError(
                f"sync mapping {ours} = {theirs!r}: issues have no such attribute; they have"
                f" {', '.join(sorted(tracker.attributes))}"
            )
    return dict(mapping)


def _record(
    tracker: ClarityTracker, raw: Mapping[str, Any], tab: ProjectTab, mapping: Mapping[str, str]
) -> KnownRecord:
    """One pulled issue as a record; a value that does not fit its field raises ValueError."""
    remote = tracker.remote(raw)
    values = {ours: raw.get(theirs) for ours, theirs in mapping.items()}
    occurrences = values.get("occurrences")
    if occurrences is not None and (
        isinstance(occurrences, bool) or not isinstance(occurrences, (int, float))
    ):
        raise ValueError(f"{mapping['occurrences']} holds {occurrences!r}, not a number")
    for ours in ("tests", "fingerprint"):
        if values.get(ours) is not None and not isinstance(values[ours], str):
            raise ValueError(f"{mapping[ours]} holds {values[ours]!r}, not text")
    fingerprint = values.get("fingerprint")
    return KnownRecord(
        tracker.integration.name,
        remote.key,
        remote.url,
        remote.status,
        remote.closed,
        "pull",
        project=tab.code,
        issue_id=remote.issue_id,
        tests=tuple(split_tests(values.get("tests"))),
        fingerprints=(fingerprint,) if isinstance(fingerprint, str) and fingerprint else (),
        remote=values,
        synced=time.time(),
    )


def pull(integration: Integration, tab: ProjectTab, context: SyncContext) -> list[str]:
    settings = integration.settings_as(ClaritySettings)
    tracker = ClarityTracker(integration)
    try:
        project = tracker.project_id(tab.code)
        mapping = _mapped(tracker, settings.mapping(tab.code))
        try:
            text = compile_expression(settings.sync, tracker.attributes, tracker.lookup_id)
        except ExpressionError as exc:
            raise TrackerError(str(exc)) from None
        params = {"fields": tracker.read_fields(*mapping.values()), "sort": "createdDate desc"}
        if text:
            params["filter"] = text
        records, lines = [], []
        for raw in tracker.client.pages(f"/projects/{project}/issues", "pull issues", params):
            try:
                records.append(_record(tracker, raw, tab, mapping))
            except (ValueError, KeyError, TypeError) as exc:
                lines.append(f"skipped {raw.get('code') or raw.get('_internalId')}: {exc}")
        changes = context.known.pulled(integration.name, tab.code, records)
        linking = sum(1 for r in records if r.tests or r.fingerprints)
        head = f"{len(records)} issue(s) match ({text or 'no filter'}); {linking} link tests"
        return [head, *(f"status {c}" for c in changes), *lines]
    finally:
        tracker.close()


def _changes(
    tracker: ClarityTracker, record: KnownRecord, mapping: Mapping[str, str]
) -> dict[str, Any]:
    """Our side of one record, as attribute -> value, where it differs from Clarity's."""
    ours: dict[str, Any] = {}
    if record.pending:
        ours["occurrences"] = int(record.remote.get("occurrences") or 0) + len(record.pending)
        ours["last_run"] = record.pending[-1]
        ours["last_failure"] = record.last_failure
    have = split_tests(record.remote.get("tests"))
    tests = list(dict.fromkeys([*have, *record.hit_tests]))
    if tests != have:
        ours["tests"] = tests
    change = {}
    for field, value in ours.items():
        attribute = mapping.get(field)
        if not attribute:
            continue
        written = tracker.field_value(attribute, value)
        if written != record.remote.get(field):
            change[attribute] = written
    return change


def push(integration: Integration, tab: ProjectTab, context: SyncContext) -> list[str]:
    settings = integration.settings_as(ClaritySettings)
    tracker = ClarityTracker(integration)
    try:
        project = tracker.project_id(tab.code)
        mapping = _mapped(tracker, settings.mapping(tab.code))
        todo: list[tuple[KnownRecord, dict[str, Any]]] = []
        lines = []
        for record in context.known.records(integration.name):
            if record.source != "pull" or record.project != tab.code:
                continue
            try:
                change = _changes(tracker, record, mapping)
            except TrackerError as exc:
                lines.append(f"skipped {record.key}: {exc}")
                continue
            if change:
                todo.append((record, change))
        if not todo:
            return ["nothing changed", *lines]
        by_attribute = {theirs: ours for ours, theirs in mapping.items()}
        out = []
        for number, start in enumerate(range(0, len(todo), PUSH_BATCH), 1):
            batch = todo[start : start + PUSH_BATCH]
            done: list[str] = []
            for record, change in batch:
                try:
                    tracker.update(record.issue_id, change, project)
                except TrackerError as exc:
                    if exc.retryable:
                        raise  # down: the rest goes at the next period
                    done.append(f"skipped {record.key}: {exc}")
                    continue
                context.known.pushed(record, {by_attribute[a]: v for a, v in change.items()})
                done.append(f"{record.key}: {', '.join(sorted(change))}")
            updated = sum(1 for line in done if not line.startswith("skipped"))
            out += [f"batch {number}: {updated} of {len(batch)} issue(s) updated", *done]
        return out + lines
    finally:
        tracker.close()
