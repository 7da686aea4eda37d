"""``rp-bts issues list|show|close``, driven in process through its argparse sub-parser."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from rp_bts_agent.integrations.local.cli import add_parser, tracker_path
from rp_bts_agent.integrations.local.tracker import LocalTracker
from rp_bts_agent.tracker import AttachmentFile, Body, CommentDraft, IssueDraft, Section

BODY = Body((Section("Test", "tests/test_shop.py::test_pay"), Section("Traceback", "boom", True)))


def parser() -> argparse.ArgumentParser:
    """A stand-in for the main CLI: it provides ``--root``, as ``rp_bts_agent.cli`` does."""
    main = argparse.ArgumentParser(prog="rp-bts")
    main.add_argument("--root", type=Path, default=None)
    add_parser(main.add_subparsers(dest="command", required=True))
    return main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    args = parser().parse_args(argv)
    status = args.func(args)
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / ".rp-bts" / "tracker.db"
    log = tmp_path / "run.log"
    log.write_text("log line\n")
    with LocalTracker(path, integration="Shop bugs") as tracker:
        first = tracker.create(
            IssueDraft(
                "test_pay fails: ValueError",
                BODY,
                "fp-pay",
                labels=("rp-bts",),
                attachments=(AttachmentFile("run.log", str(log), "text/plain"),),
            )
        )
        tracker.comment(first.key, CommentDraft(Body((Section("", "again in run 2"),)), "run-2"))
        second = tracker.create(IssueDraft("a much longer summary of test_cart", BODY, "fp-cart"))
        tracker.close_issue(second.key)
    with LocalTracker(path, integration="Other") as tracker:
        tracker.create(IssueDraft("x", BODY, "fp-x"))
    return path


def test_list_json(capsys: pytest.CaptureFixture[str], db: Path) -> None:
    status, out, err = run(capsys, "issues", "list", "--json", "--status", "all", "--db", str(db))
    assert (status, err) == (0, "")
    rows = json.loads(out)
    assert [r["key"] for r in rows] == ["LOCAL-1", "LOCAL-2", "LOCAL-3"]
    first = rows[0]
    for field in (
        "key",
        "status",
        "summary",
        "fingerprint",
        "integration",
        "created",
        "updated",
        "comments",
        "url",
    ):
        assert field in first
    assert first["status"] == "Open"
    assert first["summary"] == "test_pay fails: ValueError"
    assert first["fingerprint"] == "fp-pay"
    assert first["integration"] == "Shop bugs"
    assert first["comments"] == 1
    assert first["url"] == "local:LOCAL-1"
    assert rows[1]["status"] == "Closed"


@pytest.mark.parametrize(
    ("options", "keys"),
    [
        ((), ["LOCAL-1", "LOCAL-3"]),
        (("--status", "open"), ["LOCAL-1", "LOCAL-3"]),
        (("--status", "closed"), ["LOCAL-2"]),
        (("--status", "all", "--integration", "Shop bugs"), ["LOCAL-1", "LOCAL-2"]),
        (("--integration", "nobody"), []),
    ],
)
def test_list_filters(
    capsys: pytest.CaptureFixture[str], db: Path, options: tuple[str, ...], keys: list[str]
) -> None:
    status, out, _ = run(capsys, "issues", "--db", str(db), "list", "--json", *options)
    assert status == 0
    assert [r["key"] for r in json.loads(out)] == keys


def test_list_table(capsys: pytest.CaptureFixture[str], db: Path) -> None:
    status, out, err = run(capsys, "issues", "list", "--status", "all", "--db", str(db))
    assert (status, err) == (0, "")
    header, *rows = out.splitlines()
    assert header.split() == ["KEY", "STATUS", "COMMENTS", "UPDATED", "INTEGRATION", "SUMMARY"]
    assert len(rows) == 3
    assert rows[0].startswith("LOCAL-1  Open ")
    assert rows[0].endswith("test_pay fails: ValueError")
    assert rows[1].endswith("a much longer summary of test_cart")
    # Aligned: every column starts where its heading does.
    for column, value in (("STATUS", "Closed"), ("INTEGRATION", "Shop bugs"), ("SUMMARY", "a ")):
        assert rows[1].index(value) == header.index(column)


def test_list_escapes_terminal_control(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    with LocalTracker(db) as tracker:
        tracker.create(IssueDraft("red \x1b[31malert\x1b[0m\nsecond line", BODY, "fp"))
    status, out, _ = run(capsys, "issues", "list", "--db", str(db))
    assert status == 0
    assert "\x1b" not in out
    assert "red \\x1b[31malert\\x1b[0m second line" in out
    assert len(out.splitlines()) == 2


def test_list_without_database(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    status, out, err = run(capsys, "--root", str(tmp_path), "issues", "list")
    path = tmp_path / ".rp-bts" / "tracker.db"
    assert (status, err) == (0, "")
    assert out == f"no local issues yet ({path})\n"
    status, out, _ = run(capsys, "--root", str(tmp_path), "issues", "list", "--json")
    assert (status, json.loads(out)) == (0, [])
    assert not (tmp_path / ".rp-bts").exists()


def test_list_empty_selection(capsys: pytest.CaptureFixture[str], db: Path) -> None:
    status, out, _ = run(capsys, "issues", "list", "--integration", "nobody", "--db", str(db))
    assert status == 0
    assert out == f"no open local issues ({db})\n"


def test_show_human(capsys: pytest.CaptureFixture[str], db: Path) -> None:
    status, out, err = run(capsys, "--root", str(db.parent.parent), "issues", "show", "LOCAL-1")
    assert (status, err) == (0, "")
    assert out.startswith("LOCAL-1  test_pay fails: ValueError\n")
    assert "status:      Open\n" in out
    assert "fingerprint: fp-pay\n" in out
    assert "labels:      rp-bts\n" in out
    assert BODY.plain() in out
    assert "comments (1):" in out
    assert "run run-2\nagain in run 2\n" in out
    assert "attachments (1):" in out
    assert "run.log  (9 B, text/plain)" in out
    assert str(db.parent / "attachments" / "LOCAL-1") in out


def test_show_json_by_url(capsys: pytest.CaptureFixture[str], db: Path) -> None:
    status, out, _ = run(capsys, "issues", "show", "local:LOCAL-1", "--json", "--db", str(db))
    assert status == 0
    data = json.loads(out)
    assert data["key"] == "LOCAL-1"
    assert data["description"] == BODY.plain()
    assert [c["run_id"] for c in data["comments"]] == ["run-2"]
    (attachment,) = data["attachments"]
    assert attachment["name"] == "run.log"
    assert Path(attachment["path"]).read_text() == "log line\n"


@pytest.mark.parametrize("command", ["show", "close"])
def test_unknown_key(capsys: pytest.CaptureFixture[str], db: Path, command: str) -> None:
    status, out, err = run(capsys, "issues", command, "LOCAL-9", "--db", str(db))
    assert status == 2
    assert out == ""
    assert err == f"rp-bts: no issue LOCAL-9 in {db}\n"


@pytest.mark.parametrize("command", ["show", "close"])
def test_key_without_database(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str
) -> None:
    db = tmp_path / "missing" / "tracker.db"
    status, _, err = run(capsys, "issues", command, "LOCAL-1", "--db", str(db))
    assert status == 2
    assert err == f"rp-bts: no issue LOCAL-1 in {db}\n"
    assert not db.parent.exists()  # a typo never leaves an empty database behind


def test_close(capsys: pytest.CaptureFixture[str], db: Path) -> None:
    status, out, err = run(capsys, "issues", "close", "local-1", "--db", str(db))
    assert (status, out, err) == (0, "closed LOCAL-1\n", "")
    with LocalTracker(db, read_only=True) as tracker:
        assert tracker.get("LOCAL-1").closed
    status, out, _ = run(capsys, "issues", "close", "LOCAL-1", "--db", str(db))
    assert (status, out) == (0, "LOCAL-1 was already closed\n")


def test_bad_database_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    db = tmp_path / "tracker.db"
    db.write_text("not sqlite " * 200)
    status, out, err = run(capsys, "issues", "list", "--db", str(db))
    assert status == 1
    assert out == ""
    assert err.startswith(f"rp-bts: local tracker {db}: ")
    assert err.count("\n") == 1


def test_subcommand_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parser().parse_args(["issues"])
    assert exc.value.code == 2
    capsys.readouterr()


def test_tracker_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert tracker_path(argparse.Namespace()) == tmp_path / ".rp-bts" / "tracker.db"
    root = tmp_path / "proj"
    assert tracker_path(argparse.Namespace(root=root, db=None)) == root / ".rp-bts" / "tracker.db"
    assert tracker_path(argparse.Namespace(root=root, db="x.db")) == tmp_path / "x.db"
