"""An example third-party kind: issues as Markdown files, one per fingerprint, in a folder.

What a kind declares: its settings (keys, defaults, checks) and a tracker that implements
``rp_bts_agent.tracker.Tracker``. The pipeline does the rest: routing, grouping by fingerprint,
one comment per run, the outbox, the time budget, the report and the mail.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from rp_bts_agent.config_types import Integration
from rp_bts_agent.connection import CheckOptions, CheckResult
from rp_bts_agent.kinds import Kind
from rp_bts_agent.settings import SettingsContext, TrackerSettings, path
from rp_bts_agent.state import State
from rp_bts_agent.tracker import (
    CommentDraft,
    IssueDraft,
    RemoteIssue,
    Tracker,
    TrackerError,
    create_one,
)

_HEADER = re.compile(r"^(key|fingerprint|status): (.*)$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class MarkdownSettings(TrackerSettings):
    """``kind = "markdown"``: ``folder`` holds the issues (default .rp-bts/markdown)."""

    folder: str = path(help="where the issue files go")

    @classmethod
    def complete(cls, values: dict[str, Any], context: SettingsContext) -> dict[str, Any]:
        values.setdefault("folder", str(State(context.root).folder / "markdown"))
        return values


class MarkdownTracker:
    """Issues ``MD-1.md``, ``MD-2.md``...; the header lines say key, fingerprint and status."""

    kind: ClassVar[str] = "markdown"
    batch: ClassVar[int] = 20

    def __init__(self, integration: Integration, read_only: bool = False) -> None:
        self.folder = Path(integration.settings_as(MarkdownSettings).folder)
        self.read_only = read_only
        self._lock = threading.Lock()

    def _issues(self) -> list[dict[str, str]]:
        found = []
        for file in sorted(self.folder.glob("MD-*.md")):
            found.append(dict(_HEADER.findall(file.read_text(encoding="utf-8"))))
        return found

    def _remote(self, issue: Mapping[str, str], existed: bool = False) -> RemoteIssue:
        file = self.folder / f"{issue['key']}.md"
        closed = issue["status"] == "closed"
        return RemoteIssue(
            issue["key"], file.as_uri(), issue["status"], closed, issue["fingerprint"], existed
        )

    def find(
        self, fingerprints: Sequence[str], known: Mapping[str, Sequence[str]] | None = None
    ) -> Mapping[str, RemoteIssue]:
        wanted = set(fingerprints)
        newest: dict[str, RemoteIssue] = {}
        for issue in self._issues():  # open before closed, then the newest
            if issue["fingerprint"] in wanted:
                old = newest.get(issue["fingerprint"])
                if old is None or old.closed or issue["status"] == "open":
                    newest[issue["fingerprint"]] = self._remote(issue)
        return newest

    def get(self, key: str) -> RemoteIssue:
        for issue in self._issues():
            if issue["key"] == key.strip():
                return self._remote(issue)
        raise TrackerError(f"markdown: no issue {key}")

    def create(self, draft: IssueDraft) -> RemoteIssue:
        return create_one(self, draft)

    def create_many(
        self, drafts: Sequence[IssueDraft], *, look_first: bool = True
    ) -> list[RemoteIssue | TrackerError]:
        if self.read_only:
            raise TrackerError("markdown: opened read-only (dry run)")
        answers: list[RemoteIssue | TrackerError] = []
        with self._lock:
            self.folder.mkdir(parents=True, exist_ok=True)
            for draft in drafts:
                existing = self.find([draft.fingerprint]).get(draft.fingerprint)
                if existing is not None and not existing.closed:
                    answers.append(dataclasses.replace(existing, existed=True))
                    continue
                key = f"MD-{len(list(self.folder.glob('MD-*.md'))) + 1}"
                text = (
                    f"# {draft.summary}\n\nkey: {key}\nfingerprint: {draft.fingerprint}\n"
                    f"status: open\n\n{draft.body.plain()}"
                )
                (self.folder / f"{key}.md").write_text(text, encoding="utf-8")
                answers.append(self.get(key))
        return answers

    def complete(self, key: str, draft: IssueDraft) -> None:
        files = self.folder / key
        files.mkdir(exist_ok=True)
        for attachment in draft.attachments:
            shutil.copyfile(attachment.path, files / Path(attachment.name).name)

    def comment(self, key: str, comment: CommentDraft) -> bool:
        file = self.folder / f"{key}.md"
        marker = f"## Run {comment.run_id}"
        with self._lock:
            text = file.read_text(encoding="utf-8")
            if marker in text.splitlines():
                return False
            file.write_text(f"{text}\n{marker}\n\n{comment.body.plain()}", encoding="utf-8")
        return True

    def reopen(self, key: str) -> RemoteIssue:
        file = self.folder / f"{key}.md"
        file.write_text(
            file.read_text(encoding="utf-8").replace("status: closed", "status: open", 1),
            encoding="utf-8",
        )
        return self.get(key)

    def close(self) -> None:
        """Nothing held open."""


def _tracker(integration: Integration, read_only: bool) -> Tracker:
    return MarkdownTracker(integration, read_only)


def _check(integration: Integration, options: CheckOptions) -> CheckResult:
    folder = Path(integration.settings_as(MarkdownSettings).folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".rp-bts-probe"
        probe.write_text("", encoding="utf-8")
        probe.unlink()
    except OSError as exc:
        return CheckResult(False, f"{folder} is not writable ({exc.strerror})")
    return CheckResult(True, f"issues go to {folder}")


KIND = Kind(
    name="markdown",
    settings=MarkdownSettings,
    summary="issues as Markdown files in a folder (an example third-party kind)",
    tracker=_tracker,
    check=_check,
    own_record=False,  # reading the folder is never stale
)
