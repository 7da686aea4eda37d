"""The local tracker: the Tracker protocol on SQLite, admin calls, filing across processes."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from rp_bts_agent.config import build_integration
from rp_bts_agent.integrations.local.tracker import (
    SCHEMA_VERSION,
    LocalTracker,
    UnknownIssue,
    safe_name,
)
from rp_bts_agent.tracker import (
    AttachmentFile,
    Body,
    CommentDraft,
    IssueDraft,
    Section,
    Tracker,
    TrackerError,
)

BODY = Body((Section("Test", "tests/test_shop.py::test_pay"), Section("Traceback", "boom", True)))


def draft(fingerprint: str = "fp-1", **kwargs: Any) -> IssueDraft:
    return IssueDraft(summary=f"fails: {fingerprint}", body=BODY, fingerprint=fingerprint, **kwargs)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "project" / ".rp-bts" / "tracker.db"


@pytest.fixture
def tracker(db: Path) -> Iterator[LocalTracker]:
    with LocalTracker(db) as tracker:
        yield tracker


def test_is_a_tracker(tracker: LocalTracker) -> None:
    conforming: Tracker = tracker
    assert conforming.kind == "local"


def test_create_stores_the_draft(tracker: LocalTracker, db: Path) -> None:
    issue = tracker.create(
        draft(
            issue_type="Bug",
            labels=("rp-bts", "fp-1"),
            fields={"priority": "High", "components": ["Checkout"]},
        )
    )
    assert issue.key == "LOCAL-1"
    assert issue.url == "local:LOCAL-1"
    assert issue.status == "Open"
    assert not issue.closed
    assert not issue.existed
    assert issue.fingerprint == "fp-1"
    assert db.is_file()

    details = tracker.show("LOCAL-1")
    assert details.issue.summary == "fails: fp-1"
    assert details.issue.description == BODY.plain()
    assert details.issue.issue_type == "Bug"
    assert details.issue.labels == ("rp-bts", "fp-1")
    assert details.issue.fields == {"priority": "High", "components": ["Checkout"]}
    assert details.issue.integration == "local"
    assert details.issue.created == details.issue.updated
    assert details.comments == ()
    assert details.attachments == ()

    assert tracker.create(draft("fp-2")).key == "LOCAL-2"


def test_schema_version_and_wal(tracker: LocalTracker, db: Path) -> None:
    tracker.find(["x"])
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_create_returns_the_open_issue_instead_of_a_duplicate(tracker: LocalTracker) -> None:
    first = tracker.create(draft())
    again = tracker.create(draft())
    assert again.key == first.key
    assert again.existed
    assert len(tracker.list_issues("all")) == 1


def test_unique_index_is_a_safety_net(tracker: LocalTracker, db: Path) -> None:
    tracker.create(draft())
    conn = sqlite3.connect(db)
    try:
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute(
                "INSERT INTO issues (key, integration, fingerprint, summary, description,"
                " created, updated) VALUES ('LOCAL-9', 'x', 'fp-1', 's', 'd', 'now', 'now')"
            )
    finally:
        conn.close()


def test_relates_to_is_stored(tracker: LocalTracker) -> None:
    old = tracker.create(draft())
    tracker.close_issue(old.key)
    new = tracker.create(draft(relates_to=old.key))
    assert new.key == "LOCAL-2"
    assert not new.existed
    assert tracker.show(new.key).issue.relates_to == "LOCAL-1"


def test_find_newest_per_fingerprint_open_first(tracker: LocalTracker) -> None:
    assert tracker.find([]) == {}
    one = tracker.create(draft("a"))
    tracker.close_issue(one.key)
    two = tracker.create(draft("a"))
    tracker.close_issue(two.key)
    b = tracker.create(draft("b"))

    found = tracker.find(["a", "b", "missing"])
    assert set(found) == {"a", "b"}
    assert found["a"].key == two.key  # the newest of two closed ones
    assert found["a"].closed
    assert found["b"].key == b.key

    tracker.reopen(one.key)  # an older issue, open again, wins over a newer closed one
    found = tracker.find(["a"])
    assert found["a"].key == one.key
    assert found["a"].status == "Reopened"
    assert not found["a"].closed


def test_find_is_one_query_for_many_fingerprints(tracker: LocalTracker) -> None:
    for i in range(5):
        tracker.create(draft(f"fp-{i}"))
    statements: list[str] = []
    assert tracker._conn is not None
    tracker._conn.set_trace_callback(statements.append)
    # More fingerprints than SQLite's host-parameter limit (32766): still one statement.
    wanted = [f"fp-{i}" for i in range(40_000)]
    found = tracker.find(wanted)
    tracker._conn.set_trace_callback(None)
    assert sorted(found) == [f"fp-{i}" for i in range(5)]
    assert [s for s in statements if "SELECT" in s.upper()] == [statements[1]]
    assert len(statements) == 3  # BEGIN, the query, COMMIT


def test_comment_once_per_run(tracker: LocalTracker) -> None:
    issue = tracker.create(draft())
    assert tracker.comment(issue.key, CommentDraft(BODY, run_id="run-1"))
    assert not tracker.comment(issue.key, CommentDraft(Body((Section("", "other"),)), "run-1"))
    assert tracker.comment(issue.url, CommentDraft(BODY, run_id="run-2"))

    details = tracker.show(issue.key)
    assert [c.run_id for c in details.comments] == ["run-1", "run-2"]
    assert details.comments[0].body == BODY.plain()  # the repeat wrote nothing
    assert details.issue.comments == 2
    assert tracker.list_issues()[0].comments == 2


def test_comment_adds_the_labels_the_issue_lacks(tracker: LocalTracker) -> None:
    issue = tracker.create(draft(labels=("fp-1",)))
    assert tracker.comment(issue.key, CommentDraft(BODY, "run-1", labels=("flaky",)))
    assert tracker.comment(issue.key, CommentDraft(BODY, "run-2", labels=("flaky", "x")))
    assert tracker.show(issue.key).issue.labels == ("fp-1", "flaky", "x")


def test_comment_on_unknown_issue(tracker: LocalTracker) -> None:
    tracker.create(draft())
    with pytest.raises(UnknownIssue, match="no issue LOCAL-7 in"):
        tracker.comment("LOCAL-7", CommentDraft(BODY, run_id="r"))


def test_reopen_and_close(tracker: LocalTracker) -> None:
    issue = tracker.create(draft())
    closed = tracker.close_issue(issue.key)
    assert closed.status == "Closed"
    assert closed.closed
    assert tracker.get(issue.key).closed
    assert tracker.close_issue(issue.key).status == "Closed"  # idempotent

    reopened = tracker.reopen(issue.key)
    assert reopened.status == "Reopened"
    assert not reopened.closed
    assert tracker.reopen(issue.key).status == "Reopened"  # already open: unchanged
    assert tracker.create(draft()).existed  # a reopened issue counts as open


def test_reopen_refuses_a_second_open_issue(tracker: LocalTracker) -> None:
    old = tracker.create(draft())
    tracker.close_issue(old.key)
    new = tracker.create(draft(relates_to=old.key))
    with pytest.raises(TrackerError, match=f"{new.key} is open for the same failure"):
        tracker.reopen(old.key)
    assert tracker.get(old.key).closed


def test_get_by_key_or_url(db: Path) -> None:
    with LocalTracker(db, base_url="https://qa.example.com/issues/") as tracker:
        issue = tracker.create(draft())
        assert issue.url == "https://qa.example.com/issues/LOCAL-1"
        assert tracker.get("LOCAL-1") == issue
        assert tracker.get(issue.url) == issue
        assert tracker.get("local:LOCAL-1") == issue
        assert tracker.get(" local-1 ").key == "LOCAL-1"
        with pytest.raises(UnknownIssue, match=r"no issue LOCAL-2 in .*tracker\.db"):
            tracker.get("LOCAL-2")
        with pytest.raises(UnknownIssue, match="not a local issue key"):
            tracker.get("nonsense")


def test_key_prefix_and_integration(tmp_path: Path) -> None:
    integration = build_integration(
        kind="local", name="Shop bugs", path=str(tmp_path / "shop.db"), project_key="SHOP"
    )
    with LocalTracker.from_integration(integration) as tracker:
        issue = tracker.create(draft())
        assert issue.key == "SHOP-1"
        assert tracker.list_issues(integration="Shop bugs")[0].key == "SHOP-1"
        assert tracker.list_issues(integration="other") == []
    with pytest.raises(TypeError, match="LocalSettings"):
        LocalTracker.from_integration(build_integration(kind="jira", name="J"))
    with pytest.raises(TrackerError, match="project_key"):
        LocalTracker(tmp_path / "x.db", key_prefix="../EVIL")


def test_list_issues_filters(tracker: LocalTracker) -> None:
    assert tracker.list_issues() == []
    a = tracker.create(draft("a"))
    tracker.create(draft("b"))
    tracker.close_issue(a.key)
    assert [i.key for i in tracker.list_issues()] == ["LOCAL-1", "LOCAL-2"]
    assert [i.key for i in tracker.list_issues("all")] == ["LOCAL-1", "LOCAL-2"]
    assert [i.key for i in tracker.list_issues("open")] == ["LOCAL-2"]
    assert [i.key for i in tracker.list_issues("closed")] == ["LOCAL-1"]
    assert [i.key for i in tracker.list_issues("Closed")] == ["LOCAL-1"]
    with pytest.raises(ValueError, match="unknown status"):
        tracker.list_issues("resolved")


def test_attachments_are_copied(tracker: LocalTracker, db: Path, tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    log.write_bytes(b"line 1\nline 2\n\x00\xff")
    issue = tracker.create(
        draft(
            attachments=(
                AttachmentFile("run.log", str(log), "text/plain"),
                AttachmentFile("../../../etc/passwd", str(log)),
            )
        )
    )
    first, second = tracker.show(issue.key).attachments
    attachments_dir = db.parent / "attachments" / "LOCAL-1"
    assert Path(first.path) == attachments_dir / f"{first.id}-run.log"
    assert Path(first.path).read_bytes() == log.read_bytes()
    assert (first.name, first.mime, first.size) == ("run.log", "text/plain", log.stat().st_size)
    assert first.comment_id is None
    assert Path(second.path).parent == attachments_dir  # no way out of the directory
    assert Path(second.path).name == f"{second.id}-passwd"
    assert sorted(p.name for p in attachments_dir.iterdir()) == sorted(
        Path(a.path).name for a in (first, second)
    )  # no temporary files left behind

    assert tracker.comment(
        issue.key, CommentDraft(BODY, "run-2", (AttachmentFile("run.log", str(log)),))
    )
    details = tracker.show(issue.key)
    third = details.attachments[2]
    assert third.comment_id == details.comments[0].id
    assert third.path != first.path
    assert Path(third.path).read_bytes() == log.read_bytes()


def test_missing_attachment_is_skipped_with_a_warning(
    tracker: LocalTracker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    present = tmp_path / "present.txt"
    present.write_text("ok")
    files = (
        AttachmentFile("gone.png", str(tmp_path / "gone.png")),
        AttachmentFile("present.txt", str(present)),
    )
    with caplog.at_level(logging.WARNING, logger="rp_bts_agent"):
        issue = tracker.create(draft(attachments=files))
    assert not issue.existed
    assert [a.name for a in tracker.show(issue.key).attachments] == ["present.txt"]
    assert "gone.png" in caplog.text
    assert "LOCAL-1" in caplog.text
    assert caplog.records[0].name == "rp_bts_agent"


def test_big_attachment_is_streamed(tracker: LocalTracker, tmp_path: Path) -> None:
    big = tmp_path / "video.bin"
    digest = hashlib.sha256()
    chunk = os.urandom(1024 * 1024)
    with big.open("wb") as out:
        for i in range(24):
            block = bytes([i]) + chunk[1:]
            out.write(block)
            digest.update(block)
    tracemalloc.start()
    try:
        issue = tracker.create(draft(attachments=(AttachmentFile("video.bin", str(big)),)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024  # never the whole 24 MiB in memory
    (copy,) = tracker.show(issue.key).attachments
    assert copy.size == 24 * 1024 * 1024
    copied = hashlib.sha256()
    with open(copy.path, "rb") as stored:
        for block in iter(lambda: stored.read(1024 * 1024), b""):
            copied.update(block)
    assert copied.hexdigest() == digest.hexdigest()


def test_safe_name() -> None:
    assert safe_name("../../etc/passwd") == "passwd"
    assert safe_name("..\\..\\boot.ini") == "boot.ini"
    assert safe_name("..") == "attachment"
    assert safe_name("") == "attachment"
    assert safe_name(".hidden") == "hidden"
    assert safe_name("a b;c$(rm).txt") == "a_b_c_rm_.txt"
    long = safe_name("x" * 300 + ".png")
    assert len(long) == 120
    assert long.endswith(".png")


def test_read_only_never_creates_anything(tmp_path: Path) -> None:
    db = tmp_path / "nothing" / ".rp-bts" / "tracker.db"
    with LocalTracker(db, read_only=True) as tracker:
        assert tracker.find(["fp-1"]) == {}
        assert tracker.list_issues() == []
        with pytest.raises(UnknownIssue):
            tracker.get("LOCAL-1")
        with pytest.raises(TrackerError, match="read-only"):
            tracker.create(draft())
    assert not (tmp_path / "nothing").exists()


def test_read_only_reads_without_writing(db: Path) -> None:
    with LocalTracker(db) as writer:
        writer.create(draft())
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    with LocalTracker(db, read_only=True) as reader:
        assert reader.find(["fp-1"])["fp-1"].key == "LOCAL-1"
        assert reader.get("LOCAL-1").status == "Open"
        with pytest.raises(TrackerError, match="read-only"):
            reader.comment("LOCAL-1", CommentDraft(BODY, "r"))
        with pytest.raises(TrackerError, match="read-only"):
            reader.close_issue("LOCAL-1")
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before


def test_read_only_on_an_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "tracker.db"
    empty.touch()
    with LocalTracker(empty, read_only=True) as tracker:
        assert tracker.find(["fp"]) == {}
    assert empty.stat().st_size == 0


def test_not_a_database(tmp_path: Path) -> None:
    """Read-only (a dry run) it is refused; written to, it is moved aside, kept as it was."""
    bad = tmp_path / "tracker.db"
    bad.write_text("this is not sqlite, " * 100)
    with (
        LocalTracker(bad, read_only=True) as tracker,
        pytest.raises(TrackerError, match="not a database"),
    ):
        tracker.find(["fp"])
    with LocalTracker(bad) as tracker:
        assert tracker.create(draft()).key == "LOCAL-1"
        (note,) = tracker.take_notes()
        assert "not a database" in note and "moved aside to tracker.db.corrupt-" in note
        assert tracker.take_notes() == []
    (aside,) = tmp_path.glob("tracker.db.corrupt-*")
    assert aside.read_text() == "this is not sqlite, " * 100


def test_newer_schema_is_refused(db: Path) -> None:
    with LocalTracker(db) as tracker:
        tracker.find(["x"])
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with LocalTracker(db) as tracker, pytest.raises(TrackerError, match="newer"):
        tracker.find(["x"])


def test_close_releases_and_reopens(db: Path) -> None:
    tracker = LocalTracker(db)
    tracker.create(draft())
    tracker.close()
    tracker.close()
    assert tracker.get("LOCAL-1").key == "LOCAL-1"  # lazily opened again
    tracker.close()


def test_threads_share_one_tracker(tracker: LocalTracker) -> None:
    fingerprints = [f"fp-{i % 10}" for i in range(60)]
    with ThreadPoolExecutor(8) as pool:
        issues = list(pool.map(lambda fp: tracker.create(draft(fp)), fingerprints))
    assert sum(not issue.existed for issue in issues) == 10
    assert len(tracker.list_issues()) == 10


_FILER = r"""
import json, sys, time
from pathlib import Path
from rp_bts_agent.tracker import Body, IssueDraft, Section
from rp_bts_agent.integrations.local.tracker import LocalTracker

db, ready, go, name = sys.argv[1:5]
Path(ready).touch()
deadline = time.monotonic() + 60
while not Path(go).exists():
    if time.monotonic() > deadline:
        sys.exit("never told to go")
    time.sleep(0.001)
filed = []
order = range(20) if name != "worker-b" else range(19, -1, -1)  # meet in the middle too
with LocalTracker(db, integration=name) as tracker:  # opened after the flag: schema races too
    for i in order:
        body = Body((Section("filed by", name),))
        issue = tracker.create(IssueDraft(f"failure {i}", body, f"fp-{i}"))
        filed.append([issue.fingerprint, issue.key, issue.existed])
print(json.dumps(filed))
"""


def test_processes_filing_at_once_make_one_issue_per_fingerprint(tmp_path: Path) -> None:
    db = tmp_path / ".rp-bts" / "tracker.db"  # does not exist yet: both create the schema
    go = tmp_path / "go"
    names = ("worker-a", "worker-b", "worker-c")
    procs = [
        subprocess.Popen(
            [sys.executable, "-W", "error", "-c", _FILER, str(db), str(tmp_path / n), str(go), n],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in names
    ]
    outputs = []
    try:
        deadline = time.monotonic() + 60
        while not all((tmp_path / n).exists() for n in names):
            assert time.monotonic() < deadline, "filers did not start"
            assert all(p.poll() is None for p in procs), "a filer died before the start"
            time.sleep(0.01)
        go.touch()
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            outputs.append(json.loads(out))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()

    created: dict[str, list[str]] = {}
    keys: dict[str, set[str]] = {}
    for filed in outputs:
        for fingerprint, key, existed in filed:
            keys.setdefault(fingerprint, set()).add(key)
            if not existed:
                created.setdefault(fingerprint, []).append(key)
    assert sorted(created) == sorted(f"fp-{i}" for i in range(20))
    assert all(len(v) == 1 for v in created.values()), created  # each filed exactly once
    assert all(len(v) == 1 for v in keys.values()), keys  # everyone got the same key

    with LocalTracker(db, read_only=True) as tracker:
        issues = tracker.list_issues("all")
    assert len(issues) == 20
    assert sorted(i.fingerprint for i in issues) == sorted(created)
    assert all(i.status == "Open" for i in issues)
    assert len({i.key for i in issues}) == 20
