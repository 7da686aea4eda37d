"""Known issues kept between runs under ``.rp-bts/``: what ``rp-bts sync`` learned, and what
the runs that linked failures to them did.

Two sources write records. A tracker's sync *pulls* issues (Clarity items matching the sync's
expression): a pulled record carries the test ids and fingerprints its mapped fields hold, so
the pipeline links those tests' future failures to it instead of filing (Plutora saves Clarity
items into its own records; these are ours). And every issue a run linked or filed, ``issue``
markers included, is kept as a *link* record whose status the sync refreshes, so a run that
cannot ask its tracker still shows the status of the last sync.

A run that links a failure to a pulled record notes it here (the run, the test, the time): the
sync's push writes that back to the tracker. SQLite, as the other stores: the sync and a test
run may write at the same moment.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sqlite3
import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from .files import sqlite_store

__all__ = ["KnownRecord", "KnownStore", "base_nodeid"]

Source = Literal["pull", "link"]
log = logging.getLogger("rp_bts_agent")

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS known (
    integration TEXT NOT NULL,
    key TEXT NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (integration, key)
)
"""


def base_nodeid(nodeid: str) -> str:
    """A node id without its parameters: ``t.py::test_a[1]`` -> ``t.py::test_a``."""
    return nodeid.split("[", 1)[0]


@dataclass(frozen=True, slots=True)
class KnownRecord:
    integration: str
    key: str
    url: str = ""
    status: str = ""
    closed: bool = False
    source: Source = "link"
    #: for pulled records: the tracker's project, the issue's own id, and what its mapped
    #: fields hold (our field -> the tracker's value)
    project: str = ""
    issue_id: str = ""
    tests: tuple[str, ...] = ()
    fingerprints: tuple[str, ...] = ()
    remote: Mapping[str, Any] = field(default_factory=dict)
    #: what runs did since the last push: their ids, the tests, the last failure (ISO time)
    pending: tuple[str, ...] = ()
    hit_tests: tuple[str, ...] = ()
    last_failure: str = ""
    synced: float = 0.0

    def links(self, nodeid: str, fingerprint: str) -> bool:
        """Whether a failure of this test, with this fingerprint, is this issue's."""
        return (bool(fingerprint) and fingerprint in self.fingerprints) or bool(
            {nodeid, base_nodeid(nodeid)} & set(self.tests)
        )

    def as_json(self) -> str:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        data["remote"] = dict(self.remote)
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> KnownRecord:
        data = json.loads(text)
        for name in ("tests", "fingerprints", "pending", "hit_tests"):
            data[name] = tuple(data.get(name) or ())
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in known})


class KnownStore:
    """``(integration, key) -> KnownRecord``; ``read_only`` (dry-run) never creates the file."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only

    def _connect(self) -> AbstractContextManager[sqlite3.Connection]:
        return sqlite_store(self.path, _SCHEMA, read_only=self.read_only)

    def records(self, integration: str = "") -> list[KnownRecord]:
        """Every record (of one integration), open before closed."""
        if not self.path.exists():
            return []
        query = "SELECT record FROM known" + (" WHERE integration = ?" if integration else "")
        args = (integration,) if integration else ()
        try:
            with self._connect() as conn:
                rows = conn.execute(query + " ORDER BY integration, key", args).fetchall()
        except sqlite3.Error:
            return []  # a damaged store loses known issues, never the run
        found = [KnownRecord.from_json(row[0]) for row in rows]
        return sorted(found, key=lambda r: r.closed)

    def get(self, integration: str, key: str) -> KnownRecord | None:
        for record in self.records(integration):
            if record.key == key:
                return record
        return None

    def _put(self, conn: sqlite3.Connection, record: KnownRecord) -> None:
        conn.execute(
            "INSERT OR REPLACE INTO known VALUES (?, ?, ?)",
            (record.integration, record.key, record.as_json()),
        )

    def _load(self, conn: sqlite3.Connection, integration: str, key: str) -> KnownRecord | None:
        row = conn.execute(
            "SELECT record FROM known WHERE integration = ? AND key = ?", (integration, key)
        ).fetchone()
        return KnownRecord.from_json(row[0]) if row else None

    def pulled(self, integration: str, project: str, records: Sequence[KnownRecord]) -> list[str]:
        """A project's pull: its records replaced (what runs noted since the last push is
        kept), those that no longer match dropped. Answers the status changes seen."""
        changes = []
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT record FROM known WHERE integration = ?", (integration,)
            ).fetchall()
            before = {r.key: r for r in (KnownRecord.from_json(row[0]) for row in rows)}
            for record in records:
                old = before.pop(record.key, None)
                if old is not None:
                    if old.status and old.status != record.status:
                        changes.append(f"{record.key} {old.status} -> {record.status}")
                    record = _keep_noted(record, old)
                self._put(conn, record)
            for old in before.values():
                if old.source == "pull" and old.project == project:
                    conn.execute(
                        "DELETE FROM known WHERE integration = ? AND key = ?",
                        (integration, old.key),
                    )
        return changes

    def linked(self, integration: str, key: str, url: str, status: str) -> None:
        """An issue a run filed or linked: kept for its status (a pulled one stays as it is)."""
        if self.read_only or not key:
            return
        with self._connect() as conn:
            if self._load(conn, integration, key) is None:
                self._put(conn, KnownRecord(integration, key, url, status, synced=time.time()))

    def status(self, integration: str, key: str, status: str, closed: bool) -> str:
        """A refreshed status; answers the change (``"Open -> Closed"``) or ``""``."""
        with self._connect() as conn:
            old = self._load(conn, integration, key)
            if old is None:
                return ""
            self._put(
                conn, dataclasses.replace(old, status=status, closed=closed, synced=time.time())
            )
        return f"{old.status} -> {status}" if old.status and old.status != status else ""

    def hit(self, record: KnownRecord, nodeid: str, run_id: str) -> None:
        """A run linked a failure of ``nodeid`` to a pulled issue: noted for the push."""
        if self.read_only:
            return
        when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        try:
            with self._connect() as conn:
                old = self._load(conn, record.integration, record.key) or record
                pending = old.pending if run_id in old.pending else (*old.pending, run_id)
                tests = old.hit_tests if nodeid in old.hit_tests else (*old.hit_tests, nodeid)
                noted = dataclasses.replace(
                    old, pending=pending, hit_tests=tests, last_failure=when
                )
                self._put(conn, noted)
        except (sqlite3.Error, OSError) as exc:  # the run goes on; only the push misses it
            log.warning("%s: known issue %s not noted for the push: %s", self.path, record.key, exc)

    def pushed(self, record: KnownRecord, remote: Mapping[str, Any]) -> None:
        """The push wrote ``remote`` to the tracker: nothing is pending any more."""
        with self._connect() as conn:
            old = self._load(conn, record.integration, record.key) or record
            merged = {**old.remote, **remote}
            self._put(conn, dataclasses.replace(old, remote=merged, pending=(), hit_tests=()))


def _keep_noted(new: KnownRecord, old: KnownRecord) -> KnownRecord:
    return dataclasses.replace(
        new, pending=old.pending, hit_tests=old.hit_tests, last_failure=old.last_failure
    )
