"""Long output is spilled to the run folder: results stay small, issues get every byte."""

from __future__ import annotations

from pathlib import Path

import pytest
from jira_server import DC_USER, PASSWORD, USER, RunningJira

from conftest import by_nodeid, results_json, tracker_rows
from rp_bts_agent.config import build_integration
from rp_bts_agent.content import issue_draft
from rp_bts_agent.files import SPILL_LIMIT, SPILL_TAIL, spill
from rp_bts_agent.model import Attachment, Launch, TestResult

#: a failing test printing 5 MB: lines numbered, so a lost or repeated chunk shows
LOUD = """
import logging

def test_loud():
    for n in range(100_000):
        print(f"line {n:06d} " + "x" * 38)
    logging.getLogger("shop").warning("the last log line %s", "SECRET")
    print("SECRET at the end")
    assert False, "too loud"
"""
LINES = 100_000
LINE = len("line 000000 " + "x" * 38 + "\n")


def _loud(pytester: pytest.Pytester, secret: str = "no-secret") -> None:
    pytester.makepyfile(test_loud=LOUD.replace("SECRET", secret))
    pytester.makeini("[pytest]\n")


def _check_stdout(data: bytes, last: str) -> None:
    """Every line printed, in order, then ``last``."""
    text = data.decode()
    start = text.index("line 000000 ")
    assert text[start : start + LINES * LINE] == "".join(
        f"line {n:06d} " + "x" * 38 + "\n" for n in range(LINES)
    )
    assert text[start + LINES * LINE :].startswith(last)


def test_short_texts_stay_whole_and_long_ones_spill(tmp_path: Path) -> None:
    short = "s" * SPILL_LIMIT
    long = "".join(f"{n:07d}\n" for n in range(20_000)) + "token-1234 here\n"
    inline, files = spill(
        {"log": short, "stdout": long, "longrepr": "head\n" + long},
        tmp_path / "run",
        lambda text: text.replace("token-1234", "***"),
    )
    assert inline["log"] == short
    assert inline["stdout"].endswith("token-1234 here\n")  # redacted later, with the results
    assert len(inline["stdout"]) < SPILL_TAIL + 100 and "characters cut" in inline["stdout"]
    assert inline["longrepr"].startswith("head\n")
    (out, tb) = sorted(files, key=lambda a: a.spilled, reverse=True)
    assert (out.name, out.spilled, out.mime) == ("stdout.txt", "stdout", "text/plain")
    assert (tb.name, tb.spilled) == ("traceback.txt", "longrepr")
    assert Path(out.path).read_text(encoding="utf-8") == long.replace("token-1234", "***")
    assert out.size == len(long) - len("token-1234") + 3
    assert Path(out.path).parent == tmp_path / "run"
    cut, none = spill({"stderr": long}, None)
    assert none == [] and cut["stderr"].endswith(long[-100:])
    assert "attached" not in cut["stderr"]
    (tmp_path / "a-file").write_text("", encoding="utf-8")  # the disk refuses: only cut
    cut, none = spill({"stderr": long}, tmp_path / "a-file" / "run")
    assert none == [] and cut["stderr"].endswith(long[-100:])
    assert "attached" not in cut["stderr"] and "whole text is attached" in inline["stdout"]


def test_details_file_is_streamed_from_spilled_files(tmp_path: Path) -> None:
    whole = tmp_path / "log.txt"
    whole.write_text("first line\n" + "y" * 200_000 + "\nlast line\n", encoding="utf-8")
    own = tmp_path / "cart.txt"
    own.write_bytes(b"cart")
    result = TestResult(
        "t.py::test_a",
        "failed",
        longrepr="Traceback: boom",
        log="[cut]\nlast line\n",
        stdout="[cut]\nthe tail",
        stderr="oops",
        fingerprint="rpbts1-z",
        attachments=(
            Attachment("cart.txt", str(own), "text/plain", 4),
            Attachment("log.txt", str(whole), "text/plain", whole.stat().st_size, "log"),
            Attachment("stdout.txt", str(tmp_path / "pruned.txt"), "text/plain", 9, "stdout"),
        ),
    )
    integration = build_integration(kind="local", name="local")
    launch = Launch("nightly", "run-1")
    draft = issue_draft(
        [result], integration, launch, include=("logs", "attachments"), spool=tmp_path / "spool"
    )
    assert [a.name for a in draft.attachments] == ["cart.txt", "failure-details.txt"]
    details = Path(draft.attachments[1].path).read_text(encoding="utf-8")
    assert details == (
        "----- traceback -----\nTraceback: boom\n\n"
        f"----- log -----\n{whole.read_text(encoding='utf-8')}\n\n"
        "----- stdout -----\n[cut]\nthe tail\n\n"  # its file is gone (pruned): the tail
        "----- stderr -----\noops"
    )
    only_logs = issue_draft([result], integration, launch, include=("logs",), spool=tmp_path)
    assert [a.name for a in only_logs.attachments] == ["failure-details.txt"]


def test_five_megabytes_of_output_reach_the_local_tracker(pytester: pytest.Pytester) -> None:
    _loud(pytester)
    result = pytester.runpytest("--rp-bts")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    results = pytester.path / ".rp-bts" / "results.json"
    assert results.stat().st_size < 4 * SPILL_TAIL
    loud = by_nodeid(results_json(results))["test_loud"]
    assert len(loud["stdout"]) < SPILL_TAIL + 100
    (spilled,) = [a for a in loud["attachments"] if a["spilled"] == "stdout"]
    assert spilled["size"] == LINES * LINE + len("no-secret at the end\n")
    ((name, path),) = tracker_rows(pytester.path, "SELECT name, path FROM attachments")
    assert name == "failure-details.txt"
    stored = (pytester.path / ".rp-bts" / path).read_bytes()
    assert len(stored) > spilled["size"]
    _check_stdout(stored, "no-secret at the end\n")


def test_spilled_on_xdist_workers_and_redacted_into_jira(
    pytester: pytest.Pytester, jira: RunningJira, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("xdist")
    monkeypatch.setenv("JIRA_USER", USER if jira.state.cloud else DC_USER)
    monkeypatch.setenv("JIRA_TOKEN", PASSWORD)
    pytester.makefile(
        ".toml",
        **{
            "rp-bts": f"""
[[integrations]]
kind = "jira"
name = "Shop bugs"
url = "{jira.url}"
project_key = "SHOP"
username = "${{JIRA_USER}}"
password = "${{JIRA_TOKEN}}"
"""
        },
    )
    _loud(pytester, PASSWORD)
    result = pytester.runpytest_subprocess("--rp-bts", "-n", "2")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    loud = by_nodeid(results_json(pytester.path / ".rp-bts" / "results.json"))["test_loud"]
    assert [(i["key"], i["action"]) for i in loud["issues"]] == [("SHOP-1", "created")]
    (files,) = jira.state.attachments.values()
    (details,) = [f["content"] for f in files if f["filename"] == "failure-details.txt"]
    _check_stdout(details, "*** at the end\n")
    assert PASSWORD not in details.decode() and "the last log line ***" in details.decode()
    run_files = list((pytester.path / ".rp-bts" / "runs").rglob("*.txt"))
    assert run_files and all(PASSWORD not in p.read_text(encoding="utf-8") for p in run_files)
