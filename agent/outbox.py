"""Tracker work not done yet, kept under ``.rp-bts/outbox.db`` for ``rp-bts flush``.

A run records its groups before it sends anything and, at its end, keeps only what a tracker
did not take; so a run that is killed half way loses nothing either.

What is kept is the group of failures itself, not the HTTP calls: replaying means running the
pipeline on it again, which looks the fingerprint up before it creates and comments once per run,
so a replay never files twice, however often it runs.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from .model import Launch, RunResults, TestResult, result_from_json, result_to_json

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
    PRIMARY KEY (run_id, integration, fingerprint)
)
"""


_UPSERT: Final = (
    "INSERT INTO pending (run_id, integration, fingerprint, launch, results, error, state,"
    " updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET results ="
    " excluded.results, error = excluded.error, state = excluded.state, updated = excluded.updated"
)


@dataclass(frozen=True, slots=True)
class Entry:
    run_id: str
    integration: str
    fingerprint: str
    launch: Launch
    results: tuple[TestResult, ...]
    attempts: int
    error: str


class Outbox:
    def __init__(self, path: Path) -> None:
        self.path = path

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(self.path, timeout=30)) as conn:
            conn.execute(_SCHEMA)
            with conn:
                yield conn

    def begin(self, launch: Launch, groups: Iterable[tuple[str, Sequence[TestResult]]]) -> None:
        """Record a run's groups before anything is sent: a run killed half way leaves them
        ``pending``, and the next run or ``rp-bts flush`` sends them (issue 6, point 1)."""
        with self._connect() as conn:
            conn.executemany(_UPSERT, [self._row(launch, n, r, "", "pending") for n, r in groups])

    def finish(
        self, launch: Launch, kept: Iterable[tuple[str, Sequence[TestResult], str, str]]
    ) -> None:
        """The run is over: its groups are done but those ``kept`` (integration, results, error,
        state), in one transaction."""
        with self._connect() as conn:
            conn.execute("DELETE FROM pending WHERE run_id = ?", (launch.run_id,))
            conn.executemany(_UPSERT, [self._row(launch, *item) for item in kept])

    def keep(
        self,
        launch: Launch,
        integration: str,
        results: Sequence[TestResult],
        error: str,
        state: str = "pending",
    ) -> None:
        """Keep one group (its fingerprint, in one integration) of one run: ``pending`` for a
        later replay, ``failed`` (a refusal retrying will not fix) to be listed, not retried."""
        with self._connect() as conn:
            conn.execute(_UPSERT, self._row(launch, integration, results, error, state))

    @staticmethod
    def _row(
        launch: Launch, integration: str, results: Sequence[TestResult], error: str, state: str
    ) -> tuple[str, str, str, str, str, str, str, float]:
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
        )

    def entries(self, state: str = "pending") -> list[Entry]:
        if not self.path.exists():
            return []
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT run_id, integration, fingerprint, launch, results, attempts, error"
                " FROM pending WHERE state = ? ORDER BY updated",
                (state,),
            ).fetchall()
        return [
            Entry(
                run_id,
                integration,
                fingerprint,
                RunResults.from_json({"launch": json.loads(launch), "results": []}).launch,
                tuple(result_from_json(r) for r in json.loads(results)),
                attempts,
                error,
            )
            for run_id, integration, fingerprint, launch, results, attempts, error in rows
        ]

    def settle(self, entry: Entry, state: str, error: str = "") -> None:
        """``done`` removes the entry; ``pending`` counts an attempt; ``failed`` keeps it listed."""
        key = (entry.run_id, entry.integration, entry.fingerprint)
        with self._connect() as conn:
            if state == "done":
                conn.execute(
                    "DELETE FROM pending WHERE run_id = ? AND integration = ? AND fingerprint = ?",
                    key,
                )
            else:
                conn.execute(
                    "UPDATE pending SET state = ?, error = ?, attempts = attempts + 1,"
                    " updated = ? WHERE run_id = ? AND integration = ? AND fingerprint = ?",
                    (state, error, time.time(), *key),
                )
