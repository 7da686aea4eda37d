"""Our record of runs, kept under ``.rp-bts/``: which tests an open issue waits on, how many runs
in a row they have passed, and recent outcomes (flaky tests), pruned with the run folders.

Only what this needs is written: the failures of a run and the passes of tests that have an open
issue, so a passing suite of thousands of tests adds no rows. The plugin reads the watched tests
once at session end (:meth:`History.watched`) and hands the agent only their passing results.
"""

from __future__ import annotations

import sqlite3
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from .files import sqlite_store
from .model import TestResult

__all__ = ["Due", "History"]

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL UNIQUE,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS outcomes (
    seq INTEGER NOT NULL,
    nodeid TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    passed INTEGER NOT NULL,
    PRIMARY KEY (seq, nodeid)
);
CREATE TABLE IF NOT EXISTS watched (
    integration TEXT NOT NULL,
    key TEXT NOT NULL,
    nodeid TEXT NOT NULL,
    PRIMARY KEY (integration, key, nodeid)
);
CREATE INDEX IF NOT EXISTS watched_nodeid ON watched (nodeid);
CREATE TABLE IF NOT EXISTS streaks (
    integration TEXT NOT NULL,
    key TEXT NOT NULL,
    passes INTEGER NOT NULL DEFAULT 0,
    since TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (integration, key)
);
"""
#: what a run did to an issue that makes it wait for its tests to pass again
_WATCHING: Final = frozenset(
    ("created", "already filed", "commented", "already commented", "linked")
)


@dataclass(frozen=True, slots=True)
class Due:
    """An open issue whose every test passed in ``passes`` runs in a row, since run ``since``."""

    integration: str
    key: str
    since: str
    passes: int
    nodeids: tuple[str, ...]


class History:
    """The record at ``path``; ``read_only`` (dry-run) never creates or changes it."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only

    def _connect(self) -> AbstractContextManager[sqlite3.Connection]:
        return sqlite_store(self.path, _SCHEMA, read_only=self.read_only)

    def watched(self) -> frozenset[str]:
        """The tests an open issue waits on; no file (most projects, most runs) costs one stat."""
        if not self.path.exists():
            return frozenset()
        try:
            with self._connect() as conn:
                return frozenset(row[0] for row in conn.execute("SELECT nodeid FROM watched"))
        except sqlite3.Error:
            return frozenset()  # a damaged record loses on_pass for a run, never the run

    def flaky(self, failures: Iterable[tuple[str, str]], window: int) -> set[str]:
        """The failing tests (``(nodeid, fingerprint)``) that, within the last ``window`` runs,
        both failed with this fingerprint and passed."""
        failures = list(failures)
        if not failures or not self.path.exists():
            return set()
        found: set[str] = set()
        try:
            with self._connect() as conn:
                (last,) = conn.execute("SELECT coalesce(max(seq), 0) FROM runs").fetchone()
                for nodeid, fingerprint in failures:
                    rows = conn.execute(
                        "SELECT passed, fingerprint FROM outcomes WHERE nodeid = ? AND seq > ?",
                        (nodeid, last - window),
                    ).fetchall()
                    passed = any(p for p, _ in rows)
                    failed = any(not p and f == fingerprint for p, f in rows)
                    if passed and failed:
                        found.add(nodeid)
        except sqlite3.Error:
            return set()
        return found

    def record(self, run_id: str, results: Sequence[TestResult], runs: int) -> list[Due]:
        """Write one run: its failures and the issues they were filed under start (or restart)
        waiting; an issue whose tests all passed counts one more run. The issues whose tests have
        passed ``runs`` runs in a row are returned. A run recorded already changes nothing."""
        if self.read_only:
            return []
        with self._connect() as conn:
            if conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone():
                return []
            seq = conn.execute(
                "INSERT INTO runs (run_id, at) VALUES (?, ?)", (run_id, time.time())
            ).lastrowid
            watched = {row[0] for row in conn.execute("SELECT nodeid FROM watched")}
            passed: dict[str, bool] = {}
            for result in results:
                if result.failing:
                    passed[result.nodeid] = False
                elif result.outcome == "passed" and result.nodeid in watched:
                    passed[result.nodeid] = True
            conn.executemany(
                "INSERT OR REPLACE INTO outcomes VALUES (?, ?, ?, ?)",
                [
                    (seq, r.nodeid, r.fingerprint, int(passed[r.nodeid]))
                    for r in results
                    if r.nodeid in passed
                ],
            )
            for result in results:
                if not result.failing:
                    continue
                for ref in result.issues:
                    if ref.action in _WATCHING and ref.key:
                        conn.execute(
                            "INSERT OR IGNORE INTO watched VALUES (?, ?, ?)",
                            (ref.integration, ref.key, result.nodeid),
                        )
            return self._count(conn, passed, run_id, runs)

    @staticmethod
    def _count(
        conn: sqlite3.Connection, passed: dict[str, bool], run_id: str, runs: int
    ) -> list[Due]:
        tests: dict[tuple[str, str], list[str]] = defaultdict(list)
        for integration, key, nodeid in conn.execute("SELECT * FROM watched"):
            tests[(integration, key)].append(nodeid)
        due = []
        for (integration, key), nodeids in tests.items():
            seen = [passed[n] for n in nodeids if n in passed]
            row = conn.execute(
                "SELECT passes, since FROM streaks WHERE integration = ? AND key = ?",
                (integration, key),
            ).fetchone()
            passes, since = row if row else (0, "")
            if not all(seen):
                passes, since = 0, ""
            elif len(seen) == len(nodeids):  # every test ran and passed
                passes, since = passes + 1, since or run_id
            # else: some of its tests did not run; the streak waits for them
            conn.execute(
                "INSERT OR REPLACE INTO streaks VALUES (?, ?, ?, ?)",
                (integration, key, passes, since),
            )
            if passes >= runs:
                due.append(Due(integration, key, since, passes, tuple(sorted(nodeids))))
        return due

    def forget(self, integration: str, key: str) -> None:
        """The issue no longer waits on its tests (resolved, or told that they pass)."""
        if self.read_only:
            return
        with self._connect() as conn:
            for table in ("watched", "streaks"):
                conn.execute(
                    f"DELETE FROM {table} WHERE integration = ? AND key = ?", (integration, key)
                )

    def prune(self, keep: int) -> None:
        """Outcomes of all but the last ``keep`` runs go, as their run folders do."""
        if self.read_only or not self.path.exists():
            return
        with self._connect() as conn:
            conn.execute("DELETE FROM runs WHERE seq <= (SELECT max(seq) FROM runs) - ?", (keep,))
            conn.execute("DELETE FROM outcomes WHERE seq NOT IN (SELECT seq FROM runs)")
