"""The one small interface every bug tracker implements.

The pipeline plans with these calls only, so adding a tracker is one module under ``trackers/``
plus its tests. Drafts carry structured content, not formatted text: each tracker renders it in
its own markup (plain text, Jira wiki markup, Rally HTML) and escapes what came from tests.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, Protocol, runtime_checkable

from .model import Link


class TrackerError(Exception):
    """A tracker refused or failed a call.

    ``retryable``: a later replay may succeed (the tracker is down, slow or throttling);
    ``transient``: worth trying again right away (a 500, an answer lost on the way): the call
    went through or not, so only idempotent steps may be repeated.
    """

    def __init__(self, message: str, *, retryable: bool = False, transient: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable or transient
        self.transient = transient


_RUN_ID_SAFE: Final = re.compile(r"[^A-Za-z0-9_.]+")


def run_marker(run_id: str) -> str:
    """The line a tracker writes under what a run wrote (an issue's description, a comment):
    a later call of the same run that finds it knows its work is there already."""
    return f"rp-bts run {_RUN_ID_SAFE.sub('_', run_id)}"


_MARKER: Final = re.compile(r"rp-bts run [A-Za-z0-9_.]+")


def filed_by(description: object) -> str:
    """The run marker under an issue's description (the last one: a test's output above it may
    quote another), in whatever markup the tracker wrote it; "" when there is none."""
    marks = _MARKER.findall(description) if isinstance(description, str) else []
    return marks[-1] if marks else ""


@dataclass(frozen=True, slots=True)
class Section:
    """One titled part of an issue body; ``preformatted`` text is shown verbatim (tracebacks)."""

    title: str
    text: str
    preformatted: bool = False


@dataclass(frozen=True, slots=True)
class Body:
    """Structured issue or comment content; trackers render and escape it."""

    sections: tuple[Section, ...]

    def plain(self, trailer: Sequence[str] = ()) -> str:
        """Plain-text rendering, used by trackers without markup; ``trailer`` lines are ours
        (a run marker), last."""
        parts = []
        for section in self.sections:
            text = section.text.rstrip("\n")
            parts.append(f"{section.title}:\n{text}" if section.title else text)
        return "\n\n".join(parts) + "\n" + "".join(f"{line}\n" for line in trailer)


@dataclass(frozen=True, slots=True)
class AttachmentFile:
    name: str
    path: str
    mime: str = "application/octet-stream"


@dataclass(frozen=True, slots=True)
class IssueDraft:
    summary: str
    body: Body
    fingerprint: str
    issue_type: str = ""
    labels: tuple[str, ...] = ()
    fields: Mapping[str, Any] = field(default_factory=dict)
    attachments: tuple[AttachmentFile, ...] = ()
    #: key of an earlier, closed issue for the same failure; the new issue is linked to it.
    relates_to: str = ""
    #: web pages about the failure (Sauce Labs job, video); Jira makes them remote links
    links: tuple[Link, ...] = ()
    #: node ids of the failing tests and the run: trackers with fields for them fill them; a
    #: tracker writes the run's :func:`run_marker` on the issue, so a replay of a run killed
    #: after its create completes the issue instead of commenting on it
    tests: tuple[str, ...] = ()
    run_id: str = ""


@dataclass(frozen=True, slots=True)
class CommentDraft:
    body: Body
    #: one comment per run: a tracker that sees this run id on the issue already does nothing.
    run_id: str
    attachments: tuple[AttachmentFile, ...] = ()
    #: node ids of the tests that failed again
    tests: tuple[str, ...] = ()
    #: labels the issue gets with the comment (``flaky``), each added once; a tracker without
    #: labels ignores them
    labels: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RemoteIssue:
    key: str
    url: str
    status: str
    closed: bool
    fingerprint: str = ""
    #: set by ``create`` when another process had just filed the same fingerprint.
    existed: bool = False
    #: the tracker's own id of the issue, where it has one besides the key (Jira's numeric id)
    issue_id: str = ""
    #: the :func:`run_marker` written on the issue when it was filed ("" if the tracker does
    #: not read it back)
    filed_by: str = ""


class Tracker(Protocol):
    """A bug tracker, seen by the pipeline. Every method may raise :class:`TrackerError`.

    Optional: ``resolve`` (:class:`Resolves`), for ``on_pass = "resolve"``; a tracker without
    it gets the "passing since" comment only.
    """

    kind: ClassVar[str]
    #: how many drafts one ``create_many`` call files at most (Jira's bulk create takes 50)
    batch: ClassVar[int]

    def find(
        self, fingerprints: Sequence[str], known: Mapping[str, Sequence[str]] | None = None
    ) -> Mapping[str, RemoteIssue]:
        """The newest issue for each fingerprint (open before closed), in as few calls as it can.

        ``known`` holds the ids of issues we filed for those fingerprints earlier (our own
        record): a tracker whose search lags behind its writes uses them.
        """
        ...

    def get(self, key: str) -> RemoteIssue:
        """One issue by key or URL, with its current status (for linking)."""
        ...

    def create(self, draft: IssueDraft) -> RemoteIssue:
        """File a new issue with its attachments and links; idempotent on the fingerprint."""
        ...

    def create_many(
        self, drafts: Sequence[IssueDraft], *, look_first: bool = True
    ) -> list[RemoteIssue | TrackerError]:
        """File up to ``batch`` issues in as few calls as the tracker allows, one answer per
        draft in order (a refused draft is its error; the others still go). Idempotent on the
        fingerprint: a draft whose issue is open already answers that issue, ``existed`` set;
        ``look_first=False`` skips that lookup where the caller has just made it (a tracker
        whose check costs nothing may check anyway). Attachments and links may be left to
        :meth:`complete`, so they can go in parallel."""
        ...

    def complete(self, key: str, draft: IssueDraft) -> None:
        """Add what ``create_many`` left out (attachments, links); failures are logged."""
        ...

    def comment(self, key: str, comment: CommentDraft) -> bool:
        """Add the run's comment; ``False`` when this run had already commented."""
        ...

    def reopen(self, key: str) -> RemoteIssue:
        """Reopen a closed issue (``on_closed = "reopen"``)."""
        ...

    def close(self) -> None:
        """Release connections and files."""
        ...


@runtime_checkable
class Resolves(Protocol):
    """The optional part of :class:`Tracker`: moving an issue to its resolved state."""

    def resolve(self, key: str) -> RemoteIssue:
        """Move the issue to the tracker's resolved state (Jira: the configured transition; the
        local tracker: Closed); an issue resolved already is returned as it is."""
        ...


@runtime_checkable
class Notes(Protocol):
    """The optional part of :class:`Tracker`: what happened to the tracker's own storage (the
    local tracker's database found damaged and moved aside), for the run's summary."""

    def take_notes(self) -> list[str]:
        """The notes since the last call, each said once."""
        ...


def create_one(tracker: Tracker, draft: IssueDraft) -> RemoteIssue:
    """``Tracker.create`` for any tracker: one draft through ``create_many`` (its refusal
    raised), then ``complete`` unless another process had filed it already."""
    (answer,) = tracker.create_many([draft])
    if isinstance(answer, TrackerError):
        raise answer
    if not answer.existed:
        tracker.complete(answer.key, draft)
    return answer
