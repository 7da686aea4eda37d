"""The record of runs: streaks of passing runs per open issue, flaky tests, pruning."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from rp_bts_agent.history import History
from rp_bts_agent.model import IssueRef, TestResult


def failed(nodeid: str, key: str = "LOCAL-1") -> TestResult:
    ref = IssueRef("local", key, action="created")
    return TestResult(nodeid, "failed", fingerprint="rpbts2-a", issues=(ref,))


def passed(nodeid: str) -> TestResult:
    return TestResult(nodeid, "passed")


def test_an_issue_is_due_when_all_its_tests_passed_in_a_row(tmp_path: Path) -> None:
    history = History(tmp_path / "history.db")
    assert history.watched() == frozenset()  # no file: nothing read, nothing created
    assert not history.path.exists()
    history.record("r1", [failed("t.py::a"), failed("t.py::b")], runs=2)
    assert history.watched() == {"t.py::a", "t.py::b"}
    assert history.record("r2", [passed("t.py::a")], runs=2) == []  # b did not run: waits
    assert history.record("r3", [passed("t.py::a"), passed("t.py::b")], runs=2) == []
    assert history.record("r3", [passed("t.py::a"), passed("t.py::b")], runs=2) == []  # once
    (due,) = history.record("r4", [passed("t.py::a"), passed("t.py::b")], runs=2)
    assert (due.key, due.since, due.passes, due.nodeids) == (
        "LOCAL-1",
        "r3",
        2,
        ("t.py::a", "t.py::b"),
    )
    history.forget("local", "LOCAL-1")
    assert history.watched() == frozenset()


def test_a_failure_starts_the_count_over(tmp_path: Path) -> None:
    history = History(tmp_path / "history.db")
    history.record("r1", [failed("t.py::a")], runs=2)
    history.record("r2", [passed("t.py::a")], runs=2)
    history.record("r3", [TestResult("t.py::a", "failed", fingerprint="rpbts2-a")], runs=2)
    assert history.record("r4", [passed("t.py::a")], runs=2) == []
    (due,) = history.record("r5", [passed("t.py::a")], runs=2)
    assert due.since == "r4"


def test_flaky_and_pruning(tmp_path: Path) -> None:
    history = History(tmp_path / "history.db")
    history.record("r1", [failed("t.py::a")], runs=9)
    history.record("r2", [passed("t.py::a")], runs=9)
    assert history.flaky([("t.py::a", "rpbts2-a")], window=5) == {"t.py::a"}
    assert history.flaky([("t.py::a", "rpbts2-other")], window=5) == set()
    for n in range(3, 10):
        history.record(f"r{n}", [], runs=9)
    assert history.flaky([("t.py::a", "rpbts2-a")], window=5) == set()  # outside the window
    history.prune(keep=4)
    with closing(sqlite3.connect(history.path)) as conn:
        assert [r for (r,) in conn.execute("SELECT run_id FROM runs ORDER BY seq")] == [
            "r6",
            "r7",
            "r8",
            "r9",
        ]
        assert list(conn.execute("SELECT * FROM outcomes")) == []
    assert history.watched() == {"t.py::a"}  # the issue still waits on its test
