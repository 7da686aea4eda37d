"""What a new user trips over (issue 12): each test here failed before its change."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from jira_server import (  # noqa: F401
    DC_USER,
    PASSWORD,
    USER,
    Reply,
    RunningJira,
    jira_contract_fixture,
    jira_fixture,
)

from conftest import results_json, tracker_rows
from rp_bts_agent import pipeline
from rp_bts_agent.config import build_integration
from rp_bts_agent.config_types import Config, Integration
from rp_bts_agent.hooks import HookManager
from rp_bts_agent.integrations.jira.tracker import JiraTracker
from rp_bts_agent.model import Launch, RunResults, TestResult
from rp_bts_agent.pipeline import Agent, Options
from rp_bts_agent.redact import Redactor
from rp_bts_agent.tracker import TrackerError

TWO_FAILURES = """
def test_a():
    assert 1 == 2

def test_b():
    raise KeyError("kiwi")
"""


@pytest.mark.parametrize("xdist", [False, True], ids=["serial", "xdist"])
def test_project_root_is_the_config_folder_whatever_the_cwd(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, xdist: bool
) -> None:
    """Run inside the project, then from its parent: the same issues, the same .rp-bts/."""
    project = pytester.mkdir("proj")
    (project / "rp-bts.toml").write_text('launch = "proj"\n', encoding="utf-8")
    (project / "test_x.py").write_text(TWO_FAILURES, encoding="utf-8")
    monkeypatch.chdir(project)
    pytester.runpytest_subprocess("--rp-bts")
    rows = tracker_rows(project)
    assert len(rows) == 2
    monkeypatch.chdir(pytester.path)
    second = pytester.runpytest_subprocess("--rp-bts", "proj", *(["-n", "2"] if xdist else []))
    assert tracker_rows(project) == rows  # no duplicate issue
    assert not (pytester.path / ".rp-bts").exists()
    second.stdout.fnmatch_lines(
        ["*rp-bts: launch 'proj'*", "commented ?local? LOCAL-* test_x.py::*"]
    )
    data = results_json(project / ".rp-bts" / "results.json")
    nodeids = sorted(r["nodeid"] for r in data["results"])
    assert nodeids == ["test_x.py::test_a", "test_x.py::test_b"]


# -- 3: an answer that does not match the request ------------------------------------------------


def _jira_integration(server: RunningJira) -> Integration:
    return build_integration(
        kind="jira",
        name="Shop bugs",
        url=server.url,
        project_key="SHOP",
        auth="basic",
        username=USER if server.state.cloud else DC_USER,
        password=PASSWORD,
        issue_type="Bug",
    )


def _failures(count: int) -> tuple[TestResult, ...]:
    return tuple(
        TestResult(f"t.py::test_{i}", "failed", exc_type="E", longrepr="E", fingerprint=f"fp{i}")
        for i in range(count)
    )


def test_a_bulk_answer_short_of_an_issue_is_retryable_for_that_draft(
    jira: RunningJira, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline, "PAUSE", 0.0)
    jira.state.bulk_answers_fewer = 1
    config = Config(integrations=(_jira_integration(jira),), root=str(tmp_path))
    agent = Agent(config, hooks=HookManager(), redactor=Redactor(()), options=Options())
    outcome = agent.run(RunResults(Launch("nightly", "run-1"), _failures(3)))
    actions = sorted(ref.action for r in outcome.run.results for ref in r.issues)
    assert actions == ["created", "created", "queued"]  # the rest of the batch stands
    assert any("no issue for this draft" in e for e in outcome.errors)
    assert len(jira.state.issues) == 3
    jira.state.bulk_answers_fewer = 0
    again = Agent(config, hooks=HookManager(), redactor=Redactor(()), options=Options())
    second = again.run(RunResults(Launch("nightly", "run-2"), _failures(3)))
    assert len(jira.state.issues) == 3  # looked up before it is created again: no duplicate
    assert {ref.action for r in second.run.results for ref in r.issues} == {"commented"}


@pytest.mark.parametrize(
    "answer",
    [
        Reply(200, {"issues": "nope", "total": "many"}),
        Reply(200, [1, 2, 3]),
        Reply(200, {"issues": [{"fields": 3}, {"key": 7}, "x"]}),
        Reply(200, "<html>a login page</html>"),
    ],
    ids=["wrong-types", "a-list", "missing-keys", "html"],
)
def test_a_malformed_answer_is_a_tracker_error(jira: RunningJira, answer: Reply) -> None:
    tracker = JiraTracker(_jira_integration(jira))
    tracker.find(["fp0"])  # the client is made (its server info read) before the answer
    jira.state.inject.append(answer)
    try:
        found: Any = tracker.find(["fp0"])
    except TrackerError as exc:  # any other exception fails the test
        found = str(exc)
    tracker.close()
    assert found == {} or found.startswith("Jira")


def test_a_kind_that_answers_fewer_or_raises_oddly_fails_only_its_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pipeline's own care, for any kind: fewer answers than drafts, or a KeyError."""
    from rp_bts_agent.integrations.local.tracker import LocalTracker

    def short(self: LocalTracker, drafts: Any, *, look_first: bool = True) -> list[Any]:
        return []

    monkeypatch.setattr(LocalTracker, "create_many", short)
    config = Config(root=str(tmp_path))
    agent = Agent(config, hooks=HookManager(), redactor=Redactor(()), options=Options())
    outcome = agent.run(RunResults(Launch("nightly", "run-1"), _failures(2)))
    assert [ref.action for r in outcome.run.results for ref in r.issues] == ["queued", "queued"]

    def odd(self: LocalTracker, fingerprints: Any, known: Any = None) -> Any:
        raise KeyError("key")

    monkeypatch.setattr(LocalTracker, "find", odd)
    outcome = Agent(config, hooks=HookManager(), redactor=Redactor(())).run(
        RunResults(Launch("nightly", "run-2"), _failures(1))
    )
    assert "unexpected answer (KeyError" in outcome.errors[0]


# -- 4: a hook's fingerprint is data -------------------------------------------------------------


@pytest.mark.parametrize("chosen", ["team/checkout", "../../escape", "a\\b:c*?"])
def test_a_hook_fingerprint_with_slashes_is_filed(pytester: pytest.Pytester, chosen: str) -> None:
    pytester.makeconftest(f"def rp_bts_fingerprint(result, default):\n    return {chosen!r}\n")
    pytester.makepyfile(test_x="def test_a():\n    assert 1 == 2\n")
    result = pytester.runpytest("--rp-bts")
    assert "agent failed" not in result.stdout.str()
    assert [fp for _, fp, _ in tracker_rows(pytester.path)] == [chosen]
    data = results_json(pytester.path / ".rp-bts" / "results.json")
    assert data["results"][0]["issues"][0]["action"] == "created"
    assert not list((pytester.path / ".rp-bts").glob("escape*"))  # no file outside its run
