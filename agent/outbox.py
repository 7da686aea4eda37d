"""Tracker work not done yet, kept under ``.rp-bts/outbox.db`` for ``rp-bts flush``.

A run records its groups before it sends anything and, at its end, keeps only what a tracker
did not take; so a run that is killed half way loses nothing either.

What is kept is the group of failures itself, not the HTTP calls: replaying means running the
pipeline on it again, which looks the fingerprint up before it creates and comments once per run,
so a replay never files twice, however often it runs.

Several runs and flushes share one folder (parallel CI jobs on one machine, issue 11): every
entry has an owner and a lease (an expiry the owner renews while it works). A process files a
fingerprint only while it holds the one *active* entry for it, taken in one transaction, so two
processes never file one fingerprint at once; a replay takes only entries whose lease expired
(or whose owner, on this machine, is gone). Each tracker request renews the lease too, so the
lease of an owner that was killed tells when its last request left: a replay waits for what the
tracker may still commit of it (``replay``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from .model import Launch, RunResults, TestResult, result_from_json, result_to_json

__all__ = ["LEASE_SECONDS", "SENDING_RENEWAL", "Entry", "Lease", "Outbox", "settings_digest"]

#: how long an entry stays its owner's without a renewal; a live owner renews it every quarter
LEASE_SECONDS = 60.0
#: a lease is renewed before a tracker request at most this often (seconds)
SENDING_RENEWAL = 1.0

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS pending (
    run_id TEXT NOT NULL,
    integration TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    launch TEXT NOT NULL,
    results TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    error TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    updated REAL NOT NULL,
    owner TEXT NOT NULL DEFAULT '',
    lease REAL NOT NULL DEFAULT 0,
    active INTEGER NOT NULL DEFAULT 0,
    refused_with TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (run_id, integration, fingerprint)
)
"""
#: columns added since the first outbox (an older file gains them on first use)
_ADDED: Final = (
    ("owner", "TEXT NOT NULL DEFAULT ''"),
    ("lease", "REAL NOT NULL DEFAULT 0"),
    ("active", "INTEGER NOT NULL DEFAULT 0"),
    ("refused_with", "TEXT NOT NULL DEFAULT ''"),
)

_UPSERT: Final = (
    "INSERT INTO pending (run_id, integration, fingerprint, launch, results, error, state,"
    " updated, owner, lease, refused_with) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT DO UPDATE SET results = excluded.results, error = excluded.error,"
    " state = excluded.state, updated = excluded.updated, owner = excluded.owner,"
    " lease = excluded.lease, active = 0, refused_with = excluded.refused_with,"
    " attempts = attempts + (excluded.state != 'pending' OR excluded.error != '')"
)
_KEY: Final = "run_id = ? AND integration = ? AND fingerprint = ?"
_COLUMNS: Final = "rowid, run_id, integration, fingerprint, launch, results, attempts, error, state"

Key = tuple[str, str]  # (integration, fingerprint)


def settings_digest(settings: object) -> str:
    """What an integration's configuration was when a tracker refused an entry: a refusal
    (a wrong token, a missing project) is tried again once this changes (issue 12)."""
    return hashlib.sha256(repr(settings).encode("utf-8", "surrogatepass")).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Entry:
    run_id: str
    integration: str
    fingerprint: str
    launch: Launch
    results: tuple[TestResult, ...]
    attempts: int
    error: str
    #: the row's id, for ``rp-bts flush --drop``
    id: int = 0
    state: str = "pending"
    #: when the process that held it, killed less than a lease ago, last sent to its tracker
    #: (0: none such); requests it sent may still be landing (see :meth:`Lease.sending`)
    last_sent: float = 0.0


def _host_pid(owner: str) -> tuple[str, int]:
    host, _, rest = owner.rpartition("@")
    pid = rest.split(":", 1)[0]
    return host, int(pid) if pid.isdigit() else 0


def _gone(owner: str) -> bool:
    """An owner on this machine whose process has ended holds nothing, whatever its lease."""
    host, pid = _host_pid(owner)
    if host != socket.gethostname() or pid <= 0:
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # another user's process: alive
        return False
    return False


class Lease:
    """One process's claim on the entries it works on, renewed by a thread until closed."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.owner = f"{socket.gethostname()}@{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._renewed = 0.0

    def __enter__(self) -> Lease:
        self._thread = threading.Thread(target=self._renew, name="rp-bts-lease", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with contextlib.suppress(sqlite3.Error, OSError):
            self.outbox.release_all(self.owner)

    def _renew(self) -> None:
        while not self._stop.wait(LEASE_SECONDS / 4):
            with contextlib.suppress(sqlite3.Error, OSError):  # the next renewal tries again
                self.outbox.renew(self.owner)

    def sending(self) -> None:
        """A tracker request is about to go out: the lease is renewed (at most once every
        :data:`SENDING_RENEWAL` s), so if this process is killed the lease tells a replay how
        recently its requests left, which the tracker may still commit after the kill."""
        with self._lock:
            now = time.monotonic()
            if now - self._renewed < SENDING_RENEWAL:
                return
            self._renewed = now
        with contextlib.suppress(sqlite3.Error, OSError):  # the renewal thread tries again
            self.outbox.renew(self.owner)


class Outbox:
    def __init__(self, path: Path) -> None:
        self.path = path
        #: what happened to the file itself (a corrupt one moved aside), for the caller to say
        self.notes: list[str] = []

    def _open(self) -> sqlite3.Connection:
        """A connection with the schema in place. A file that is not a database (a disk that
        lost half of it) is moved aside with a note and a fresh one started: the work it held
        is lost to the replay, but nothing after it is (issue 11, point 6)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        try:
            self._schema(conn)
        except sqlite3.OperationalError:  # locked, read-only, a full disk: not corrupt
            conn.close()
            raise
        except sqlite3.DatabaseError as exc:
            conn.close()
            aside = self.path.with_name(
                f"{self.path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}"
            )
            with contextlib.suppress(FileNotFoundError):  # another process moved it first
                os.replace(self.path, aside)
                self.notes.append(
                    f"the outbox {self.path} could not be read ({exc}); moved aside to"
                    f" {aside.name} and a fresh one started"
                )
            conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            self._schema(conn)
        return conn

    @staticmethod
    def _schema(conn: sqlite3.Connection) -> None:
        # a row whose text is not UTF-8 is set aside, not a failure of every row
        conn.text_factory = lambda raw: raw.decode("utf-8", "surrogateescape")
        conn.execute(_SCHEMA)
        have = {row[1] for row in conn.execute("PRAGMA table_info(pending)")}
        for name, kind in _ADDED:
            if name not in have:
                conn.execute(f"ALTER TABLE pending ADD COLUMN {name} {kind}")

    @contextmanager
    def _connect(self, *, immediate: bool = False) -> Iterator[sqlite3.Connection]:
        """A connection; ``immediate`` takes the write lock first, so what it reads is still
        true when it writes (a claim)."""
        with closing(self._open()) as conn:
            conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def lease(self) -> Lease:
        return Lease(self)

    # -- a run's own work ------------------------------------------------------------------

    def begin(
        self, launch: Launch, groups: Iterable[tuple[str, Sequence[TestResult]]], owner: str
    ) -> None:
        """Record a run's groups before anything is sent, held by ``owner``: a run killed half
        way leaves them, and once its lease runs out the next run or ``rp-bts flush`` sends
        them (issue 6, point 1)."""
        expiry = time.time() + LEASE_SECONDS
        rows = [
            self._row(launch, n, r, "", "pending", owner=owner, lease=expiry) for n, r in groups
        ]
        with self._connect() as conn:
            conn.executemany(_UPSERT, rows)

    def acquire(self, owner: str, run_id: str, wanted: Iterable[Key]) -> set[Key]:
        """Make ``owner`` the one filing these groups of its run, in one transaction: those no
        other live owner is filing now (the others are asked for again later)."""
        wanted = set(wanted)
        now = time.time()
        with self._connect(immediate=True) as conn:
            busy: set[Key] = set()
            for integration, fingerprint, other, lease in conn.execute(
                "SELECT integration, fingerprint, owner, lease FROM pending"
                " WHERE active = 1 AND owner != ?",
                (owner,),
            ):
                if lease >= now and not _gone(other):
                    busy.add((integration, fingerprint))
            got = {key for key in wanted - busy}
            conn.executemany(
                f"UPDATE pending SET active = 1, owner = ?, lease = ? WHERE {_KEY}",
                [(owner, now + LEASE_SECONDS, run_id, *key) for key in got],
            )
        return got

    def release(
        self,
        owner: str,
        launch: Launch,
        done: Iterable[Key],
        kept: Iterable[tuple[str, Sequence[TestResult], str, str, str]],
    ) -> None:
        """A round is over: ``done`` groups leave, those ``kept`` (integration, results, error,
        state, refused_with) stay for anyone to replay, in one transaction."""
        with self._connect() as conn:
            conn.executemany(
                f"DELETE FROM pending WHERE {_KEY} AND owner = ?",
                [(launch.run_id, *key, owner) for key in done],
            )
            conn.executemany(
                _UPSERT, [self._row(launch, *item, owner="", lease=0.0) for item in kept]
            )

    def renew(self, owner: str) -> None:
        with self._connect() as conn:
            conn.execute(
                "UPDATE pending SET lease = ? WHERE owner = ?", (time.time() + LEASE_SECONDS, owner)
            )

    def release_all(self, owner: str) -> None:
        """Whatever ``owner`` still holds is anyone's to replay (its work ended early)."""
        with self._connect() as conn:
            conn.execute(
                "UPDATE pending SET owner = '', lease = 0, active = 0 WHERE owner = ?", (owner,)
            )

    @staticmethod
    def _row(
        launch: Launch,
        integration: str,
        results: Sequence[TestResult],
        error: str,
        state: str,
        refused_with: str = "",
        *,
        owner: str,
        lease: float,
    ) -> tuple[str, str, str, str, str, str, str, float, str, float, str]:
        launch_json = json.dumps(RunResults(launch, ()).to_json()["launch"])
        rows = json.dumps([result_to_json(r) for r in results])
        return (
            launch.run_id,
            integration,
            results[0].fingerprint,
            launch_json,
            rows,
            error,
            state,
            time.time(),
            owner,
            lease,
            refused_with,
        )

    # -- replaying what others left --------------------------------------------------------

    def claim(self, owner: str, digests: Mapping[str, str]) -> list[Entry]:
        """Take every entry nobody holds (no lease, an expired one, or an owner gone) for a
        replay, in one transaction. A refused entry comes back once its integration's
        configuration differs from the one it was refused with (``digests``: name -> now)."""
        now = time.time()
        with self._connect(immediate=True) as conn:
            for rowid, integration, refused in conn.execute(
                "SELECT rowid, integration, refused_with FROM pending WHERE state = 'failed'"
                " AND refused_with != ''"
            ).fetchall():
                if digests.get(integration, refused) != refused:
                    conn.execute(
                        "UPDATE pending SET state = 'pending', refused_with = '' WHERE rowid = ?",
                        (rowid,),
                    )
            #: rowid -> when its killed owner last sent (0: an owner long gone, or none)
            taken: dict[int, float] = {}
            for rowid, other, lease in conn.execute(
                "SELECT rowid, owner, lease FROM pending WHERE state = 'pending'"
            ).fetchall():
                if other == owner or not other or lease < now:
                    taken[rowid] = 0.0
                elif _gone(other):
                    taken[rowid] = lease - LEASE_SECONDS
            conn.executemany(
                "UPDATE pending SET owner = ?, lease = ?, active = 0 WHERE rowid = ?",
                [(owner, now + LEASE_SECONDS, rowid) for rowid in taken],
            )
            rows = [
                conn.execute(f"SELECT {_COLUMNS} FROM pending WHERE rowid = ?", (r,)).fetchone()
                for r in taken
            ]
            return [
                dataclasses.replace(e, last_sent=taken[e.id])
                for e in self._decoded(conn, rows)
                if e.state != "bad"
            ]

    def entries(self, state: str | None = "pending") -> list[Entry]:
        """The entries in ``state`` (every one for None), oldest first; read-only."""
        if not self.path.exists():
            return []
        where, args = ("WHERE state = ?", (state,)) if state is not None else ("", ())
        with self._connect() as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM pending {where} ORDER BY updated", args
            ).fetchall()
            return [e for e in self._decoded(conn, rows) if state in (None, e.state)]

    def _decoded(self, conn: sqlite3.Connection, rows: Iterable[Sequence[Any]]) -> list[Entry]:
        """Entries from rows; a row that cannot be read (text not UTF-8, JSON broken by hand
        or by a disk) is set aside as ``bad`` with its reason and never blocks the others."""
        out: list[Entry] = []
        for (
            rowid,
            run_id,
            integration,
            fingerprint,
            launch,
            results,
            attempts,
            error,
            state,
        ) in rows:
            try:
                if state == "bad":
                    raise ValueError(error)
                for text in (run_id, integration, fingerprint, launch, results):
                    text.encode("utf-8")  # a lone surrogate: the bytes were not UTF-8
                entry = Entry(
                    run_id,
                    integration,
                    fingerprint,
                    RunResults.from_json({"launch": json.loads(launch), "results": []}).launch,
                    tuple(result_from_json(r) for r in json.loads(results)),
                    attempts,
                    error,
                    rowid,
                    state,
                )
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                reason = error if state == "bad" else f"cannot be read: {_reason(exc)}"
                if state != "bad":
                    conn.execute(
                        "UPDATE pending SET state = 'bad', error = ?, owner = '', active = 0"
                        " WHERE rowid = ?",
                        (reason, rowid),
                    )
                out.append(_unreadable(rowid, run_id, integration, fingerprint, reason))
                continue
            out.append(entry)
        return out

    # -- managing kept entries (``rp-bts flush --list/--retry-failed/--drop``) --------------

    def run_ids(self) -> set[str]:
        """The runs whose work is kept here (their folders hold the files a replay attaches)."""
        with self._connect() as conn:
            return {run_id for (run_id,) in conn.execute("SELECT DISTINCT run_id FROM pending")}

    def give_up(self, attempts: int) -> None:
        """Entries replayed this often without success are listed as failed, not retried."""
        with self._connect() as conn:
            conn.execute(
                "UPDATE pending SET state = 'failed' WHERE state = 'pending' AND attempts >= ?",
                (attempts,),
            )

    def retry_failed(self) -> int:
        with self._connect() as conn:
            return conn.execute(
                "UPDATE pending SET state = 'pending', refused_with = '', attempts = 0"
                " WHERE state = 'failed'"
            ).rowcount

    def drop(self, ids: Iterable[int] = (), *, all_failed: bool = False) -> int:
        with self._connect() as conn:
            dropped = sum(
                conn.execute(
                    "DELETE FROM pending WHERE rowid = ? AND active = 0", (rowid,)
                ).rowcount
                for rowid in ids
            )
            if all_failed:
                dropped += conn.execute(
                    "DELETE FROM pending WHERE state IN ('failed', 'bad')"
                ).rowcount
            return dropped


def _reason(exc: Exception) -> str:
    text = str(exc).encode("utf-8", "replace").decode() or type(exc).__name__
    return text if len(text) < 200 else text[:199] + "…"


def _safe(text: str) -> str:
    return text.encode("utf-8", "replace").decode()


def _unreadable(rowid: int, run_id: str, integration: str, fingerprint: str, why: str) -> Entry:
    """A bad entry as far as it can be shown (``rp-bts flush --list``), never replayed."""
    launch = Launch("", _safe(run_id))
    return Entry(
        _safe(run_id), _safe(integration), _safe(fingerprint), launch, (), 0, why, rowid, "bad"
    )
