"""Our own record of the issues this project filed, by fingerprint, kept under ``.rp-bts/``.

A tracker's search can lag behind its writes (Jira Cloud's search is eventually consistent), so
the issues we filed ourselves are the first source: their ids go with the next search
(``reconcileIssues``), and a rerun or a second CI job finds them at once.
"""

from __future__ import annotations

import sqlite3
import time
from collections import defaultdict
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Final

from .files import sqlite_store

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS filed (
    tracker TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    key TEXT NOT NULL,
    issue_id TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (tracker, fingerprint, key)
)
"""


class FiledRecord:
    """``(tracker, fingerprint) -> issue ids``; ``read_only`` (dry-run) never creates the file."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only

    def _connect(self) -> AbstractContextManager[sqlite3.Connection]:
        return sqlite_store(self.path, _SCHEMA, read_only=self.read_only)

    def lookup(self, tracker: str, fingerprints: Sequence[str]) -> dict[str, list[str]]:
        """The recorded issue ids of each fingerprint, newest first."""
        if not fingerprints or not self.path.exists():
            return {}
        marks = ",".join("?" * len(fingerprints))
        found: dict[str, list[str]] = defaultdict(list)
        try:
            with self._connect() as conn:
                rows = conn.execute(
                    f"SELECT fingerprint, issue_id FROM filed WHERE tracker = ?"
                    f" AND fingerprint IN ({marks}) ORDER BY created DESC",
                    (tracker, *fingerprints),
                ).fetchall()
        except sqlite3.Error:
            return {}  # a damaged record only loses the shortcut; the search still runs
        for fingerprint, issue_id in rows:
            found[fingerprint].append(issue_id)
        return dict(found)

    def add(self, tracker: str, fingerprint: str, key: str, issue_id: str) -> None:
        if self.read_only or not fingerprint or not issue_id:
            return
        with self._connect() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO filed VALUES (?, ?, ?, ?, ?)",
                (tracker, fingerprint, key, issue_id, time.time()),
            )
