"""The embedded tracker: issues in a SQLite file under ``.rp-bts/``, so a new user needs no server.

Several processes (xdist controllers of parallel CI jobs, ``rp-bts process`` shards) may file
into one file at once. The database is in WAL mode with a long busy timeout, so writers wait
for each other instead of failing, and ``create`` checks and inserts in one ``BEGIN IMMEDIATE``
transaction, so a fingerprint never gets two open issues; a partial unique index is the safety
net. Attachments are copied beside the database, streamed, never held in memory.

One file is one tracker project: integrations sharing a file see each other's issues, as two
Jira integrations on one Jira project do.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Final, final

from rp_bts_agent.connection import CheckOptions, CheckResult
from rp_bts_agent.files import write_atomic
from rp_bts_agent.tracker import (
    AttachmentFile,
    CommentDraft,
    IssueDraft,
    RemoteIssue,
    Resolves,
    TrackerError,
    create_one,
    filed_by,
    run_marker,
)

from . import LocalSettings

if TYPE_CHECKING:
    from rp_bts_agent.config_types import Integration
    from rp_bts_agent.tracker import Tracker

__all__ = [
    "IssueDetails",
    "LocalAttachment",
    "LocalComment",
    "LocalIssue",
    "LocalTracker",
    "UnknownIssue",
]

logger = logging.getLogger("rp_bts_agent")

#: relative to the project root; the config loader makes it absolute.
SCHEMA_VERSION: Final = 1
#: seconds a writer waits for another process's transaction before giving up.
BUSY_TIMEOUT: Final = 30.0
_COPY_CHUNK: Final = 1024 * 1024
_STATUSES: Final = ("Open", "Reopened", "Closed")
_PREFIX_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,31}")
_KEY_RE: Final = re.compile(r"(?:^|[/#:=])([A-Za-z][A-Za-z0-9_]{0,31}-[0-9]+)/?$")
_UNSAFE_RE: Final = re.compile(r"[^A-Za-z0-9._-]+")

_SCHEMA: Final = (
    """
    CREATE TABLE issues (
        id INTEGER PRIMARY KEY,
        key TEXT NOT NULL UNIQUE COLLATE NOCASE,
        integration TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        summary TEXT NOT NULL,
        description TEXT NOT NULL,
        issue_type TEXT NOT NULL DEFAULT '',
        labels TEXT NOT NULL DEFAULT '[]',
        fields TEXT NOT NULL DEFAULT '{}',
        status TEXT NOT NULL DEFAULT 'Open' CHECK (status IN ('Open', 'Reopened', 'Closed')),
        created TEXT NOT NULL,
        updated TEXT NOT NULL,
        relates_to TEXT NOT NULL DEFAULT ''
    )
    """,
    "CREATE INDEX issues_fingerprint ON issues (fingerprint, id)",
    # The safety net under BEGIN IMMEDIATE: one open issue per fingerprint, whoever writes.
    "CREATE UNIQUE INDEX issues_one_open ON issues (fingerprint) WHERE status != 'Closed'",
    """
    CREATE TABLE comments (
        id INTEGER PRIMARY KEY,
        issue_key TEXT NOT NULL REFERENCES issues (key),
        run_id TEXT NOT NULL,
        body TEXT NOT NULL,
        created TEXT NOT NULL,
        UNIQUE (issue_key, run_id)
    )
    """,
    """
    CREATE TABLE attachments (
        id INTEGER PRIMARY KEY,
        issue_key TEXT NOT NULL REFERENCES issues (key),
        comment_id INTEGER REFERENCES comments (id),
        name TEXT NOT NULL,
        mime TEXT NOT NULL,
        size INTEGER NOT NULL,
        path TEXT NOT NULL
    )
    """,
    "CREATE INDEX attachments_issue ON attachments (issue_key)",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)

_ISSUE_COLUMNS: Final = (
    "key, integration, fingerprint, summary, description, issue_type, labels, fields, status,"
    " created, updated, relates_to,"
    " (SELECT COUNT(*) FROM comments c WHERE c.issue_key = issues.key) AS comments"
)


class UnknownIssue(TrackerError):
    """No issue with that key in this file (the CLI exits 2 on it)."""


@dataclass(frozen=True, slots=True)
class LocalIssue:
    """One row of ``issues``, as the CLI lists it."""

    key: str
    integration: str
    fingerprint: str
    summary: str
    description: str
    issue_type: str
    labels: tuple[str, ...]
    fields: Mapping[str, Any]
    status: str
    created: str
    updated: str
    relates_to: str
    comments: int
    url: str

    @property
    def closed(self) -> bool:
        return self.status == "Closed"

    def remote(self, *, existed: bool = False) -> RemoteIssue:
        return RemoteIssue(
            key=self.key,
            url=self.url,
            status=self.status,
            closed=self.closed,
            fingerprint=self.fingerprint,
            existed=existed,
            filed_by=filed_by(self.description),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "status": self.status,
            "summary": self.summary,
            "fingerprint": self.fingerprint,
            "integration": self.integration,
            "created": self.created,
            "updated": self.updated,
            "comments": self.comments,
            "url": self.url,
            "issue_type": self.issue_type,
            "labels": list(self.labels),
            "relates_to": self.relates_to,
        }


@dataclass(frozen=True, slots=True)
class LocalComment:
    id: int
    run_id: str
    body: str
    created: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "run_id": self.run_id, "body": self.body, "created": self.created}


@dataclass(frozen=True, slots=True)
class LocalAttachment:
    """A copied file; ``path`` is absolute (the database stores it relative to its directory)."""

    id: int
    name: str
    mime: str
    size: int
    path: str
    comment_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "mime": self.mime,
            "size": self.size,
            "path": self.path,
            "comment_id": self.comment_id,
        }


@dataclass(frozen=True, slots=True)
class IssueDetails:
    """What ``rp-bts issues show`` prints: the issue with its comments and attachments."""

    issue: LocalIssue
    comments: tuple[LocalComment, ...] = ()
    attachments: tuple[LocalAttachment, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            **self.issue.to_json(),
            "description": self.issue.description,
            "fields": dict(self.issue.fields),
            "comments": [c.to_json() for c in self.comments],
            "attachments": [a.to_json() for a in self.attachments],
        }


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def safe_name(name: str) -> str:
    """A file name that cannot leave its directory: the base name, in a portable alphabet."""
    base = re.split(r"[/\\]", name)[-1]
    cleaned = _UNSAFE_RE.sub("_", base).lstrip(".")
    if len(cleaned) > 120:
        stem, dot, ext = cleaned.rpartition(".")
        cleaned = (stem[: 119 - len(ext)] + dot + ext) if dot and len(ext) <= 16 else cleaned[:120]
    return cleaned or "attachment"


@final
class LocalTracker:
    """The ``local`` tracker; thread-safe (one connection behind a lock), safe across processes."""

    kind: ClassVar[str] = "local"
    batch: ClassVar[int] = 1

    def __init__(
        self,
        path: str | Path,
        *,
        key_prefix: str = "LOCAL",
        integration: str = "local",
        base_url: str = "",
        read_only: bool = False,
    ) -> None:
        if not _PREFIX_RE.fullmatch(key_prefix):
            raise TrackerError(
                f"local tracker: project_key {key_prefix!r} must be a letter followed by"
                " letters, digits or '_' (at most 32)"
            )
        self.path: Final = Path(path).expanduser().absolute()
        self.key_prefix: Final = key_prefix
        self.integration: Final = integration
        self.base_url: Final = base_url
        self.read_only: Final = read_only
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._notes: list[str] = []

    @classmethod
    def from_integration(cls, integration: Integration, *, read_only: bool = False) -> LocalTracker:
        """The tracker a ``kind = "local"`` integration describes."""
        settings = integration.settings_as(LocalSettings)
        return cls(
            settings.path,
            key_prefix=settings.project_key or "LOCAL",
            integration=integration.name,
            base_url=settings.url,
            read_only=read_only,
        )

    def __enter__(self) -> LocalTracker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = ", read_only=True" if self.read_only else ""
        return f"LocalTracker({str(self.path)!r}, key_prefix={self.key_prefix!r}{mode})"

    # -- connection -------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection; the tracker reopens it if used again."""
        with self._lock:
            if self._conn is not None:
                conn, self._conn = self._conn, None
                conn.close()

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """SQLite errors become TrackerErrors; a lock held too long may pass on a replay."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            text = str(exc)
            retryable = "locked" in text or "busy" in text
            raise TrackerError(f"local tracker {self.path}: {text}", retryable=retryable) from exc
        except sqlite3.DatabaseError as exc:
            raise TrackerError(f"local tracker {self.path}: {exc}") from exc
        except OSError as exc:
            raise TrackerError(f"local tracker {self.path}: {exc}", retryable=True) from exc

    def _connection(self) -> sqlite3.Connection | None:
        """The open connection, opened on first use; ``None`` when read-only and nothing exists."""
        if self._conn is not None:
            return self._conn
        if self.read_only:
            if not self.path.is_file():
                return None
            conn = sqlite3.connect(
                self.path.as_uri() + "?mode=ro",
                uri=True,
                timeout=BUSY_TIMEOUT,
                isolation_level=None,
                check_same_thread=False,
            )
            try:
                conn.row_factory = sqlite3.Row
                version = self._prepare(conn)
            except BaseException:
                conn.close()
                raise
            if version == 0:  # another process has not written the schema yet
                conn.close()
                return None
        else:
            conn = self._writable()
        self._conn = conn
        return conn

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
        )
        conn.row_factory = sqlite3.Row
        return conn

    def _writable(self) -> sqlite3.Connection:
        """A checked connection. A file SQLite cannot read whole (a disk that lost part of it)
        is moved aside with a note and a fresh one started; either way, keys go on after the
        highest ever given out, so a key in a results file or a report never names another
        issue (issue 11, point 6)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._open()
        try:
            self._prepare(conn)
            problems = [str(row[0]) for row in conn.execute("PRAGMA quick_check") if row[0] != "ok"]
            if not problems:
                if self._highest(conn) > self._issued():
                    self._keep_issued(conn)
                return conn
        except sqlite3.OperationalError:  # locked, read-only, a full disk: not damage
            conn.close()
            raise
        except sqlite3.DatabaseError as exc:
            problems = [str(exc)]
        except BaseException:
            conn.close()
            raise
        conn.close()
        aside = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
        with contextlib.suppress(FileNotFoundError):  # another process moved it first
            os.replace(self.path, aside)
            with contextlib.suppress(FileNotFoundError):  # its log belongs to it, not the next
                os.replace(f"{self.path}-wal", f"{aside}-wal")
            Path(f"{self.path}-shm").unlink(missing_ok=True)
            self._notes.append(
                f"the local tracker database {self.path} was damaged ({problems[0]}); moved"
                f" aside to {aside.name} and a fresh one started; new keys go on after"
                f" {self.key_prefix}-{self._issued()}"
            )
        conn = self._open()
        try:
            self._prepare(conn, damaged=True)
        except BaseException:
            conn.close()
            raise
        return conn

    @property
    def _issued_path(self) -> Path:
        """The highest issue number ever given out in this file, kept beside it: the database
        may be lost or cut short, the keys it gave out live on in results and reports."""
        return self.path.with_name(f"{self.path.name}.keys")

    def _issued(self) -> int:
        try:
            return int(self._issued_path.read_text(encoding="ascii").strip() or "0")
        except (OSError, ValueError):  # none yet (or unreadable): the database's own count
            return 0

    @staticmethod
    def _highest(conn: sqlite3.Connection) -> int:
        return int(conn.execute("SELECT COALESCE(MAX(id), 0) FROM issues").fetchone()[0])

    def _keep_issued(self, conn: sqlite3.Connection) -> None:
        """Mark the database's highest number when it knows more than the mark (a file from
        before the mark existed); in a write transaction, so the mark never goes down."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            highest = self._highest(conn)
            if highest > self._issued():
                write_atomic(self._issued_path, str(highest))
        finally:
            conn.execute("COMMIT")

    def take_notes(self) -> list[str]:
        """What happened to the database itself (moved aside, found empty), said once."""
        notes, self._notes = self._notes, []
        return notes

    @staticmethod
    def _enable_wal(conn: sqlite3.Connection) -> None:
        """Switch to WAL, retrying: SQLite answers "locked" at once here, without waiting.

        Two processes opening a new file together both try to switch it (found by the
        cross-process test); the busy timeout does not cover this pragma.
        """
        deadline = time.monotonic() + BUSY_TIMEOUT
        pause = 0.005
        while True:
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                text = str(exc)
                if ("locked" not in text and "busy" not in text) or time.monotonic() > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 0.1)

    def _prepare(self, conn: sqlite3.Connection, *, damaged: bool = False) -> int:
        """Set the pragmas and create the schema; returns the schema version found. A schema
        created where keys had been given out (an emptied or deleted file) is said once, unless
        ``damaged`` said it already."""
        if not self.read_only:
            self._enable_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version == 0 and not self.read_only:
            conn.execute("BEGIN IMMEDIATE")
            try:
                # Another process may have created it while we waited for the lock.
                version = int(conn.execute("PRAGMA user_version").fetchone()[0])
                if version == 0:
                    for statement in _SCHEMA:
                        conn.execute(statement)
                    version = SCHEMA_VERSION
                    issued = self._issued()
                    if issued and not damaged:
                        self._notes.append(
                            f"the local tracker database {self.path} was empty or missing,"
                            " though it had given out keys; a fresh one started and new keys"
                            f" go on after {self.key_prefix}-{issued}"
                        )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        if version > SCHEMA_VERSION:
            raise TrackerError(
                f"local tracker {self.path}: schema version {version} is newer than this"
                f" rp-bts understands ({SCHEMA_VERSION}); upgrade pytest-rp-bts"
            )
        return version

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[sqlite3.Connection | None]:
        """One transaction under the lock; IMMEDIATE for writes so check-then-insert is atomic."""
        with self._lock, self._errors():
            if write and self.read_only:
                raise TrackerError(f"local tracker {self.path}: opened read-only (dry run)")
            conn = self._connection()
            if conn is None:
                yield None
                return
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextmanager
    def _writer(self) -> Iterator[sqlite3.Connection]:
        with self._transaction(write=True) as conn:
            assert conn is not None  # writable connections always exist
            yield conn

    # -- helpers ----------------------------------------------------------------------------

    def url(self, key: str) -> str:
        """A stable address for the issue: under ``base_url`` when one is set."""
        if self.base_url:
            return f"{self.base_url.rstrip('/')}/{key}"
        return f"local:{key}"

    def parse_key(self, key_or_url: str) -> str:
        """The key in ``LOCAL-3``, ``local:LOCAL-3`` or ``<base_url>/LOCAL-3``."""
        text = key_or_url.strip()
        match = _KEY_RE.search(text)
        if match is None:
            raise UnknownIssue(f"not a local issue key or URL: {key_or_url!r}")
        return match.group(1)

    def _issue(self, row: sqlite3.Row) -> LocalIssue:
        return LocalIssue(
            key=row["key"],
            integration=row["integration"],
            fingerprint=row["fingerprint"],
            summary=row["summary"],
            description=row["description"],
            issue_type=row["issue_type"],
            labels=tuple(json.loads(row["labels"])),
            fields=json.loads(row["fields"]),
            status=row["status"],
            created=row["created"],
            updated=row["updated"],
            relates_to=row["relates_to"],
            comments=int(row["comments"]),
            url=self.url(row["key"]),
        )

    def _row(self, conn: sqlite3.Connection | None, key_or_url: str) -> LocalIssue:
        key = self.parse_key(key_or_url)
        row = None
        if conn is not None:
            sql = f"SELECT {_ISSUE_COLUMNS} FROM issues WHERE key = ?"
            row = conn.execute(sql, (key,)).fetchone()
        if row is None:
            raise UnknownIssue(f"no issue {key} in {self.path}")
        return self._issue(row)

    def _open_issue(self, conn: sqlite3.Connection, fingerprint: str) -> LocalIssue | None:
        sql = f"SELECT {_ISSUE_COLUMNS} FROM issues WHERE fingerprint = ? AND status != 'Closed'"
        row = conn.execute(sql, (fingerprint,)).fetchone()
        return None if row is None else self._issue(row)

    def _set_status(self, key_or_url: str, status: str, *, only_from: str | None) -> LocalIssue:
        with self._writer() as conn:
            issue = self._row(conn, key_or_url)
            if only_from is not None and issue.status != only_from:
                return issue
            if issue.status == status:
                return issue
            try:
                conn.execute(
                    "UPDATE issues SET status = ?, updated = ? WHERE key = ?",
                    (status, _now(), issue.key),
                )
            except sqlite3.IntegrityError:
                other = self._open_issue(conn, issue.fingerprint)
                raise TrackerError(
                    f"cannot reopen {issue.key}: {other.key if other else 'another issue'}"
                    " is open for the same failure"
                ) from None
            return self._row(conn, issue.key)

    # -- Tracker protocol -------------------------------------------------------------------

    def find(
        self, fingerprints: Sequence[str], known: Mapping[str, Sequence[str]] | None = None
    ) -> Mapping[str, RemoteIssue]:
        """The newest issue per fingerprint, open ones first, in one query (never stale)."""
        wanted = sorted({fp for fp in fingerprints if fp})
        if not wanted:
            return {}
        # json_each binds the whole list as one parameter: no host-parameter limit to split on.
        sql = f"""
            SELECT * FROM (
                SELECT {_ISSUE_COLUMNS}, ROW_NUMBER() OVER (
                    PARTITION BY fingerprint ORDER BY status = 'Closed', id DESC
                ) AS rank
                FROM issues
                WHERE fingerprint IN (SELECT value FROM json_each(?))
            ) WHERE rank = 1
        """
        with self._transaction(write=False) as conn:
            if conn is None:
                return {}
            rows = conn.execute(sql, (json.dumps(wanted),)).fetchall()
        return {row["fingerprint"]: self._issue(row).remote() for row in rows}

    def get(self, key: str) -> RemoteIssue:
        """One issue by key or URL."""
        with self._transaction(write=False) as conn:
            return self._row(conn, key).remote()

    def create(self, draft: IssueDraft) -> RemoteIssue:
        """File the draft, unless an issue for its fingerprint is open (then ``existed=True``)."""
        return create_one(self, draft)

    def create_many(
        self, drafts: Sequence[IssueDraft], *, look_first: bool = True
    ) -> list[RemoteIssue | TrackerError]:
        """One by one: SQLite has no round trip to save, and each insert checks in its
        transaction whatever ``look_first`` says."""
        answers: list[RemoteIssue | TrackerError] = []
        for draft in drafts:
            try:
                answers.append(self._insert(draft))
            except TrackerError as exc:
                answers.append(exc)
        return answers

    def complete(self, key: str, draft: IssueDraft) -> None:
        """The draft's files, but those the issue has already (a replay of a run killed while
        it attached them) are not added twice."""
        with self._transaction(write=False) as conn:
            rows = (
                ()
                if conn is None
                else conn.execute(
                    "SELECT name FROM attachments WHERE issue_key = ? AND comment_id IS NULL",
                    (key,),
                )
            )
            have = {row[0] for row in rows}
        files = [f for f in draft.attachments if (f.name or Path(f.path).name) not in have]
        self._attach(key, files, comment_id=None)

    def _insert(self, draft: IssueDraft) -> RemoteIssue:
        now = _now()
        with self._writer() as conn:
            existing = self._open_issue(conn, draft.fingerprint)
            if existing is not None:
                return existing.remote(existed=True)
            # past every key ever given out, and marked so before the insert commits
            number = max(self._issued(), self._highest(conn)) + 1
            write_atomic(self._issued_path, str(number))
            key = f"{self.key_prefix}-{number}"
            try:
                conn.execute(
                    "INSERT INTO issues (id, key, integration, fingerprint, summary, description,"
                    " issue_type, labels, fields, status, created, updated, relates_to)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'Open', ?, ?, ?)",
                    (
                        number,
                        key,
                        self.integration,
                        draft.fingerprint,
                        draft.summary,
                        draft.body.plain((run_marker(draft.run_id),) if draft.run_id else ()),
                        draft.issue_type,
                        json.dumps(list(draft.labels)),
                        json.dumps(dict(draft.fields), default=str, sort_keys=True),
                        now,
                        now,
                        draft.relates_to,
                    ),
                )
            except sqlite3.IntegrityError:  # pragma: no cover - BEGIN IMMEDIATE prevents it
                existing = self._open_issue(conn, draft.fingerprint)
                if existing is None:
                    raise
                return existing.remote(existed=True)
            return self._row(conn, key).remote()

    def comment(self, key: str, comment: CommentDraft) -> bool:
        """Add the run's comment once, and the labels the issue lacks; ``False`` when this run
        already commented."""
        with self._writer() as conn:
            issue = self._row(conn, key)
            labels = list(dict.fromkeys([*issue.labels, *comment.labels]))
            if len(labels) > len(issue.labels):
                conn.execute(
                    "UPDATE issues SET labels = ?, updated = ? WHERE key = ?",
                    (json.dumps(labels), _now(), issue.key),
                )
            cursor = conn.execute(
                "INSERT OR IGNORE INTO comments (issue_key, run_id, body, created)"
                " VALUES (?, ?, ?, ?)",
                (issue.key, comment.run_id, comment.body.plain(), _now()),
            )
            if cursor.rowcount == 0:
                return False
            comment_id = cursor.lastrowid
            conn.execute("UPDATE issues SET updated = ? WHERE key = ?", (_now(), issue.key))
        self._attach(issue.key, comment.attachments, comment_id=comment_id)
        return True

    def reopen(self, key: str) -> RemoteIssue:
        """Closed becomes Reopened; an issue already open is returned as it is."""
        return self._set_status(key, "Reopened", only_from="Closed").remote()

    # -- attachments ------------------------------------------------------------------------

    def _attach(self, key: str, files: Sequence[AttachmentFile], *, comment_id: int | None) -> None:
        """Copy each file beside the database; a file that cannot be copied is logged and skipped.

        The copy goes to a temporary name first and is renamed inside a short transaction, so
        the write lock is never held while a big file streams.
        """
        if not files:
            return
        key_dir = self.path.parent / "attachments" / key
        for item in files:
            try:
                self._attach_one(key, key_dir, item, comment_id)
            except (OSError, TrackerError) as exc:
                logger.warning(
                    "local tracker: attachment %r of %s skipped: %s", item.name, key, exc
                )

    def _attach_one(
        self, key: str, key_dir: Path, item: AttachmentFile, comment_id: int | None
    ) -> None:
        with open(item.path, "rb") as source:
            key_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=key_dir, prefix=".incoming-")
            tmp = Path(tmp_name)
            try:
                with os.fdopen(fd, "wb") as target:
                    shutil.copyfileobj(source, target, _COPY_CHUNK)
                    size = target.tell()
                name = item.name or Path(item.path).name
                with self._writer() as conn:
                    cursor = conn.execute(
                        "INSERT INTO attachments (issue_key, comment_id, name, mime, size, path)"
                        " VALUES (?, ?, ?, ?, ?, '')",
                        (key, comment_id, name, item.mime, size),
                    )
                    relative = f"attachments/{key}/{cursor.lastrowid}-{safe_name(name)}"
                    conn.execute(
                        "UPDATE attachments SET path = ? WHERE id = ?",
                        (relative, cursor.lastrowid),
                    )
                    os.replace(tmp, self.path.parent / relative)
            finally:
                tmp.unlink(missing_ok=True)

    # -- administration (rp-bts issues) ---------------------------------------------------

    def list_issues(
        self, status: str | None = None, *, integration: str | None = None
    ) -> list[LocalIssue]:
        """Issues in filing order; ``status`` is ``open``, ``closed``, ``all`` or a status name."""
        where: list[str] = []
        params: list[str] = []
        wanted = (status or "all").lower()
        if wanted == "open":
            where.append("status != 'Closed'")
        elif wanted != "all":
            names = {s.lower(): s for s in _STATUSES}
            if wanted not in names:
                raise ValueError(f"unknown status {status!r}: use open, closed or all")
            where.append("status = ?")
            params.append(names[wanted])
        if integration is not None:
            where.append("integration = ?")
            params.append(integration)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        with self._transaction(write=False) as conn:
            if conn is None:
                return []
            rows = conn.execute(f"SELECT {_ISSUE_COLUMNS} FROM issues{clause} ORDER BY id", params)
            return [self._issue(row) for row in rows]

    def show(self, key: str) -> IssueDetails:
        """The issue with its comments and attachments, read in one snapshot."""
        with self._transaction(write=False) as conn:
            issue = self._row(conn, key)
            assert conn is not None  # _row raised otherwise
            comments = tuple(
                LocalComment(row["id"], row["run_id"], row["body"], row["created"])
                for row in conn.execute(
                    "SELECT id, run_id, body, created FROM comments WHERE issue_key = ?"
                    " ORDER BY id",
                    (issue.key,),
                )
            )
            attachments = tuple(
                LocalAttachment(
                    id=row["id"],
                    name=row["name"],
                    mime=row["mime"],
                    size=row["size"],
                    path=str(self.path.parent / row["path"]),
                    comment_id=row["comment_id"],
                )
                for row in conn.execute(
                    "SELECT id, comment_id, name, mime, size, path FROM attachments"
                    " WHERE issue_key = ? ORDER BY id",
                    (issue.key,),
                )
            )
        return IssueDetails(issue, comments, attachments)

    def resolve(self, key: str) -> RemoteIssue:
        """``on_pass = "resolve"``: Closed, as ``rp-bts issues close`` does."""
        return self.close_issue(key).remote()

    def close_issue(self, key: str) -> LocalIssue:
        """Mark the issue Closed (the next failure files anew or reopens, per ``on_closed``)."""
        return self._set_status(key, "Closed", only_from=None)


if TYPE_CHECKING:

    def _conforms(tracker: LocalTracker) -> Tracker:
        return tracker

    def _resolves(tracker: LocalTracker) -> Resolves:
        return tracker


def check_connection(integration: Integration, options: CheckOptions) -> CheckResult:
    """The local tracker works when its database can be opened (or created) for writing."""
    tracker = LocalTracker.from_integration(integration)
    try:
        count = len(tracker.list_issues("all"))
    except TrackerError as exc:
        hint = "check that the folder exists and is writable"
        return CheckResult(False, f"cannot open {tracker.path}: {exc}", (hint,))
    finally:
        tracker.close()
    return CheckResult(True, f"local tracker {tracker.path}: {count} issue(s)")
