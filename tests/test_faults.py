"""Fault injection against the Jira test server (issue 6): nothing lost, nothing duplicated.

Jira answers some calls with 500, throttles others with 429 and ``Retry-After``, drops the
connection after it did the work, or answers later than the client waits. Four runs file into
it; during the second (under xdist) and the last it is down altogether, and the third sends the
second's work first. ``rp-bts flush`` while Jira is still down keeps the work; once it is back,
a flush sends it. After that, every fingerprint has exactly one issue, and every run has left
its mark on it exactly once: the issue's description names the run that filed it, and each
other run added one comment.
"""

from __future__ import annotations

import html
import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import closing
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from jira_server import Faults, RunningJira

from conftest import ATTACHING, DEMO_FINGERPRINTS, all_files, results_json, tracker_rows
from rp_bts_agent.cli import main
from rp_bts_agent.model import Launch, TestResult
from rp_bts_agent.notify import keep_pending
from rp_bts_agent.outbox import Outbox
from rp_bts_agent.state import State

FINGERPRINTS = 12
#: pytest options of each run, and whether Jira is down for it (all its work is kept)
RUNS: tuple[tuple[tuple[str, ...], bool], ...] = (
    ((), False),
    (("-n", "2"), True),
    ((), False),
    ((), True),
)

SUITE = """
import pytest

{tests}
"""
# two parametrised cases per bug: the fingerprint leaves parameter ids out, so each pair is one
TEST = """
@pytest.mark.parametrize("case", ["a", "b"])
def test_bug_{n}(case):
    assert case == "z", "bug {n}"
"""

CONFIG = """
launch = "nightly"
time_budget = 120

"""

_RUN_IN_DESCRIPTION = re.compile(r"\(run ([0-9a-f-]+)\)")


def test_faults_lose_and_duplicate_nothing(
    pytester: pytest.Pytester, make_jira: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rp_bts_agent.integrations.jira.tracker import JiraTracker

    jira: RunningJira = make_jira("cloud")
    jira.login_env(monkeypatch)
    pytester.makefile(".toml", **{"rp-bts": CONFIG + jira.integration_toml(timeout="1")})
    pytester.makepyfile(
        test_bugs=SUITE.format(tests="".join(TEST.format(n=n) for n in range(FINGERPRINTS)))
    )
    jira.state.faults = faults = Faults(
        seed=11, error=0.12, throttle=0.06, drop=0.12, slow=0.05, slow_seconds=1.5
    )

    refs: list[dict[str, Any]] = []
    run_ids: list[str] = []
    for number, (extra, down) in enumerate(RUNS):
        jira.state.outage = down
        result = pytester.runpytest_subprocess(
            "--rp-bts", f"--rp-bts-results=run{number}.json", *extra
        )
        assert result.ret == pytest.ExitCode.TESTS_FAILED  # the verdict is the tests' own
        assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
        data = results_json(pytester.path / f"run{number}.json")
        run_ids.append(data["launch"]["run_id"])
        rows = data["results"]
        assert len(rows) == 2 * FINGERPRINTS
        for row in rows:  # every failure has its reference: an issue, or kept for later
            (ref,) = row["issues"]
            assert ref["action"] in ("created", "commented", "queued"), ref
            refs.append(ref)

    assert any(ref["action"] == "queued" for ref in refs)
    kept = Outbox(State(pytester.path).outbox_db).entries()
    assert kept
    assert main(["--root", str(pytester.path), "flush"]) == 0  # still down: kept again
    assert len(Outbox(State(pytester.path).outbox_db).entries()) == len(kept)
    jira.state.outage = False  # Jira recovers
    jira.state.faults = None
    assert main(["--root", str(pytester.path), "flush"]) == 0
    assert Outbox(State(pytester.path).outbox_db).entries() == []  # nothing pending, nothing failed

    issues = list(jira.state.issues.values())
    fingerprints = {label for issue in issues for label in issue["fields"]["labels"]}
    assert len(fingerprints) == FINGERPRINTS
    assert len(issues) == FINGERPRINTS  # zero duplicated
    for issue in issues:
        # the description is Jira wiki markup, with the test's text escaped as entities
        (filed_by,) = _RUN_IN_DESCRIPTION.findall(html.unescape(issue["fields"]["description"]))
        comments = [c["body"] for c in jira.state.comments.get(issue["key"], [])]
        marks = [
            run_id
            for run_id in run_ids
            for body in comments
            if JiraTracker.run_marker(run_id) in body.splitlines()
        ]
        assert len(marks) == len(set(marks)) == len(comments), issue["key"]  # one per run
        # every run reached the issue: the one that filed it, and a comment from each other
        # (a run whose create answer was lost finds its own issue and comments on it)
        assert {filed_by, *marks} == set(run_ids), issue["key"]
    assert jira.state.violations == []

    injected = sum(faults.counts.values())
    queued = sum(1 for ref in refs if ref["action"] == "queued")
    print(
        f"\nfaults injected: {injected} {dict(sorted(faults.counts.items()))};"
        f" calls: {len(jira.state.requests)}; references: {len(refs)} ({queued} queued,"
        f" {len(kept)} outbox entries flushed); issues: {len(issues)} for {FINGERPRINTS}"
        " fingerprints; lost: 0; duplicated: 0"
    )
    assert faults.counts.get("drop") and faults.counts.get("slow")  # the faults did happen
    assert faults.counts.get("error") and faults.counts.get("throttle")


def test_a_run_killed_half_way_loses_nothing(demo: pytest.Pytester) -> None:
    """Groups are in the outbox before anything is sent: a CI job cancelled while filing leaves
    them, and the next flush files every one, once."""
    demo.makeconftest(
        "import os\n"
        "def rp_bts_issue_fields(draft, results, integration, launch):\n"
        "    if 'test_key' in results[0].nodeid:\n"
        "        os._exit(3)  # killed while filing\n"
    )
    result = demo.runpytest_subprocess("--rp-bts")
    assert result.ret == 3
    filed_before = len(tracker_rows(demo.path))
    assert filed_before < DEMO_FINGERPRINTS
    (demo.path / "conftest.py").unlink()
    assert main(["--root", str(demo.path), "flush"]) == 0
    assert len({fingerprint for _, fingerprint, _ in tracker_rows(demo.path)}) == DEMO_FINGERPRINTS
    assert len(tracker_rows(demo.path)) == DEMO_FINGERPRINTS
    assert main(["--root", str(demo.path), "flush"]) == 0  # nothing left, nothing filed twice
    assert len(tracker_rows(demo.path)) == DEMO_FINGERPRINTS


# -- issue 11: parallel runs and flushes in one folder, a run killed after its creates ----------

PARALLEL_FINGERPRINTS = 20
_FLUSH = "import sys; from rp_bts_agent.cli import main; sys.exit(main(sys.argv[1:]))"


def _marks(jira: RunningJira, issue: dict[str, Any], run_ids: Sequence[str]) -> list[str]:
    """Each run's mark on an issue: its marker under the description (the run that filed it)
    or under one of its comments."""
    from rp_bts_agent.tracker import run_marker

    texts = [issue["fields"]["description"]]
    texts += [c["body"] for c in jira.state.comments.get(issue["key"], [])]
    return [r for r in run_ids for text in texts if run_marker(r) in text.splitlines()]


def _suite(
    pytester: pytest.Pytester, jira: RunningJira, count: int, budget: int = 120, **keys: Any
) -> None:
    integration = jira.integration_toml(**keys)
    pytester.makefile(
        # dozens of new issues on purpose: the storm guard's max_new_issues is raised
        ".toml",
        **{"rp-bts": f"time_budget = {budget}\nmax_new_issues = 1000\n\n" + integration},
    )
    pytester.makepyfile(test_bugs="".join(ATTACHING.format(n=n) for n in range(count)))
    pytester.makeini("[pytest]\n")


def test_parallel_runs_and_flushes_file_each_fingerprint_once(
    pytester: pytest.Pytester, make_jira: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 11, point 1: four runs and three flushes at once in one folder, with the work of
    an earlier run (Jira down then) waiting in the outbox: one issue per fingerprint, one mark
    per run per issue, nothing closed as a duplicate."""
    jira: RunningJira = make_jira("cloud")
    jira.login_env(monkeypatch)
    _suite(pytester, jira, PARALLEL_FINGERPRINTS)
    jira.state.outage = True
    first = pytester.runpytest_subprocess("--rp-bts", "--rp-bts-results=run-down.json")
    assert first.ret == pytest.ExitCode.TESTS_FAILED
    jira.state.outage = False
    jira.state.latency = 0.1

    started = time.monotonic()
    runs = [
        pytester.popen(
            [sys.executable, "-m", "pytest", "--rp-bts", f"--rp-bts-results=run{n}.json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        for n in range(4)
    ]
    flushes = [
        pytester.popen(
            [sys.executable, "-c", _FLUSH, "--root", str(pytester.path), "flush"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=600) for p in runs + flushes]
    wall = time.monotonic() - started
    for proc, (out, err) in zip(runs + flushes, outputs, strict=True):
        text = out.decode() + err.decode()
        assert "INTERNALERROR" not in text and "Traceback" not in text, text
        assert proc.returncode == (1 if proc in runs else 0), text

    run_ids = [
        results_json(pytester.path / name)["launch"]["run_id"]
        for name in ("run-down.json", *(f"run{n}.json" for n in range(4)))
    ]
    issues = list(jira.state.issues.values())
    fingerprints = {label for issue in issues for label in issue["fields"]["labels"]}
    assert len(fingerprints) == PARALLEL_FINGERPRINTS
    assert len(issues) == PARALLEL_FINGERPRINTS  # exactly one issue per fingerprint
    assert not [link for link in jira.state.links if "Duplicate" in str(link)]
    assert not [i["key"] for i in issues if i["fields"]["status"]["name"] == "Done"]
    for issue in issues:
        marks = _marks(jira, issue, run_ids)
        assert sorted(marks) == sorted(run_ids), issue["key"]  # one mark per run per issue
    assert Outbox(State(pytester.path).outbox_db).entries(None) == []
    assert jira.state.violations == []
    print(
        f"\nparallel: 4 runs and 3 flushes at once, 1 earlier run replayed; issues:"
        f" {len(issues)} for {PARALLEL_FINGERPRINTS} fingerprints; marks per run per issue: 1;"
        f" calls: {len(jira.state.requests)}; wall {wall:.1f} s; lost: 0; duplicated: 0"
    )


def test_a_run_killed_after_its_creates_is_completed_without_its_own_comment(
    pytester: pytest.Pytester, make_jira: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 11, point 2: killed after Jira created its issues but before any attachment; the
    replay recognises the run's marker on each issue and completes it (its attachments), and
    adds no comment from that run."""
    jira: RunningJira = make_jira("cloud")
    jira.login_env(monkeypatch)
    count = 60  # two bulk creates
    _suite(pytester, jira, count, timeout=2)  # the replay waits 3 s for what was in flight
    killed: list[subprocess.Popen[bytes]] = []

    def kill_on_first_attachment(method: str, path: str) -> None:
        if method == "POST" and path.endswith("/attachments") and killed:
            killed.pop().kill()

    jira.state.on_request = kill_on_first_attachment
    proc = pytester.popen(
        [sys.executable, "-m", "pytest", "--rp-bts", "--rp-bts-results=killed.json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    killed.append(proc)
    proc.communicate(timeout=300)
    assert proc.returncode < 0  # killed
    jira.state.on_request = None
    created = dict(jira.state.issues)
    # killed as its first upload arrived (the few already on their way may land)
    bare = [key for key in created if not jira.state.attachments.get(key)]
    assert len(bare) > len(created) // 2

    assert main(["--root", str(pytester.path), "flush"]) == 0
    issues = list(jira.state.issues.values())
    assert len(issues) == len({i["fields"]["labels"][0] for i in issues}) == count
    assert jira.state.comments == {}  # the killed run never comments on its own issues
    for issue in issues:
        names = [a["filename"] for a in jira.state.attachments.get(issue["key"], [])]
        assert "state.txt" in names, issue["key"]
        assert len(names) == len(set(names)), issue["key"]  # none added twice
    assert main(["--root", str(pytester.path), "flush"]) == 0  # nothing left to do
    assert len(jira.state.issues) == count and jira.state.comments == {}


KILLING = """
import os
calls = []
def rp_bts_issue_fields(draft, results, integration, launch):
    calls.append(draft)
    if len(calls) == 4:
        os._exit(3)  # killed after three creates
"""


def test_a_killed_run_is_completed_without_its_own_comment_in_the_local_tracker(
    pytester: pytest.Pytester,
) -> None:
    """Issue 11, point 2, for the local tracker: the issues a killed run filed carry its run
    marker, so the replay completes them (each attachment once) and adds no comment."""
    pytester.makeini("[pytest]\n")
    pytester.makefile(".toml", **{"rp-bts": "max_new_issues = 1000\n"})
    pytester.makepyfile(test_bugs="".join(ATTACHING.format(n=n) for n in range(8)))
    pytester.makeconftest(KILLING)
    assert pytester.runpytest_subprocess("--rp-bts").ret == 3
    assert len(tracker_rows(pytester.path)) == 3
    (pytester.path / "conftest.py").unlink()
    assert main(["--root", str(pytester.path), "flush"]) == 0
    assert len({fp for _, fp, _ in tracker_rows(pytester.path)}) == 8
    assert tracker_rows(pytester.path, "SELECT issue_key, run_id FROM comments") == []
    for key, _, _ in tracker_rows(pytester.path):
        names = [
            name
            for (name,) in tracker_rows(
                pytester.path, f"SELECT name FROM attachments WHERE issue_key = '{key}'"
            )
        ]
        assert names.count("state.txt") == 1, (key, names)


# -- issue 11, point 3: a hard deadline --------------------------------------------------------

BUDGET = 5


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A server that accepts connections (the kernel's backlog does) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


@pytest.mark.parametrize("fault", ["no answer", "slow answers", "slow attachments"])
def test_the_run_end_keeps_to_its_time_budget(
    pytester: pytest.Pytester,
    make_jira: Any,
    monkeypatch: pytest.MonkeyPatch,
    silent_url: str,
    fault: str,
) -> None:
    """``time_budget = 5`` and ``timeout = 10``: whatever Jira does, the run end is over within
    budget + 1 s, and what was not done is kept in the outbox."""
    jira: RunningJira = make_jira("cloud")
    jira.login_env(monkeypatch)
    count = 8
    pytester.makepyfile(test_bugs="".join(ATTACHING.format(n=n) for n in range(count)))
    pytester.makeini("[pytest]\n")
    pytester.runpytest_subprocess("--rp-bts", "--rp-bts-results=shard.json")  # files locally
    integration = jira.integration_toml(timeout="10")
    if fault == "no answer":
        integration = integration.replace(jira.url, silent_url)
    elif fault == "slow answers":
        jira.state.latency = 9
    else:
        jira.state.attachment_delay = 9
    pytester.makefile(".toml", **{"rp-bts": f"time_budget = {BUDGET}\n\n" + integration})

    started = time.monotonic()
    main(["--root", str(pytester.path), "process", "shard.json", "--output", "out.json"])
    took = time.monotonic() - started
    assert took <= BUDGET + 1, f"{fault}: the run end took {took:.1f} s"
    refs = [
        ref for row in results_json(pytester.path / "out.json")["results"] for ref in row["issues"]
    ]
    assert len(refs) == count
    kept = Outbox(State(pytester.path).outbox_db).entries()
    if fault == "slow attachments":  # filed, their attachments kept for the replay
        assert {ref["action"] for ref in refs} == {"created"}
        assert len(kept) == count
        jira.state.attachment_delay = 0
        assert main(["--root", str(pytester.path), "flush"]) == 0
        assert all(jira.state.attachments.get(key) for key in jira.state.issues)
        assert jira.state.comments == {}
    else:
        assert {ref["action"] for ref in refs} == {"queued"}
        assert len(kept) == count


@pytest.mark.parametrize("value", ["0", "-5", "10000000"])
def test_a_time_budget_that_is_no_bound_is_a_config_error(
    tmp_path: Path, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "rp-bts.toml").write_text(f"time_budget = {value}\n")
    assert main(["--root", str(tmp_path), "integrations", "list"]) == 2
    err = capsys.readouterr().err
    assert "time_budget" in err and "1 to 86400" in err and len(err.splitlines()) == 1


# -- issue 11, point 5: one bad outbox entry never blocks the others ----------------------------


def _kept_groups(root: Path, *names: str) -> Outbox:
    """Groups left in the outbox for the embedded tracker, as a run whose tracker was away."""
    outbox = Outbox(State(root).outbox_db)
    launch = Launch("nightly", "20261201_120000_deadbeef")
    groups = [
        (
            "local",
            (TestResult(f"test_x.py::{n}", "failed", message=f"{n} broke", fingerprint=n),),
        )
        for n in names
    ]
    outbox.begin(launch, groups, owner="")
    outbox.release("", launch, (), [(n, r, "tracker away", "pending", "") for n, r in groups])
    return outbox


def test_an_unreadable_outbox_entry_is_set_aside_and_the_rest_flushed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outbox = _kept_groups(tmp_path, "good", "broken")
    with closing(sqlite3.connect(outbox.path)) as conn, conn:  # bytes that are not UTF-8
        conn.execute(
            "UPDATE pending SET results = CAST(X'5b7b226e6f64656964223a2022ff22' AS TEXT)"
            " WHERE fingerprint = 'broken'"
        )
    keep_pending(State(tmp_path), EmailMessage(), "m")  # a mail kept from earlier

    assert main(["--root", str(tmp_path), "flush"]) == 1  # the mail has no server to go to
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    lines = out.splitlines()
    assert not [line for line in lines if line.startswith("failed    ")]
    assert any(line.startswith("created   [local] LOCAL-1") for line in lines)
    assert any(line.startswith("failed: mail m.eml") for line in lines)  # mail still went
    assert any(line.startswith("set aside [local] 1 group(s)") for line in lines)
    assert len(tracker_rows(tmp_path)) == 1
    assert main(["--root", str(tmp_path), "flush", "--list"]) == 0
    (listed,) = capsys.readouterr().out.splitlines()
    assert " bad " in listed and "cannot be read" in listed


def test_a_failing_flush_step_leaves_the_others_to_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    keep_pending(State(tmp_path), EmailMessage(), "m")
    _kept_groups(tmp_path, "good")

    def broken(config: object, **options: object) -> list[str]:
        raise RuntimeError("the outbox is on fire")

    monkeypatch.setattr("rp_bts_agent.replay.flush_trackers", broken)
    assert main(["--root", str(tmp_path), "flush"]) == 1
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert "failed    tracker work: RuntimeError('the outbox is on fire')" in out
    assert "failed: mail m.eml" in out


# -- issue 11, point 4: results first, nothing lost -------------------------------------------


def test_a_raising_route_hook_is_one_line_and_the_failures_are_filed(demo: pytest.Pytester) -> None:
    demo.makeconftest("def rp_bts_route(result, config):\n    raise KeyError('team')\n")
    result = demo.runpytest_subprocess("--rp-bts")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    text = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in text and "Traceback" not in text
    assert text.count("the rp_bts_route hook failed: KeyError('team')") == 1
    rows = results_json(demo.path / ".rp-bts" / "results.json")["results"]
    assert all(row["issues"] for row in rows if row["outcome"] in ("failed", "error"))
    assert len({key for key, _, _ in tracker_rows(demo.path)}) == DEMO_FINGERPRINTS


def _finish(root: Path, **how: Any) -> Any:
    from rp_bts_agent.config_types import Config
    from rp_bts_agent.hooks import HookManager
    from rp_bts_agent.launch import Finish, finish
    from rp_bts_agent.redact import Redactor

    launch = Launch("nightly", "20261201_120000_cafe")
    failed = TestResult("test_x.py::test_a", "failed", message="boom", fingerprint="fp-a")
    return finish(
        Config(root=str(root)),
        root,
        launch,
        [failed],
        Finish(report=root / "rep.html", **how),
        hooks=HookManager(),
        redactor=Redactor(()),
    )


def test_an_agent_that_raises_leaves_the_results_and_the_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: object, run: object) -> None:
        raise MemoryError("gone")

    monkeypatch.setattr("rp_bts_agent.pipeline.Agent.run", broken)
    end = _finish(tmp_path)
    assert end.errors == ["rp-bts: agent failed: MemoryError('gone')"]
    (row,) = results_json(tmp_path / ".rp-bts" / "results.json")["results"]
    assert row["nodeid"] == "test_x.py::test_a"
    assert end.report_path == tmp_path / "rep.html" and "test_a" in end.report_path.read_text()


def test_a_full_disk_is_a_line_and_no_report_is_claimed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(path: Path, text: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("rp_bts_agent.launch.write_atomic", full)
    end = _finish(tmp_path)
    assert end.results_path is None and end.report_path is None
    assert any("results not written" in e and "No space left" in e for e in end.errors)
    assert any("report not written" in e for e in end.errors)
    assert tracker_rows(tmp_path)  # the filing went on


# -- issue 11, point 8: results files are untrusted --------------------------------------------


def _shard(root: Path, run_id: str, fingerprint: str, *paths: str) -> Path:
    """A results file as a shard job might have written it (or forged it)."""
    from rp_bts_agent.model import Attachment, RunResults

    attachments = tuple(Attachment(Path(p).name, p) for p in paths)
    result = TestResult(
        "test_x.py::test_a",
        "failed",
        message="boom",
        longrepr="boom",
        fingerprint=fingerprint,
        attachments=attachments,
    )
    path = root / "shard.json"
    path.write_text(RunResults(Launch("nightly", run_id), (result,)).dumps(), encoding="utf-8")
    return path


def test_a_results_file_uploads_only_files_of_its_own_run(
    pytester: pytest.Pytester,
    make_jira: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    jira: RunningJira = make_jira("cloud")
    jira.login_env(monkeypatch)
    pytester.makefile(".toml", **{"rp-bts": jira.integration_toml()})
    (pytester.path / ".env").write_text("JIRA_TOKEN=hunter2-secret\n")
    run_id = "20261201_120000_feed"
    own = State(pytester.path).run(run_id) / "screen.png"
    own.parent.mkdir(parents=True)
    own.write_bytes(b"png")
    shard = _shard(
        pytester.path, run_id, "fp-a", "/proc/self/environ", str(pytester.path / ".env"), str(own)
    )
    assert main(["--root", str(pytester.path), "process", str(shard)]) == 0
    err = capsys.readouterr().err
    assert err.count("is outside the run's folder") == 2 and "'environ'" in err
    (files,) = jira.state.attachments.values()
    assert sorted(f["filename"] for f in files) == ["failure-details.txt", "screen.png"]


def test_links_and_dot_dots_in_the_run_folder_do_not_lead_out(tmp_path: Path) -> None:
    """A file in the run's folder that is a link to a file outside, a link to a folder outside,
    or a path that climbs out with ``..``: each is left out; the run's own file stays."""
    from rp_bts_agent.confine import confine
    from rp_bts_agent.model import Attachment, Launch, RunResults, TestResult

    run_id = "20261201_120000_feed"
    folder = State(tmp_path).run(run_id)
    (folder / "sub").mkdir(parents=True)
    secret = tmp_path / ".env"
    secret.write_text("TOKEN=x\n")
    (folder / "own.txt").write_text("ok")
    (folder / "env-link.txt").symlink_to(secret)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "data.txt").write_text("x")
    (folder / "out").symlink_to(tmp_path / "outside", target_is_directory=True)
    paths = {
        "own": folder / "own.txt",
        "link": folder / "env-link.txt",
        "linked folder": folder / "out" / "data.txt",
        "climb": folder / "sub" / ".." / ".." / ".." / ".." / ".env",
        "dot dot": folder / "sub" / "..",
    }
    result = TestResult(
        "t.py::test_a",
        "failed",
        attachments=tuple(Attachment(name, str(path)) for name, path in paths.items()),
    )
    run = RunResults(Launch("l", run_id), (result,))
    source = tmp_path / "results.json"
    confined, lines = confine(run, source, tmp_path)
    assert [a.name for a in confined.results[0].attachments] == ["own", "dot dot"]
    assert len(lines) == 3 and all("is outside the run's folder" in line for line in lines)


@pytest.mark.parametrize("run_id", ["../../..", "..", "a/b", "a\\b", ""])
def test_a_run_id_is_never_a_path(
    tmp_path: Path, run_id: str, capsys: pytest.CaptureFixture[str]
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    shard = _shard(project, run_id, "fp-a")
    before = sorted(tmp_path.rglob("*"))
    assert main(["--root", str(project), "process", str(shard)]) == 2
    err = capsys.readouterr().err
    assert "not a run id" in err and len(err.splitlines()) == 1
    assert sorted(tmp_path.rglob("*")) == before


def test_a_fingerprint_is_never_a_path(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    shard = _shard(project, "20261201_120000_feed", "../../../../escaped")
    assert main(["--root", str(project), "process", str(shard)]) == 0
    outside = [p for p in tmp_path.rglob("*") if not p.is_relative_to(project)]
    assert outside == []
    (details,) = (project / ".rp-bts" / "spool").glob("failure-*.txt")
    assert "escaped" not in details.name


# -- issue 11, point 6: storage faults are temporary --------------------------------------------


def test_a_corrupt_outbox_is_moved_aside_with_one_line(demo: pytest.Pytester) -> None:
    state = State(demo.path)
    state.ensure()
    state.outbox_db.write_bytes(b"this is not a database, half a sector of one" * 100)
    result = demo.runpytest_subprocess("--rp-bts")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    text = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in text and "INTERNALERROR" not in text
    assert text.count("moved aside to outbox.db.corrupt-") == 1
    assert len(list(state.folder.glob("outbox.db.corrupt-*"))) == 1
    assert len(tracker_rows(demo.path)) == DEMO_FINGERPRINTS  # filed, with a fresh outbox


def test_an_outbox_that_cannot_be_written_is_in_the_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*args: object, **kwargs: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr("rp_bts_agent.outbox.Outbox.begin", full)
    end = _finish(tmp_path)
    (line,) = end.loose_errors  # what the terminal summary shows, not only the log
    assert "cannot be written: database or disk is full" in line
    assert tracker_rows(tmp_path)  # filed without it


def test_run_folders_the_outbox_needs_are_never_pruned(tmp_path: Path) -> None:
    from rp_bts_agent.launch import KEEP_RUNS

    state = State(tmp_path)
    names = [f"20200101_0000{n:02d}_old" for n in range(KEEP_RUNS + 5)]
    for name in names:
        (state.run(name) / "screen.png").parent.mkdir(parents=True)
    outbox = _kept_groups(tmp_path, "fp-x")
    with closing(sqlite3.connect(outbox.path)) as conn, conn:
        conn.execute("UPDATE pending SET run_id = ?", (names[0],))
    _finish(tmp_path)
    left = {p.name for p in state.runs.iterdir()}
    assert names[0] in left  # the oldest, but its work is kept
    assert names[1] not in left and len(left) == KEEP_RUNS + 1


def test_a_replay_has_the_attachments_of_the_run(
    pytester: pytest.Pytester, make_jira: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    jira: RunningJira = make_jira("cloud")
    jira.login_env(monkeypatch)
    _suite(pytester, jira, 2)
    jira.state.outage = True
    pytester.runpytest_subprocess("--rp-bts")
    jira.state.outage = False
    assert main(["--root", str(pytester.path), "flush"]) == 0
    assert len(jira.state.issues) == 2
    for key in jira.state.issues:
        names = sorted(a["filename"] for a in jira.state.attachments.get(key, []))
        assert names == ["failure-details.txt", "state.txt"], key


def _keys(results: Path) -> set[str]:
    return {ref["key"] for row in results_json(results)["results"] for ref in row["issues"]}


@pytest.mark.parametrize("cut", ["half", "empty"])
def test_a_truncated_tracker_db_never_reuses_issue_keys(
    pytester: pytest.Pytester, cut: str
) -> None:
    """The local tracker's keys live on in results files and reports: a ``tracker.db`` cut short
    (a full disk, a crash) is moved aside with one line, and the next keys go on after every
    key it had given out."""
    pytester.makeini("[pytest]\n")
    pytester.makefile(".toml", **{"rp-bts": "max_new_issues = 1000\n"})
    bugs = "".join(f"def test_bug_{n}():\n    assert {n} == -1, 'bug {n}'\n" for n in range(8))
    pytester.makepyfile(test_bugs=bugs)
    pytester.runpytest_subprocess("--rp-bts", "--rp-bts-results=first.json")
    before = _keys(pytester.path / "first.json")
    assert len(before) == 8
    db = State(pytester.path).tracker_db
    os.truncate(db, db.stat().st_size // 2 if cut == "half" else 0)

    new = "".join(f"def test_new_{n}():\n    assert {n} == -1, 'new {n}'\n" for n in range(3))
    pytester.makepyfile(test_new=new)
    result = pytester.runpytest_subprocess("--rp-bts", "--rp-bts-results=second.json")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    text = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in text and "INTERNALERROR" not in text
    after = _keys(pytester.path / "second.json")
    assert len(after) == 11 and not after & before, (before, after)
    said = [line for line in text.splitlines() if "local tracker database" in line]
    assert len(said) == 1, said
    if cut == "half":
        assert "damaged" in said[0] and "moved aside to tracker.db.corrupt-" in said[0]
        assert len(list(db.parent.glob("tracker.db.corrupt-*"))) == 1
    else:
        assert "was empty or missing" in said[0]
    assert "keys go on after LOCAL-8" in said[0]
    rerun = pytester.runpytest_subprocess("--rp-bts", "--rp-bts-results=third.json")
    assert "local tracker database" not in rerun.stdout.str()  # said once
    assert _keys(pytester.path / "third.json") == after  # found again, nothing new


# -- issue 11, point 7: bad input is one line, never a traceback --------------------------------


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [
        (".env", b"JIRA_TOKEN=\xff\xfe\n", "not UTF-8 text"),
        ("rp-bts.toml", b"a = " + b"[" * 50_000 + b"]" * 50_000 + b"\n", "nested too deeply"),
    ],
)
def test_a_broken_config_file_is_one_line(
    demo: pytest.Pytester, name: str, content: bytes, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (demo.path / name).write_bytes(content)
    result = demo.runpytest_subprocess("--rp-bts")
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # the tests' verdict, unchanged
    text = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in text and "Traceback" not in text
    assert says in text
    assert main(["--root", str(demo.path), "integrations", "list"]) == 2
    out, err = capsys.readouterr()
    assert says in err and len(err.splitlines()) == 1 and "Traceback" not in out + err


_ROW = '{"nodeid": "t.py::a", "outcome": "failed", "fingerprint": "fp", "message": "m"'


@pytest.mark.parametrize(
    "row",
    [
        _ROW + ', "attachments": [{"name": "a.png", "path": null}]}',
        _ROW + ', "duration": "slow"}',
        _ROW + ', "attachments": 7}',
        _ROW + ', "links": [{"title": 1, "url": [], "key": "k"}]}',
        '{"nodeid": null, "outcome": "failed"}',
        "[]",
    ],
)
def test_a_results_file_of_wrong_types_is_one_line(
    tmp_path: Path, row: str, capsys: pytest.CaptureFixture[str]
) -> None:
    shard = tmp_path / "shard.json"
    launch = '{"name": "n", "run_id": "20261201_120000_feed"}'
    shard.write_text(f'{{"format": 1, "launch": {launch}, "results": [{row}]}}')
    assert main(["--root", str(tmp_path), "process", str(shard)]) == 2
    out, err = capsys.readouterr()
    assert "not an rp-bts results file" in err and len(err.splitlines()) == 1
    assert "Traceback" not in out + err


@pytest.mark.parametrize("command", ["process", "post", "notify"])
def test_lone_surrogates_in_a_results_file_are_one_line(
    tmp_path: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A results file is untrusted: a lone surrogate (no text at all) is refused in one line
    naming the file, exit 2, nothing filed."""
    shard = tmp_path / "shard.json"
    launch = '{"name": "n", "run_id": "20261201_120000_feed"}'
    row = _ROW.replace('"m"', '"broke \\ud800 here"') + "}"
    shard.write_text(f'{{"format": 1, "launch": {launch}, "results": [{row}]}}')
    args = [str(shard), "t.py::a"] if command == "post" else [str(shard)]
    assert main(["--root", str(tmp_path), command, *args]) == 2
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    (line,) = err.splitlines()
    assert str(shard) in line and "lone surrogate" in line
    assert tracker_rows(tmp_path) == []


SURROGATES = """
import sys
def test_prints_a_lone_surrogate():
    print("out \\ud800 put")
    sys.stderr.write("err \\udcff or")
    assert 0, "broke \\udc80 here"
"""


def test_a_test_printing_lone_surrogates_leaves_a_results_file_the_cli_reads(
    pytester: pytest.Pytester,
) -> None:
    """What a test prints is never refused: the plugin writes each lone surrogate as ``?``, so
    its results file is written, filed and read back by ``rp-bts process``."""
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_hostile=SURROGATES)
    # pytest itself would print the surrogates (its summary): not what is tested here
    args = ("--rp-bts", "--rp-bts-results=shard.json", "--tb=no", "-rN")
    result = pytester.runpytest_subprocess(*args)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "results not written" not in result.stdout.str()
    (row,) = results_json(pytester.path / "shard.json")["results"]
    assert row["message"].startswith("broke ? here") and "out ? put" in row["stdout"]
    assert "err ? or" in row["stderr"]
    assert [ref["action"] for ref in row["issues"]] == ["created"]
    assert main(["--root", str(pytester.path), "process", "shard.json"]) == 0


# -- issue 11, point 9: the report links only to web pages and its own files -------------------


def test_the_report_links_only_to_web_pages_and_relative_files(tmp_path: Path) -> None:
    from rp_bts_agent.model import Attachment, IssueRef, Link, RunResults
    from rp_bts_agent.report import render

    evil = "javascript:alert(document.domain)"
    (tmp_path / evil).write_text("x")
    result = TestResult(
        "t.py::a",
        "failed",
        message="m",
        attachments=(Attachment(evil, str(tmp_path / evil), "text/plain"),),
        links=(Link(evil, evil, "k"), Link("job", "https://saucelabs.com/tests/1", "j")),
        issues=(IssueRef("jira", "SHOP-1", evil, "Open", "created"),),
    )
    html = render(RunResults(Launch("n", "20261201_120000_feed"), (result,)), tmp_path)
    hrefs = re.findall(r'href="([^"]*)"', html)
    assert hrefs and all(h.startswith(("https://", "http://", "./", "../")) for h in hrefs), hrefs
    assert "./javascript%3Aalert%28document.domain%29" in hrefs
    (csp,) = re.findall(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)"', html)
    assert "script-src 'self'" in csp and "object-src 'none'" in csp


# -- issue 11, point 10: secrets masked in the places that were missed ------------------------

SECRET = "cnry-Token-7d1e9a4b"
LEAKY = """
import logging, os
import pytest

@pytest.mark.parametrize("n", [pytest.param(1, id=os.environ["LEAKY_TOKEN"])])
def test_param(n):
    logging.getLogger("shop").warning("token %s", os.environ["LEAKY_TOKEN"])
    assert n == 2

def test_other():
    logging.getLogger("shop").warning("token %s", os.environ["LEAKY_TOKEN"])
    assert 0
"""


def test_secrets_are_masked_in_worker_log_files_ids_and_launch_texts(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEAKY_TOKEN", SECRET)
    pytester.makefile(
        ".toml",
        **{
            "rp-bts": '[[integrations]]\nkind = "email"\nname = "Mail"\nhost = "localhost"\n'
            'sender = "ci@example.com"\nusername = "ci@example.com"\n'
            'password = "${LEAKY_TOKEN}"\n'
        },
    )
    pytester.makepyfile(test_leaky=LEAKY)
    pytester.makeini("[pytest]\n")
    result = pytester.runpytest_subprocess(
        "--rp-bts",
        "-n",
        "2",
        "--log-file=workers.log",
        "--log-file-level=WARNING",
        f"--rp-bts-launch=nightly {SECRET}",
        f"--rp-bts-attribute=token:{SECRET}",
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    log = (pytester.path / "workers.log").read_text()
    assert "token ***" in log and SECRET not in log  # the workers wrote it, masked
    # what rp-bts writes: results, report, the issues in the local tracker, the log file
    for path in all_files(pytester.path / ".rp-bts"):
        assert SECRET.encode() not in path.read_bytes(), path
    rows = tracker_rows(pytester.path, "SELECT summary || description FROM issues")
    assert rows and all(SECRET not in text for (text,) in rows)
    assert any("nightly ***" in text for (text,) in rows)  # the launch name, masked
    # pytest's own lines too: the explicit id is masked before the test is named after it
    output = result.stdout.str() + result.stderr.str()
    assert "test_param[***]" in output and SECRET not in output


def test_a_password_inside_an_integration_url_is_a_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("JIRA_PASS", SECRET)
    (tmp_path / "rp-bts.toml").write_text(
        '[[integrations]]\nkind = "jira"\nname = "J"\nproject_key = "SHOP"\n'
        'url = "http://bob:${JIRA_PASS}@127.0.0.1:9/jira"\n'
        'username = "bob"\npassword = "${JIRA_PASS}"\ntimeout = 1\n'
    )
    main(["--root", str(tmp_path), "integrations", "list", "--json"])
    main(["--root", str(tmp_path), "integrations", "test", "J"])
    out, err = capsys.readouterr()
    assert "127.0.0.1:9" in out + err and SECRET not in out + err
    # a secret like the declared ones: masked in any text, not only where a URL is shown
    from rp_bts_agent.config import build_integration

    jira = build_integration(
        "jira", "J", root=tmp_path, url="https://bob:p%40ss-9f2c@jira.example.com", project_key="S"
    )
    assert "p@ss-9f2c" in jira.secrets()


@pytest.mark.skipif(os.name != "posix", reason="file modes")
def test_a_literal_password_inside_a_url_is_refused_like_any_literal_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "rp-bts.toml"
    config.write_text(
        '[[integrations]]\nkind = "jira"\nname = "J"\nproject_key = "SHOP"\n'
        'url = "https://bob:hunter2-literal@jira.example.com"\n'
    )
    config.chmod(0o666)
    assert main(["--root", str(tmp_path), "integrations", "list"]) == 2
    err = capsys.readouterr().err
    assert "anyone can write" in err and "hunter2-literal" not in err
