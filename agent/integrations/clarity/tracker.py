"""Clarity PPM project issues as a :class:`~rp_bts_agent.tracker.Tracker`.

A failure group becomes an issue of the project (``POST /projects/{id}/issues``) whose code is
derived from the fingerprint, so a second create of the same failure is refused by Clarity
itself (a unique code) and answered with the issue that stands. The fingerprint is kept in a
custom attribute: finding a batch's issues is one exact ``filter=`` query. A repeat failure
updates the issue once per run (occurrences, last run, tests) instead of a comment, which
Clarity's REST API v1 does not take.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import re
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Final, final

from rp_bts_agent.content import one_line
from rp_bts_agent.tracker import (
    CommentDraft,
    IssueDraft,
    RemoteIssue,
    TrackerError,
    create_one,
    filed_by,
    run_marker,
)

from . import ClaritySettings
from .client import Clarity, quote

if TYPE_CHECKING:
    from rp_bts_agent.config_types import Integration
    from rp_bts_agent.tracker import Tracker

__all__ = ["ClarityTracker", "cut_name", "parse_issue"]

log = logging.getLogger("rp_bts_agent")

BATCH: Final = 50
NAME_LIMIT: Final = 80
_ISSUE_URL: Final = re.compile(r"/projects/(\d+)/issues/(\d+)")
#: the description carries the run marker of the run that filed the issue
_READ_FIELDS: Final = ("code", "name", "status", "description")


def cut_name(text: str, limit: int = NAME_LIMIT) -> str:
    """One line of at most ``limit`` characters, cut at a word where one is near, with an
    ellipsis: never half a word when a space is in the last quarter."""
    flat = one_line(text, 10_000)
    if len(flat) <= limit:
        return flat
    head = flat[: limit - 1]
    space = head.rfind(" ")
    if space >= limit * 3 // 4:
        head = head[:space]
    return head.rstrip(" :,;-") + "\u2026"


def parse_issue(key: str) -> tuple[str, str]:
    """("id", internal id) for a number or an issue URL, ("code", code) otherwise."""
    text = key.strip()
    found = _ISSUE_URL.search(text)
    if found:
        return "id", found.group(2)
    return ("id", text) if text.isdigit() else ("code", text)


@final
class ClarityTracker:
    """Issues of one Clarity project; the project code is resolved once."""

    kind: ClassVar[str] = "clarity"
    batch: ClassVar[int] = BATCH

    def __init__(self, integration: Integration, *, read_only: bool = False) -> None:
        settings = integration.settings_as(ClaritySettings)
        if not settings.project_key:
            raise TrackerError(f"integration '{integration.name}': project_key is missing")
        self.integration: Final = integration
        self.settings: Final = settings
        self.read_only: Final = read_only
        self.client: Final = Clarity(integration)
        self._lock = threading.Lock()
        self._project_ids: dict[str, int] = {}
        self._lookups: dict[str, list[dict[str, Any]]] = {}

    def __repr__(self) -> str:
        return f"ClarityTracker({self.client.api!r}, project={self.settings.project_key!r})"

    def _usable(self) -> None:
        if not self.settings.enabled:
            raise TrackerError(
                f"integration '{self.integration.name}' is disabled (enabled = false):"
                " nothing is filed or synced"
            )

    def _writable(self, what: str) -> None:
        self._usable()
        if self.read_only:
            raise TrackerError(f"Clarity {what}: opened read-only (dry run)")

    def close(self) -> None:
        self.client.close()

    # -- the project and its attributes ---------------------------------------------------------

    def project_id(self, code: str = "") -> int:
        """The internal id of a project code (or id), asked once through a filter."""
        wanted = code or self.settings.project_key
        if wanted.isdigit():
            return int(wanted)
        with self._lock:
            if wanted not in self._project_ids:
                found = self.client.call(
                    "GET",
                    "/projects",
                    "find project",
                    params={"filter": f"(code = {quote(wanted)})", "fields": "code,name"},
                )
                items = found.get("_results") or []
                if not items:
                    raise TrackerError(
                        f"Clarity: no project with code {wanted!r} visible to this user"
                        " (`rp-bts integrations test` lists the ones it can see)"
                    )
                self._project_ids[wanted] = int(items[0]["_internalId"])
            return self._project_ids[wanted]

    @functools.cached_property
    def attributes(self) -> dict[str, dict[str, Any]]:
        """``/describe/issues``: the API-enabled attributes by name."""
        described = self.client.call("GET", "/describe/issues", "describe issues")
        return {str(a["name"]): a for a in described.get("attributes") or []}

    def lookup(self, code: str) -> list[dict[str, Any]]:
        """The values of a lookup (``id``, ``code``, ``displayValue``), read once per run."""
        with self._lock:
            if code not in self._lookups:
                path = f"/lookups/{code}/lookupValues"
                self._lookups[code] = list(self.client.pages(path, f"lookup {code}", {}))
            return self._lookups[code]

    def lookup_id(self, attribute: str, value: Any) -> str:
        attr = self.attributes[attribute]
        values = self.lookup(str(attr.get("lookupCode", "")))
        for item in values:
            if str(value) in (str(item.get("id")), str(item.get("code")), item.get("displayValue")):
                return str(item.get("id"))
        shown = ", ".join(str(v.get("displayValue")) for v in values)
        raise TrackerError(
            f"Clarity: {value!r} is not a value of {attribute} (use one of: {shown})"
        )

    def field_value(self, attribute: str, value: Any) -> Any:
        """A config value for an attribute, checked against ``/describe/issues``: lookups by
        display value, code or id; numbers as numbers; text within its length."""
        attr = self.attributes.get(attribute)
        if attr is None:
            names = ", ".join(sorted(self.attributes))
            raise TrackerError(
                f"Clarity: issues have no attribute {attribute!r} (or it is not API-enabled);"
                f" attributes: {names}"
            )
        if attr.get("isReadOnly"):
            raise TrackerError(f"Clarity: attribute {attribute!r} is read-only")
        data_type = attr.get("dataType")
        if data_type == "lookup":
            return self.lookup_id(attribute, value)
        if data_type in ("number", "integer"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TrackerError(
                    f"Clarity: attribute {attribute!r} takes a number, not {value!r}"
                )
            return value
        if data_type == "boolean":
            if not isinstance(value, bool):
                raise TrackerError(f"Clarity: attribute {attribute!r} takes true or false")
            return value
        text = "\n".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
        limit = attr.get("maxLength")
        return cut_name(text, int(limit)) if isinstance(limit, int) else text

    def _has(self, attribute: str) -> bool:
        return bool(attribute) and attribute in self.attributes

    # -- reading ----------------------------------------------------------------------------------

    def _path(self, project: int | None = None) -> str:
        return f"/projects/{project or self.project_id()}/issues"

    def remote(self, raw: Mapping[str, Any], project: int | None = None) -> RemoteIssue:
        status_id = str(raw.get("status") or "")
        shown = status_id
        if status_id and self._has("status"):
            for item in self.lookup(str(self.attributes["status"].get("lookupCode", ""))):
                if str(item.get("id")) == status_id:
                    shown = str(item.get("displayValue") or status_id)
        closed = bool(status_id) and (
            status_id in self.settings.closed_statuses or shown in self.settings.closed_statuses
        )
        fingerprint_field = self.settings.fingerprint_field
        return RemoteIssue(
            key=str(raw.get("code") or raw.get("_internalId")),
            url=str(
                raw.get("_self") or f"{self.client.api}{self._path(project)}/{raw['_internalId']}"
            ),
            status=shown,
            closed=closed,
            fingerprint=str(raw.get(fingerprint_field) or ""),
            issue_id=str(raw.get("_internalId", "")),
            filed_by=filed_by(raw.get("description")),
        )

    def read_fields(self, *extra: str) -> str:
        wanted = [*_READ_FIELDS, self.settings.fingerprint_field, *extra]
        return ",".join(dict.fromkeys(f for f in wanted if f and self._has(f)))

    def search(
        self, filter_text: str, *fields: str, project: int | None = None
    ) -> list[dict[str, Any]]:
        """The project's issues a filter finds, newest first, every page."""
        params = {
            "filter": filter_text,
            "fields": self.read_fields(*fields),
            "sort": "createdDate desc",
        }
        return list(self.client.pages(self._path(project), "search issues", params))

    def find(
        self, fingerprints: Sequence[str], known: Mapping[str, Sequence[str]] | None = None
    ) -> Mapping[str, RemoteIssue]:
        """One exact filter query per batch of fingerprints; the newest open issue of each,
        else its newest closed one."""
        self._usable()
        wanted = [f for f in dict.fromkeys(fingerprints) if f]
        field_name = self.settings.fingerprint_field
        if not wanted:
            return {}
        if not self._has(field_name):
            raise TrackerError(
                f"Clarity: issues have no attribute {field_name!r} for fingerprints: create the"
                " custom attribute (string, API-enabled) or set fingerprint_field"
            )
        found: dict[str, RemoteIssue] = {}
        for start in range(0, len(wanted), BATCH):
            chunk = wanted[start : start + BATCH]
            values = ", ".join(quote(f) for f in chunk)
            for raw in self.search(f"({field_name} in ({values}))"):
                remote = self.remote(raw)
                have = found.get(remote.fingerprint)
                if remote.fingerprint in chunk and (
                    have is None or (have.closed and not remote.closed)
                ):
                    found[remote.fingerprint] = remote
        return found

    def get(self, key: str) -> RemoteIssue:
        """One issue by code, internal id or URL, with its status."""
        self._usable()
        how, value = parse_issue(key)
        if how == "id":
            raw = self.client.call(
                "GET", f"{self._path()}/{value}", "get issue", params={"fields": self.read_fields()}
            )
            return self.remote(raw)
        found = self.search(f"(code = {quote(value)})")
        if not found:
            raise TrackerError(
                f"Clarity: no issue {value!r} in project {self.settings.project_key}"
            )
        return self.remote(found[0])

    # -- writing ----------------------------------------------------------------------------------

    def code_for(self, draft: IssueDraft) -> str:
        """A unique, stable code: the prefix and the fingerprint's digest; a new issue for a
        closed one adds a counter (``-2``, ``-3``)."""
        source = draft.fingerprint or draft.summary
        digest = hashlib.sha256(source.encode()).hexdigest()[:12]
        code = f"{self.settings.code_prefix}{digest}"
        if draft.relates_to:
            _, _, tail = draft.relates_to.rpartition("-")
            number = int(tail) + 1 if draft.relates_to.startswith(code) and tail.isdigit() else 2
            code = f"{code}-{number}"
        return code

    def body(self, draft: IssueDraft) -> dict[str, Any]:
        """The attributes of a new issue: name, code, description, the config's fields (checked
        against ``/describe/issues``), the fingerprint, the tests and the run."""
        s = self.settings
        body: dict[str, Any] = {}
        for name, value in draft.fields.items():
            body[name] = self.field_value(name, value)
        body |= {
            "name": cut_name(draft.summary),
            "code": self.code_for(draft),
            "description": draft.body.plain((run_marker(draft.run_id),) if draft.run_id else ()),
        }
        if draft.fingerprint:
            body[s.fingerprint_field] = self.field_value(s.fingerprint_field, draft.fingerprint)
        for attribute, value in (
            (s.occurrences_field, 1),
            (s.last_run_field, draft.run_id),
            (s.tests_field, list(draft.tests)),
        ):
            if value and self._has(attribute):
                body[attribute] = self.field_value(attribute, value)
        return body

    def create(self, draft: IssueDraft) -> RemoteIssue:
        return create_one(self, draft)

    def create_many(
        self, drafts: Sequence[IssueDraft], *, look_first: bool = True
    ) -> list[RemoteIssue | TrackerError]:
        """Look the batch up in one query, then one POST per new issue (Clarity's v1 has no
        bulk create). A code Clarity refuses as taken is an issue another job just filed."""
        self._writable("create")
        fingerprints = [d.fingerprint for d in drafts if d.fingerprint]
        before = self.find(fingerprints) if look_first and fingerprints else {}
        answers: list[RemoteIssue | TrackerError] = []
        for draft in drafts:
            standing = before.get(draft.fingerprint)
            if standing is not None and not standing.closed:
                answers.append(dataclasses.replace(standing, existed=True))
                continue
            try:
                answers.append(self._create(draft))
            except TrackerError as exc:
                answers.append(exc)
        return answers

    def _create(self, draft: IssueDraft) -> RemoteIssue:
        body = self.body(draft)
        try:
            raw = self.client.call("POST", self._path(), "create issue", body=body, full=True)
        except TrackerError as exc:
            if "already exists" not in str(exc):
                raise
            standing = self.search(f"(code = {quote(body['code'])})")
            if not standing:
                raise
            return dataclasses.replace(self.remote(standing[0]), existed=True)
        return self.remote(raw)

    def complete(self, key: str, draft: IssueDraft) -> None:
        """Nothing follows a create: Clarity's REST API v1 takes no attachments on issues
        (the whole failure text is in the description)."""

    def comment(self, key: str, comment: CommentDraft) -> bool:
        """The run's update of an issue the failure repeats on: occurrences + 1, the run, the
        tests; ``False`` when this run had updated it already (its last run is this run)."""
        self._writable("update")
        s = self.settings
        fields = [f for f in (s.occurrences_field, s.last_run_field, s.tests_field) if self._has(f)]
        current = self._read(key, fields)
        run = (
            self.field_value(s.last_run_field, comment.run_id)
            if self._has(s.last_run_field)
            else ""
        )
        if run and current.get(s.last_run_field) == run:
            return False
        change: dict[str, Any] = {}
        if self._has(s.occurrences_field):
            change[s.occurrences_field] = int(current.get(s.occurrences_field) or 0) + 1
        if run:
            change[s.last_run_field] = run
        if self._has(s.tests_field):
            have = split_tests(current.get(s.tests_field))
            tests = list(dict.fromkeys([*have, *comment.tests]))
            if tests != have:
                change[s.tests_field] = self.field_value(s.tests_field, tests)
        if change:
            self.update(current["_internalId"], change)
        return True

    def _read(self, key: str, fields: Sequence[str]) -> dict[str, Any]:
        how, value = parse_issue(key)
        if how == "id":
            path = f"{self._path()}/{value}"
            return dict(
                self.client.call(
                    "GET", path, "read issue", params={"fields": self.read_fields(*fields)}
                )
            )
        found = self.search(f"(code = {quote(value)})", *fields)
        if not found:
            raise TrackerError(
                f"Clarity: no issue {value!r} in project {self.settings.project_key}"
            )
        return dict(found[0])

    def update(self, issue_id: Any, change: Mapping[str, Any], project: int | None = None) -> None:
        self._writable("update")
        self.client.call(
            "PATCH", f"{self._path(project)}/{issue_id}", "update issue", body=dict(change)
        )

    def reopen(self, key: str) -> RemoteIssue:
        """The status becomes ``reopen_status`` (Open)."""
        self._writable("reopen")
        current = self.get(key)
        if not current.closed:
            return current
        status = self.lookup_id("status", self.settings.reopen_status)
        self.update(current.issue_id, {"status": status})
        return self.get(current.issue_id)


def split_tests(value: Any) -> list[str]:
    """Test ids as a Clarity text attribute holds them: one a line (ours), or comma
    separated on one line (typed by hand)."""
    if not isinstance(value, str):
        return []
    parts = value.splitlines() if "\n" in value.strip() else value.split(",")
    return [t.strip() for t in parts if t.strip()]


if TYPE_CHECKING:

    def _conforms(tracker: ClarityTracker) -> Tracker:
        return tracker
