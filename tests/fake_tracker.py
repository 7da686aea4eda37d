"""A tracker that lives in memory, for unit tests of the pipeline (sentry-python's test
transport is the model): it implements the Tracker protocol, records every call, and fails on
demand, so routing, planning, the breaker, the budget and retries are tested without HTTP.

Registered as the kind ``fake`` for the test that asks for the ``fake`` fixture.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import pytest

from rp_bts_agent import kinds
from rp_bts_agent.config_types import Integration
from rp_bts_agent.kinds import Kind
from rp_bts_agent.settings import TrackerSettings
from rp_bts_agent.tracker import (
    Body,
    CommentDraft,
    IssueDraft,
    RemoteIssue,
    Tracker,
    TrackerError,
    create_one,
    run_marker,
)


@dataclass
class FakeIssue:
    key: str
    draft: IssueDraft
    status: str = "Open"
    comments: list[str] = field(default_factory=list)  # run ids

    @property
    def closed(self) -> bool:
        return self.status == "Closed"


@dataclass
class FakeService:
    """The tracker's side: its issues, the calls it got, the failures it is told to give."""

    issues: dict[str, FakeIssue] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    #: call name -> errors to raise on the next such calls, first first
    failures: dict[str, list[TrackerError]] = field(default_factory=dict)
    #: every call raises this (a tracker that does not answer)
    down: TrackerError | None = None
    #: seconds each call takes
    latency: float = 0.0
    read_only_opened: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, call: str, *errors: TrackerError) -> None:
        self.failures.setdefault(call, []).extend(errors)

    def call(self, name: str) -> None:
        with self.lock:
            self.calls.append(name)
            pending = self.failures.get(name)
            error = pending.pop(0) if pending else self.down
        time.sleep(self.latency)
        if error is not None:
            raise error

    def count(self, name: str) -> int:
        return self.calls.count(name)

    def file(self, fingerprint: str, status: str = "Open") -> FakeIssue:
        """An issue filed before the test (by an earlier run)."""
        key = f"FAKE-{len(self.issues) + 1}"
        draft = IssueDraft("earlier", Body(()), fingerprint, labels=(fingerprint,))
        self.issues[key] = FakeIssue(key, draft, status)
        return self.issues[key]


class FakeTracker:
    kind: ClassVar[str] = "fake"
    batch: ClassVar[int] = 2

    def __init__(self, service: FakeService, read_only: bool) -> None:
        self.service = service
        self.read_only = read_only
        service.read_only_opened |= read_only

    def _remote(self, issue: FakeIssue, existed: bool = False) -> RemoteIssue:
        marker = run_marker(issue.draft.run_id) if issue.draft.run_id else ""
        return RemoteIssue(
            issue.key, f"fake://{issue.key}", issue.status, issue.closed,
            issue.draft.fingerprint, existed, filed_by=marker,
        )  # fmt: skip

    def find(
        self, fingerprints: Sequence[str], known: Mapping[str, Sequence[str]] | None = None
    ) -> Mapping[str, RemoteIssue]:
        self.service.call("find")
        found: dict[str, RemoteIssue] = {}
        for issue in self.service.issues.values():  # newest last: open before closed
            fingerprint = issue.draft.fingerprint
            if fingerprint in fingerprints:
                old = found.get(fingerprint)
                if old is None or old.closed or not issue.closed:
                    found[fingerprint] = self._remote(issue)
        return found

    def get(self, key: str) -> RemoteIssue:
        self.service.call("get")
        if key not in self.service.issues:
            raise TrackerError(f"fake: no issue {key}")
        return self._remote(self.service.issues[key])

    def create(self, draft: IssueDraft) -> RemoteIssue:
        return create_one(self, draft)

    def create_many(
        self, drafts: Sequence[IssueDraft], *, look_first: bool = True
    ) -> list[RemoteIssue | TrackerError]:
        assert not self.read_only, "a dry run must not write"
        filed = self.find([d.fingerprint for d in drafts]) if look_first else {}
        self.service.call("create_many")
        answers: list[RemoteIssue | TrackerError] = []
        for draft in drafts:
            existing = filed.get(draft.fingerprint)
            if existing is not None and not existing.closed:  # idempotent on the fingerprint
                answers.append(dataclasses.replace(existing, existed=True))
                continue
            issue = self.service.file(draft.fingerprint)
            issue.draft = draft
            answers.append(self._remote(issue))
        return answers

    def complete(self, key: str, draft: IssueDraft) -> None:
        self.service.call("complete")

    def comment(self, key: str, comment: CommentDraft) -> bool:
        assert not self.read_only, "a dry run must not write"
        self.service.call("comment")
        issue = self.service.issues[key]
        if comment.run_id in issue.comments:
            return False
        issue.comments.append(comment.run_id)
        return True

    def reopen(self, key: str) -> RemoteIssue:
        self.service.call("reopen")
        self.service.issues[key].status = "Open"
        return self._remote(self.service.issues[key])

    def close(self) -> None:
        """Nothing to release."""


@dataclass(frozen=True)
class _EntryPoint:
    """What ``importlib.metadata`` would give for a kind a package registers."""

    kind: Kind
    value: str = "fake_tracker:KIND"

    def load(self) -> Kind:
        return self.kind


@pytest.fixture(name="fake")
def fake_fixture(monkeypatch: pytest.MonkeyPatch) -> FakeService:
    """The kind ``fake`` installed for this test; its trackers share one service."""
    service = FakeService()

    def tracker(integration: Integration, read_only: bool) -> Tracker:
        return FakeTracker(service, read_only)

    kind = Kind(name="fake", settings=TrackerSettings, summary="in memory", tracker=tracker)
    monkeypatch.setitem(kinds._points(), "fake", _EntryPoint(kind))  # type: ignore[arg-type]
    return service
