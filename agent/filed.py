"""Our own record of the issues this project filed, by fingerprint, kept under ``.rp-bts/``.

A tracker's search can lag behind its writes (Jira Cloud's search is eventually consistent), so
the issues we filed ourselves are the first source: their ids go with the next search
(``reconcileIssues``), and a rerun or a second CI job finds them at once.
"""

from __future__ import annotations

import sqlite3
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Final

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

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        if not self.read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        uri = f"file:{self.path}?mode={'ro' if self.read_only else 'rwc'}"
        with closing(sqlite3.connect(uri, uri=True, timeout=30)) as conn:
            if not self.read_only:
                conn.execute(_SCHEMA)
            with conn:
                yield conn

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
