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
import re
from typing import Any

import pytest
from jira_server import Faults, RunningJira

from conftest import DEMO_FINGERPRINTS, results_json, tracker_rows

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
    from rp_bts_agent.cli import main
    from rp_bts_agent.integrations.jira.tracker import JiraTracker
    from rp_bts_agent.outbox import Outbox
    from rp_bts_agent.state import State

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
    from rp_bts_agent.cli import main

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
