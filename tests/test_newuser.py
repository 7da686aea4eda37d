"""What a new user trips over (issue 12): each test here failed before its change."""

from __future__ import annotations

import json
import re
import shutil
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


# -- 5: nothing pytest reported is lost ----------------------------------------------------------

FAIL_THEN_TEARDOWN = """
import pytest

@pytest.fixture
def db():
    yield
    raise RuntimeError("teardown exploded")

def test_fails_then_teardown(db):
    assert 1 == 2

def test_passes_then_teardown(db):
    pass

def test_passes():
    pass
"""
RULE = '[[rules]]\nname = "all"\nsend_case = "always"\nrecipients = ["qa@example.com"]\n'


@pytest.mark.parametrize("xdist", [False, True], ids=["serial", "xdist"])
def test_a_teardown_error_after_a_failure_is_kept_and_counted(
    pytester: pytest.Pytester, xdist: bool
) -> None:
    pytester.makepyfile(test_x=FAIL_THEN_TEARDOWN)
    pytester.makefile(".toml", **{"rp-bts": RULE})
    args = ("--rp-bts", "-n", "2") if xdist else ("--rp-bts", "-p", "no:xdist")
    result = pytester.runpytest_subprocess(*args)
    result.assert_outcomes(failed=1, passed=2, errors=2)
    state = pytester.path / ".rp-bts"
    data = {r["nodeid"]: r for r in results_json(state / "results.json")["results"]}
    failed = data["test_x.py::test_fails_then_teardown"]
    assert failed["outcome"] == "failed" and failed["exc_type"] == "AssertionError"
    assert [(f["phase"], f["exc_type"]) for f in failed["also_failed"]] == [
        ("teardown", "RuntimeError")
    ]
    assert "teardown exploded" in failed["also_failed"][0]["message"]
    rows = tracker_rows(pytester.path, "SELECT key, description FROM issues")
    body = next(d for _, d in rows if "test_fails_then_teardown" in d)
    assert "Error in teardown" in body and "teardown exploded" in body
    mail = next((state / "outbox").glob("*.eml")).read_text(encoding="utf-8")
    assert "1 failed, 2 passed, 2 errors" in mail  # as pytest counts
    assert "assert 1 =3D=3D 2" in mail or "assert 1 == 2" in mail  # the message in its text
    report = (state / "report.html").read_text(encoding="utf-8")
    assert "1 failed, 2 passed, 2 errors" in report
    assert "teardown exploded" in report


# -- 6: masking only whole tokens ---------------------------------------------------------------


def test_a_short_secret_masks_tokens_only() -> None:
    from rp_bts_agent.redact import Redactor, is_weak

    redactor = Redactor(["test"])
    text = "def test_add():\n    login(password=test) # 'test' test_x.py::test_add"
    assert redactor.redact(text) == (
        "def test_add():\n    login(password=***) # '***' test_x.py::test_add"
    )
    assert Redactor(["s3cr3t-t0k3n"]).redact("Bearer s3cr3t-t0k3n.") == "Bearer ***."
    assert is_weak("test") and is_weak("password") and not is_weak("x9!kq2Lm-77")
    assert not Redactor(["test"], strong_only=True)


SHORT_SECRET = """
def test_add():
    print("logging in with password=test")
    assert 1 == 2
"""


def test_a_short_secret_warns_once_and_leaves_pytest_lines_alone(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMTP_PASSWORD", "test")
    pytester.makefile(
        ".toml",
        **{
            "rp-bts": '[[integrations]]\nkind = "email"\nname = "mail"\nhost = "127.0.0.1"\n'
            'auth = true\nusername = "qa@example.com"\npassword = "${SMTP_PASSWORD}"\n'
        },
    )
    pytester.makepyfile(test_x=SHORT_SECRET)
    result = pytester.runpytest("--rp-bts", "-v")
    out = result.stdout.str()
    assert "***_add" not in out and "***_x.py" not in out
    result.stdout.fnmatch_lines(["*test_x.py::test_add FAILED*", "*def test_add():*"])
    # once per place, as every config warning: the header and the rp-bts summary
    assert out.count("shorter than 8 characters or a plain word") == 2
    data = results_json(pytester.path / ".rp-bts" / "results.json")
    assert data["results"][0]["nodeid"] == "test_x.py::test_add"
    assert "password=***" in data["results"][0]["stdout"]  # a token of its own: masked


# -- 7: rp_bts.attach() never fails a test ------------------------------------------------------

ATTACH_MISSING = """
def test_screenshot(rp_bts):
    rp_bts.attach("never-saved.png")
"""


@pytest.mark.parametrize("enabled", [True, False], ids=["on", "off"])
def test_attaching_a_missing_file_never_fails_the_test(
    pytester: pytest.Pytester, enabled: bool
) -> None:
    pytester.makepyfile(test_x=ATTACH_MISSING)
    result = pytester.runpytest(*(["--rp-bts"] if enabled else []))
    result.assert_outcomes(passed=1)
    if enabled:
        result.stdout.fnmatch_lines(
            ["rp-bts warning: test_x.py::test_screenshot: rp_bts.attach('never-saved.png')*"]
        )
        data = results_json(pytester.path / ".rp-bts" / "results.json")
        assert "never-saved.png" in data["results"][0]["notes"][0]


# -- 9: the HTML report by default, grouped by issue ---------------------------------------------

REPORT_SUITE = """
import pytest

@pytest.mark.parametrize("items", [[1], [2, 3], [10]])
def test_totals(items):
    assert sum(items) + 1 == sum(items), "off by one in the cart total"

@pytest.mark.skip(reason="needs the payment sandbox")
def test_pay():
    pass

@pytest.mark.xfail(reason="rounding bug #12")
def test_round():
    assert 0.1 + 0.2 == 0.3

def test_ok():
    pass
"""


def test_the_report_is_written_by_default_grouped_by_issue(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_x=REPORT_SUITE)
    result = pytester.runpytest("--rp-bts", "--rp-bts-attribute=env:ci")
    result.stdout.fnmatch_lines(["report: .rp-bts/report.html"])
    page = (pytester.path / ".rp-bts" / "report.html").read_text(encoding="utf-8")
    data = results_json(pytester.path / ".rp-bts" / "results.json")
    assert page.count('<tr class="g">') == 1  # three parameters, one bug, one group
    assert "3 test(s)" in page and "LOCAL-1" in page
    assert "off by one in the cart total" in page  # the message, not only the type
    assert "needs the payment sandbox" in page and "rounding bug #12" in page
    assert data["launch"]["run_id"] in page and "env:ci" in page
    assert "3 failed, 1 passed, 1 skipped, 1 xfailed" in page
    assert ">call<" in page  # the phase

    pytester.path.joinpath(".rp-bts", "report.html").unlink()
    pytester.runpytest("--rp-bts", "--rp-bts-report=none")
    assert not (pytester.path / ".rp-bts" / "report.html").exists()


def test_a_passing_run_renders_its_report_without_jinja(tmp_path: Path) -> None:
    """The overhead benchmark's run (all passed) pays neither Jinja2's import nor a compile."""
    from rp_bts_agent import report

    report._template.cache_clear()
    results = [(f"t.py::test_{i}", "passed", "call", 0.01) for i in range(3)]
    page = report.render_results(Launch("n", "run-1"), results, tmp_path)  # type: ignore[arg-type]
    assert report._template.cache_info().misses == 0
    assert "3 passed" in page and "t.py::test_2  0.01 s" in page


# -- 11: posting to a chosen integration creates there -------------------------------------------


def test_post_to_another_integration_of_the_same_project_files_there(
    jira: RunningJira, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rp_bts_agent.cli import main

    jira.login_env(monkeypatch)
    tasks = jira.integration_toml(issue_type='"Task"').replace("Shop bugs", "Shop tasks")
    (tmp_path / "rp-bts.toml").write_text(
        jira.integration_toml(issue_type='"Bug"') + tasks, encoding="utf-8"
    )
    results = tmp_path / "results.json"
    run = RunResults(Launch("nightly", "run-1"), _failures(1))
    results.write_text(run.dumps(), encoding="utf-8")
    root = ["--root", str(tmp_path), "--global-config", str(tmp_path / "none.toml")]
    assert main([*root, "process", str(results), "--no-notify"]) == 0
    assert [i["fields"]["issuetype"]["name"] for i in jira.state.issues.values()] == ["Bug"]
    code = main(
        [*root, "post", str(results), "test_0", "--integration", "Shop tasks",
         "--field", "priority=High"]
    )  # fmt: skip
    assert code == 0
    types = sorted(i["fields"]["issuetype"]["name"] for i in jira.state.issues.values())
    assert types == ["Bug", "Task"]  # a Task beside the Bug, no comment on the Bug
    task = next(i for i in jira.state.issues.values() if i["fields"]["issuetype"]["name"] == "Task")
    assert task["fields"]["priority"]["name"] == "High"
    assert jira.state.comments == {}
    assert main([*root, "post", str(results), "test_0", "--issue-type", "Task"]) == 0
    assert len(jira.state.issues) == 2  # Shop bugs as a Task: the Task is found, not filed again
    refs = results_json(results)["results"][0]["issues"]
    assert ("Shop bugs", "SHOP-2") in {(r["integration"], r["key"]) for r in refs}


# -- 10: integrations list with unset variables, add/edit check the whole integration -----------


def _cli(tmp_path: Path, *argv: str) -> int:
    from rp_bts_agent.cli import main

    return main(["--root", str(tmp_path), "--global-config", str(tmp_path / "g.toml"), *argv])


def test_integrations_list_shows_unset_references(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("JIRA_URL", raising=False)
    monkeypatch.delenv("JIRA_TOKEN", raising=False)
    monkeypatch.setenv("JIRA_USER", "qa@example.com")
    (tmp_path / "rp-bts.toml").write_text(
        '[[integrations]]\nkind = "jira"\nname = "Shop bugs"\nurl = "${JIRA_URL}"\n'
        'project_key = "SHOP"\nusername = "${JIRA_USER}"\npassword = "${JIRA_TOKEN}"\n',
        encoding="utf-8",
    )
    assert _cli(tmp_path, "integrations", "list", "--json") == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["url"] == "${JIRA_URL} (unset)"
    assert row["password"] == "${JIRA_TOKEN} (unset)"
    assert row["username"] == "qa@example.com"  # set: its value, as before
    assert _cli(tmp_path, "integrations", "list") == 0
    assert "${JIRA_URL} (unset)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        (["url=jira.example.com"], "url: 'jira.example.com' is not a web address"),
        (["url=https://jira.example.com", "auth=pat"], 'token: required with auth = "pat"'),
    ],
)
def test_integrations_add_checks_the_whole_integration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], settings: list[str], error: str
) -> None:
    sets = [arg for s in settings for arg in ("--set", s)]
    assert _cli(tmp_path, "integrations", "add", "jira", "J", *sets) == 2
    err = capsys.readouterr().err
    assert error in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "rp-bts.toml").exists()  # nothing written


# -- 15: pytest-reportportal's issue marker ------------------------------------------------------

PEER_MARKER = """
import pytest

@pytest.mark.issue(issue_id="111111", reason="Some bug", issue_type="PB", url="https://bugs.example.com/111111")
def test_known():
    assert False

@pytest.mark.issue(issue_id=["A-1", "A-2"], reason="two bugs", issue_type="PB", url="https://x.example.com/A")
def test_two():
    assert False
"""


def test_pytest_reportportal_issue_marker_is_a_known_issue(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_x=PEER_MARKER)
    result = pytester.runpytest("--rp-bts", "--strict-markers")
    result.assert_outcomes(failed=2)
    assert "rp-bts: test_x.py" not in result.stdout.str()  # no marker error
    assert tracker_rows(pytester.path) == []  # linked, never filed
    data = {
        r["nodeid"]: r for r in results_json(pytester.path / ".rp-bts" / "results.json")["results"]
    }
    assert [(i["key"], i["action"]) for i in data["test_x.py::test_known"]["issues"]] == [
        ("111111", "known")
    ]
    assert [i["key"] for i in data["test_x.py::test_two"]["issues"]] == ["A-1", "A-2"]


# -- 14: messages and help ----------------------------------------------------------------------


def test_issue_lines_sort_keys_as_numbers_and_show_web_urls() -> None:
    from rp_bts_agent.model import IssueRef
    from rp_bts_agent.summary import issue_lines

    results = [
        TestResult(
            f"t.py::test_{n}",
            "failed",
            issues=(IssueRef("J", f"SHOP-{n}", f"https://jira.example.com/browse/SHOP-{n}"),),
        )
        for n in (10, 9, 100)
    ]
    lines = issue_lines(results)
    keys = [line.split()[2] for line in lines if not line.startswith(" ")]
    assert keys == ["SHOP-9", "SHOP-10", "SHOP-100"]
    assert lines[:2] == [
        "created   [J] SHOP-9 t.py::test_9",
        "          https://jira.example.com/browse/SHOP-9",
    ]


NAMED_TWICE = """
import pytest

@pytest.mark.issue("LOCAL-99", integration="local")
def test_known_missing():
    assert 1 == 2

@pytest.mark.bts("nope")
def test_routed_nowhere():
    assert 0
"""


@pytest.mark.parametrize("xdist", [False, True], ids=["serial", "xdist"])
def test_each_summary_line_names_its_test_once(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str], xdist: bool
) -> None:
    """An error that names its test for the log ("test_x.py::test_a: no tracker integration
    named ...") no longer repeats the test id on the line that names it already."""
    from rp_bts_agent.cli import main

    pytester.makepyfile(test_x=NAMED_TWICE)
    pytester.makeini("[pytest]\n")
    result = pytester.runpytest("--rp-bts", *(["-n", "2"] if xdist else []))
    result.stdout.fnmatch_lines(
        [
            "known     ?local? LOCAL-99 test_x.py::test_known_missing: status of known issue*",
            "failed    - test_x.py::test_routed_nowhere: no tracker integration named 'nope'",
        ]
    )
    capsys.readouterr()
    saved = str(pytester.path / ".rp-bts" / "results.json")
    assert main(["--root", str(pytester.path), "process", saved]) == 1  # nothing filed: 1
    printed = capsys.readouterr().out.splitlines()
    lines = [
        line for line in [*result.stdout.lines, *printed] if line.startswith(("known ", "failed "))
    ]
    assert len(lines) == 4
    for line in lines:
        assert line.count("test_x.py::") == 1, line


def _readme_blocks() -> list[list[str]]:
    """The README's demo output: its ``text`` blocks after "What the demo prints"."""
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = text.split("## What the demo prints", 1)[1].split("\n## ", 1)[0]
    return [block.split("\n```", 1)[0].splitlines() for block in section.split("```text\n")[1:]]


def _same_run(lines: list[str]) -> list[str]:
    """What changes from run to run: the mail file's run id, pytest's duration."""
    lines = [re.sub(r"outbox/[0-9a-f-]+-demo", "outbox/RUN-demo", line) for line in lines]
    return [re.sub(r" in [0-9.]+s ", " in Ns ", line) for line in lines]


@pytest.mark.parametrize("xdist", [False, True], ids=["serial", "xdist"])
def test_the_demo_groups_a_shared_root_cause_as_the_readme_says(
    pytester: pytest.Pytester, xdist: bool
) -> None:
    """Issue 12, point 14: the demo's "two tests that share a root cause" get one issue (grouped
    by cause), and the README prints what the demo prints (serially: xdist numbers the issues
    in the order they arrive)."""
    examples = Path(__file__).resolve().parent.parent / "examples"
    for name in ("pytest.ini", "rp-bts.toml", "shop.py", "test_shop.py"):
        shutil.copy(examples / name, pytester.path / name)
    first = pytester.runpytest_subprocess("--rp-bts", *(["-n", "2"] if xdist else []))
    assert first.ret == pytest.ExitCode.TESTS_FAILED
    data = {
        r["nodeid"].split("::")[1]: r
        for r in results_json(pytester.path / ".rp-bts" / "results.json")["results"]
    }
    shared = [data["test_unknown_item"], data["test_cart_with_unknown_item"]]
    assert [r["grouped_by"] for r in shared] == ["cause", "cause"]
    (key,) = {r["issues"][0]["key"] for r in shared}
    params = {data[f"test_cart_total[items{i}]"]["issues"][0]["key"] for i in range(3)}
    assert len(params) == 1
    assert data["test_discounted_total"]["issues"][0]["key"] not in {key, *params}
    assert len(tracker_rows(pytester.path)) == 6
    if xdist:
        return
    filed, again = _readme_blocks()
    out = first.stdout.lines
    start = out.index(filed[0])  # the rp-bts section, then (past pytest's summary) its tally
    assert _same_run(out[start : start + len(filed) - 1]) == _same_run(filed[:-1])
    assert _same_run(out[-1:]) == _same_run(filed[-1:])
    second = pytester.runpytest_subprocess("--rp-bts")
    shown = [line for line in again if line != "..."]
    assert shown and all(line in second.stdout.lines for line in shown)


def test_a_missing_known_issue_says_it_does_not_exist(jira: RunningJira) -> None:
    tracker = JiraTracker(_jira_integration(jira))
    with pytest.raises(TrackerError) as caught:
        tracker.get("SHOP-999")
    tracker.close()
    assert "does not exist" in str(caught.value) and "check url" not in str(caught.value)


def test_removing_a_global_integration_hints_global(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "g.toml").write_text(
        '[[integrations]]\nkind = "email"\nname = "Corp mail"\nhost = "smtp.example.com"\n',
        encoding="utf-8",
    )
    assert _cli(tmp_path, "integrations", "remove", "Corp mail") == 2
    assert "add --global" in capsys.readouterr().err


def test_state_folder_ignores_itself_and_collect_only_keeps_results(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_x=TWO_FAILURES)
    pytester.runpytest("--rp-bts")
    state = pytester.path / ".rp-bts"
    assert (state / ".gitignore").read_text(encoding="utf-8").endswith("*\n")
    before = (state / "results.json").read_text(encoding="utf-8")
    pytester.runpytest("--rp-bts", "--collect-only", "-k", "test_a")
    assert (state / "results.json").read_text(encoding="utf-8") == before


def test_pytest_help_shows_metavars_and_bool_ini_types(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(
        [
            "*--rp-bts-mode=MODE*",
            "*--rp-bts-attribute=KEY:VALUE*",
            "*rp_bts_strict (bool)*",
        ]
    )


def _actions(parser: Any) -> Any:
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                yield parser.prog, choice
            for sub in action.choices.values():
                yield from _actions(sub)
        elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            yield parser.prog, action


def test_every_cli_option_has_help() -> None:
    from rp_bts_agent.cli import build_parser

    missing = [
        f"{prog} {a.option_strings or a.dest}" for prog, a in _actions(build_parser()) if not a.help
    ]
    assert missing == []


# -- 12: the e-mail sender and recipients ---------------------------------------------------------


def test_rule_recipients_are_checked_as_addresses(tmp_path: Path) -> None:
    from rp_bts_agent.config import load_config
    from rp_bts_agent.config_types import ConfigError

    (tmp_path / "rp-bts.toml").write_text(
        '[[rules]]\nname = "r"\nrecipients = ["qa@example.com", "OWNER", "the qa team"]\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path, global_file=tmp_path / "g.toml")
    assert caught.value.key == 'rules["r"].recipients[2]' or caught.value.key.endswith(
        "recipients[2]"
    )
    assert "'the qa team' is not an e-mail address" in caught.value.message


def test_the_sender_has_a_default_name() -> None:
    from rp_bts_agent.integrations.email.smtp import sender_of

    mail = build_integration(kind="email", name="m", username="qa@example.com")
    assert sender_of(mail) == "rp-bts <qa@example.com>"
    named = build_integration(
        kind="email", name="m", sender="qa@example.com", sender_name="Report Portal"
    )
    assert sender_of(named) == "Report Portal <qa@example.com>"


# -- 8: attributes where people look ------------------------------------------------------------

ATTRIBUTED = """
import pytest

@pytest.mark.rp_attributes("team:checkout", browser="firefox")
def test_a(rp_bts):
    rp_bts.attribute("build", "1234")
    assert 1 == 2
"""


def test_attributes_in_the_issue_issues_show_report_and_mail(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    from rp_bts_agent.cli import main

    pytester.makepyfile(test_x=ATTRIBUTED)
    pytester.makefile(".toml", **{"rp-bts": RULE})
    pytester.runpytest("--rp-bts")
    wanted = ("team:checkout", "browser:firefox", "build:1234")
    ((body,),) = tracker_rows(pytester.path, "SELECT description FROM issues")
    assert all(a in body for a in wanted)
    state = pytester.path / ".rp-bts"
    report = (state / "report.html").read_text(encoding="utf-8")
    assert all(a in report for a in wanted)
    mail = next((state / "outbox").glob("*.eml")).read_text(encoding="utf-8")
    assert all(a in mail for a in wanted)
    capsys.readouterr()
    assert main(["--root", str(pytester.path), "issues", "show", "LOCAL-1"]) == 0
    shown = capsys.readouterr().out
    assert all(a in shown for a in wanted)


# -- 13: notification rules from the CLI ---------------------------------------------------------


def test_a_rule_names_the_email_integration_that_sends_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        _cli(tmp_path, "integrations", "add", "email", "Team mail", "--set", "host=mx.example") == 0
    )
    rule = ("rules", "add", "fails", "--set", 'recipients=["qa@example.com"]')
    assert _cli(tmp_path, *rule, "--set", 'email="Ops mail"') == 2
    assert "no e-mail integration named 'Ops mail' (e-mail integrations: 'Team mail')" in (
        capsys.readouterr().err
    )
    assert _cli(tmp_path, *rule, "--set", 'email="Team mail"') == 0
    capsys.readouterr()
    assert _cli(tmp_path, "rules", "list") == 0
    assert "fails: failed to qa@example.com via 'Team mail'" in capsys.readouterr().out


def test_rules_cli_edits_keep_comments_and_test_says_who(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "rp-bts.toml"
    config.write_text('# our project\nlaunch = "nightly"\n', encoding="utf-8")
    assert (
        _cli(tmp_path, "rules", "add", "fails", "--set", "send_case=failed",
             "--set", 'recipients=["qa@example.com"]')
        == 0
    )  # fmt: skip
    assert _cli(tmp_path, "rules", "add", "bad", "--set", 'recipients=["not an address"]') == 2
    assert "not an e-mail address" in capsys.readouterr().err
    text = config.read_text(encoding="utf-8")
    assert text.startswith("# our project\n") and "[[rules]]" in text and "bad" not in text
    assert _cli(tmp_path, "rules", "edit", "fails", "--set", 'launch_names=["nightly"]') == 0
    capsys.readouterr()
    assert _cli(tmp_path, "rules", "list") == 0
    assert "fails: failed to qa@example.com" in capsys.readouterr().out

    results = tmp_path / ".rp-bts" / "results.json"
    results.parent.mkdir()
    failing = RunResults(Launch("nightly", "run-1"), _failures(1))
    results.write_text(failing.dumps(), encoding="utf-8")
    assert _cli(tmp_path, "rules", "test", "fails") == 0
    assert "would send to qa@example.com" in capsys.readouterr().out
    passing = RunResults(Launch("nightly", "run-2"), (TestResult("t.py::test_ok", "passed"),))
    results.write_text(passing.dumps(), encoding="utf-8")
    assert _cli(tmp_path, "rules", "test", "fails") == 1
    assert "would not send: send_case failed: no test failed" in capsys.readouterr().out
    assert _cli(tmp_path, "rules", "remove", "fails") == 0
    assert config.read_text(encoding="utf-8") == '# our project\nlaunch = "nightly"\n'
