"""One issue per bug, not per test: grouping by cause, collection and shared-fixture errors, the
storm guard, flaky tests and issues that follow their tests. End to end through pytester, serial
and with ``-n 2`` (a subprocess, as xdist needs), filing into the local tracker or Jira's server.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from jira_server import RunningJira
from rally_server import RunningRally

from conftest import results_json, tracker_rows

MODES = [pytest.param(False, id="serial"), pytest.param(True, id="xdist")]

SHOP = """
def price(item):
    if item < 0:
        return 0
    raise LookupError(f"no price for item {item} in catalogue 7f3a2b1c9d40")
"""


def run(pytester: pytest.Pytester, xdist: bool, *args: str) -> pytest.RunResult:
    if xdist:
        return pytester.runpytest_subprocess("--rp-bts", "-n", "2", *args)
    return pytester.runpytest("--rp-bts", *args)


def results(pytester: pytest.Pytester) -> dict[str, dict[str, Any]]:
    """The last run's results by full node id."""
    data = results_json(pytester.path / ".rp-bts" / "results.json")
    return {r["nodeid"]: r for r in data["results"]}


def issues(pytester: pytest.Pytester) -> list[tuple[str, str, str, str]]:
    return tracker_rows(
        pytester.path, "SELECT key, summary, status, labels FROM issues ORDER BY id"
    )


def attachment(pytester: pytest.Pytester, key: str, name: str) -> str:
    ((path,),) = tracker_rows(
        pytester.path,
        f"SELECT path FROM attachments WHERE issue_key = '{key}' AND name = '{name}'",
    )
    return (pytester.path / ".rp-bts" / path).read_text(encoding="utf-8")


def shop_suite(pytester: pytest.Pytester, config: str = "") -> None:
    """Thirty tests calling one broken function (two modules), one failing on its own assert
    and forty passing: 30 failures of one cause and one of its own, under the storm guard's
    ratio (half of the run)."""
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(shop=SHOP)
    for module in ("a", "b"):
        body = "from shop import price\n\n" + "".join(
            f"def test_price_{module}{n}():\n    assert price({n}) > 0\n\n" for n in range(15)
        )
        pytester.makepyfile(**{f"test_shop_{module}": body})
    passing = "".join(f"def test_ok_{n}():\n    pass\n\n" for n in range(40))
    pytester.makepyfile(
        test_own="def test_own_assert():\n    total = 2\n    assert total == 3\n\n" + passing
    )
    if config:
        pytester.makefile(".toml", **{"rp-bts": config})


@pytest.mark.parametrize("xdist", MODES)
def test_thirty_tests_calling_one_broken_function_file_one_issue(
    pytester: pytest.Pytester, xdist: bool
) -> None:
    shop_suite(pytester)
    result = run(pytester, xdist)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    rows = issues(pytester)
    assert len(rows) == 2  # the broken function, and the test's own assert
    data = results(pytester)
    grouped = [r for r in data.values() if r["nodeid"].startswith("test_shop_")]
    assert len(grouped) == 30
    assert {r["grouped_by"] for r in grouped} == {"cause"}
    assert len({r["fingerprint"] for r in grouped}) == 1
    assert grouped[0]["fingerprint"].startswith("rpbts2-")
    (key,) = {r["issues"][0]["key"] for r in grouped}  # each test labelled with the issue
    own = data["test_own.py::test_own_assert"]
    assert own["grouped_by"] == "test" and own["issues"][0]["key"] != key

    ((summary, description),) = tracker_rows(
        pytester.path, f"SELECT summary, description FROM issues WHERE key = '{key}'"
    )
    # the summary quotes the first failure to arrive: under xdist any of the thirty
    assert re.fullmatch(
        r"LookupError: no price for item \d+ in catalogue 7f3a2b1c9d40 \(30 tests\)", summary
    ), summary
    assert "30 test(s) failed in launch 'pytest': raised at the same place" in description
    assert "Tests (30)" in description
    assert "... and 20 more (all in affected-tests.txt)" in description
    listed = attachment(pytester, key, "affected-tests.txt")
    assert listed.startswith("30 test(s)")
    assert all(f"----- {r['nodeid']} (failed, call) -----" in listed for r in grouped)
    result.stdout.fnmatch_lines(["created   ?local? LOCAL-* test_shop_*::* (+29 more)"])


def test_group_by_test_and_the_hook(pytester: pytest.Pytester) -> None:
    """``group_by = "test"`` keeps one issue per test; a conftest hook still wins."""
    shop_suite(pytester, 'group_by = "test"\nmax_new_issues = 100\n')
    run(pytester, False)
    assert len(issues(pytester)) == 31
    assert {r["grouped_by"] for r in results(pytester).values() if r["issues"]} == {"test"}

    pytester.makeconftest(
        "def rp_bts_fingerprint(result, default):\n"
        "    return 'mine-1' if 'shop_a' in result.nodeid else None\n"
    )
    run(pytester, False)
    mine = [r for r in results(pytester).values() if r["fingerprint"] == "mine-1"]
    assert len(mine) == 15 and {r["grouped_by"] for r in mine} == {"hook"}


@pytest.mark.parametrize("xdist", MODES)
def test_a_broken_import_files_one_issue(pytester: pytest.Pytester, xdist: bool) -> None:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(
        test_fine="def test_fine():\n    pass\n",
        test_broken="import shop_module_that_is_gone\n\ndef test_never():\n    pass\n",
    )
    without = pytester.runpytest_subprocess("-p", "no:rp_bts", *(["-n", "2"] if xdist else []))
    first = run(pytester, xdist)
    assert first.ret == without.ret != pytest.ExitCode.OK  # the verdict is pytest's
    ((key, summary, _, _),) = issues(pytester)
    assert summary == (
        "Collection error in test_broken.py: ModuleNotFoundError:"
        " No module named 'shop_module_that_is_gone'"
    )
    broken = results(pytester)["test_broken.py"]
    assert broken["outcome"] == "error" and broken["phase"] == "collect"
    assert broken["grouped_by"] == "collection"
    assert broken["issues"][0]["key"] == key
    assert "no failures to file" not in first.stdout.str()

    second = run(pytester, xdist)  # the same broken module: a comment, not a second issue
    assert len(issues(pytester)) == 1
    second.stdout.fnmatch_lines([f"commented ?local? {key} (Open) test_broken.py"])


def test_each_broken_module_is_its_own_issue(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(
        test_gone="import shop_module_that_is_gone\n",
        test_syntax="def test_x(:\n    pass\n",
    )
    run(pytester, False)
    summaries = sorted(summary for _, summary, _, _ in issues(pytester))
    assert len(summaries) == 2
    assert summaries[0].startswith("Collection error in test_gone.py: ModuleNotFoundError")
    assert summaries[1].startswith("Collection error in test_syntax.py: SyntaxError")


@pytest.mark.parametrize("xdist", MODES)
def test_a_failing_session_fixture_files_one_issue(pytester: pytest.Pytester, xdist: bool) -> None:
    """The fixture is in the test module: grouping by cause alone would file one per test."""
    pytester.makeini("[pytest]\n")
    tests = "".join(f"def test_uses_db_{n}(db):\n    pass\n\n" for n in range(6))
    pytester.makepyfile(
        test_db=(
            "import pytest\n\n"
            "@pytest.fixture(scope='session')\n"
            "def db():\n"
            "    raise ConnectionError('database at 10.0.0.5:5432 is down')\n\n" + tests
        )
    )
    run(pytester, xdist)
    ((key, summary, _, _),) = issues(pytester)
    assert summary == "ConnectionError: database at 10.0.0.5:5432 is down (6 tests)"
    data = results(pytester)
    assert len(data) == 6
    assert all(r["outcome"] == "error" and r["phase"] == "setup" for r in data.values())
    assert {r["grouped_by"] for r in data.values()} == {"fixture"}
    assert {r["issues"][0]["key"] for r in data.values()} == {key}


STORM_TEST = """
def test_{n}():
    {body}
"""


def storm_suite(pytester: pytest.Pytester) -> None:
    """300 tests in three modules; 200 fail on a refused connection, raised in each test."""
    pytester.makeini("[pytest]\n")
    for module in range(3):
        body = "".join(
            STORM_TEST.format(
                n=f"{module}_{n}",
                body="raise ConnectionRefusedError('connection refused')"
                if (module * 100 + n) % 3
                else "pass",
            )
            for n in range(100)
        )
        pytester.makepyfile(**{f"test_service_{module}": body})
    pytester.makefile(
        ".toml",
        **{
            "rp-bts": '[[rules]]\nname = "all"\nsend_case = "always"\n'
            'recipients = ["qa@example.com"]\n'
        },
    )


@pytest.mark.parametrize("xdist", MODES)
def test_an_outage_trips_the_storm_guard(pytester: pytest.Pytester, xdist: bool) -> None:
    storm_suite(pytester)
    first = run(pytester, xdist)
    ((key, summary, _, _),) = issues(pytester)  # one issue, not 200
    assert summary.startswith(
        "Run broken: 200 of 300 tests failed with ConnectionRefusedError: connection refused"
    )
    data = results(pytester)
    failed = [r for r in data.values() if r["outcome"] == "failed"]
    assert len(failed) == 200
    assert {r["grouped_by"] for r in failed} == {"storm"}
    assert {r["issues"][0]["key"] for r in failed} == {key}
    first.stdout.fnmatch_lines(["storm guard fired: 200 of 300 tests failed with *"])
    ((description,),) = tracker_rows(
        pytester.path, f"SELECT description FROM issues WHERE key = '{key}'"
    )
    assert "the storm guard fired" in description and "Tests (200)" in description
    listed = attachment(pytester, key, "affected-tests.txt")
    assert listed.startswith("200 test(s)")
    assert listed.count("\nConnectionRefusedError: connection refused\n") == 200
    (mail,) = (pytester.path / ".rp-bts" / "outbox").rglob("*.eml")
    assert "rp-bts storm guard: 200 of 300 tests failed" in mail.read_text(encoding="utf-8")

    run(pytester, xdist)  # still broken: a comment on the open issue
    assert len(issues(pytester)) == 1
    ((count,),) = tracker_rows(
        pytester.path, f"SELECT count(*) FROM comments WHERE issue_key = '{key}'"
    )
    assert count == 1


def test_max_new_issues_bounds_a_run(pytester: pytest.Pytester) -> None:
    """25 distinct assertion failures: more than ``max_new_issues`` (here 10) new issues."""
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(
        test_many="".join(f"def test_{n}():\n    assert {n} == -1\n\n" for n in range(25))
    )
    pytester.makefile(".toml", **{"rp-bts": "max_new_issues = 10\n"})
    result = run(pytester, False)
    ((_, summary, _, _),) = issues(pytester)
    assert "the run would open 25 new issues, more than max_new_issues = 10" in summary
    result.stdout.fnmatch_lines(["storm guard fired: the run would open 25 new issues*"])


FLAKY = """
import pathlib
import pytest

@pytest.mark.flaky(reruns=2)
def test_sometimes():
    marker = pathlib.Path(__file__).with_name("tried-" + __name__)
    if not marker.exists():
        marker.write_text("once")
        raise TimeoutError("the shop answered too late")

def test_steady():
    pass
"""


@pytest.mark.parametrize("xdist", MODES)
def test_a_test_passing_on_rerun_is_labelled_flaky(pytester: pytest.Pytester, xdist: bool) -> None:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_flaky=FLAKY)
    result = run(pytester, xdist, "-p", "rerunfailures")
    assert result.ret == pytest.ExitCode.OK
    ((key, summary, _, labels),) = issues(pytester)
    assert summary == "test_sometimes: TimeoutError: the shop answered too late"
    assert "flaky" in json.loads(labels)
    sometimes = results(pytester)["test_flaky.py::test_sometimes"]
    assert sometimes["outcome"] == "passed" and sometimes["flaky"] is True
    assert sometimes["issues"][0]["key"] == key
    result.stdout.fnmatch_lines(
        ["flaky     test_flaky.py::test_sometimes: filed with the label flaky"]
    )


def test_flaky_skip_files_nothing(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_flaky=FLAKY)
    pytester.makefile(".toml", **{"rp-bts": 'flaky = "skip"\n'})
    result = run(pytester, False, "-p", "rerunfailures")
    assert issues(pytester) == []
    result.stdout.fnmatch_lines(["flaky     test_flaky.py::test_sometimes: not filed"])


def test_flaky_from_the_record_of_runs(pytester: pytest.Pytester) -> None:
    """Failing, passing, failing again within ``flaky.window`` runs: the failure is flaky."""
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_switch=SWITCH)
    flag = pytester.path / "broken.flag"
    flag.write_text("")
    run(pytester, False)
    flag.unlink()
    run(pytester, False)
    flag.write_text("")
    third = run(pytester, False)
    third.stdout.fnmatch_lines(["flaky     test_switch.py::test_checkout: filed *"])
    assert results(pytester)["test_switch.py::test_checkout"]["flaky"] is True


AGAIN = """
import pathlib

def test_sometimes():
    marker = pathlib.Path(__file__).with_name("tried")
    if not marker.exists():
        marker.write_text("once")
        raise TimeoutError("the shop answered too late")
"""


def flaky_again(pytester: pytest.Pytester, xdist: bool = False) -> list[pytest.RunResult]:
    """Run 1 fails (no rerun) and files an issue; runs 2 and 3 fail, then pass on the rerun:
    the same fingerprint, flaky, on the issue run 1 filed."""
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_again=AGAIN)
    runs = [run(pytester, xdist)]
    for _ in range(2):
        (pytester.path / "tried").unlink()
        runs.append(run(pytester, xdist, "-p", "rerunfailures", "--reruns", "1"))
    assert runs[0].ret == pytest.ExitCode.TESTS_FAILED
    assert [r.ret for r in runs[1:]] == [pytest.ExitCode.OK] * 2
    assert results(pytester)["test_again.py::test_sometimes"]["flaky"] is True
    return runs


def comments(pytester: pytest.Pytester, key: str) -> list[str]:
    rows = tracker_rows(pytester.path, f"SELECT body FROM comments WHERE issue_key = '{key}'")
    return [body for (body,) in rows]


@pytest.mark.parametrize("xdist", MODES)
def test_a_flaky_failure_labels_the_existing_issue(pytester: pytest.Pytester, xdist: bool) -> None:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_again=AGAIN)
    first = run(pytester, xdist)
    assert first.ret == pytest.ExitCode.TESTS_FAILED
    ((key, _, _, labels),) = issues(pytester)
    assert "flaky" not in json.loads(labels)  # a plain failure: no label yet
    for _ in range(2):  # flaky twice: labelled once
        (pytester.path / "tried").unlink()
        again = run(pytester, xdist, "-p", "rerunfailures", "--reruns", "1")
        assert again.ret == pytest.ExitCode.OK
        ((same, _, _, labels),) = issues(pytester)
        assert same == key and json.loads(labels).count("flaky") == 1
    assert results(pytester)["test_again.py::test_sometimes"]["flaky"] is True
    assert results(pytester)["test_again.py::test_sometimes"]["issues"][0]["key"] == key
    assert len(comments(pytester, key)) == 2  # each flaky run commented on the issue


@pytest.mark.parametrize("policy", ["skip", "file"])
def test_flaky_skip_or_file_labels_no_existing_issue(
    pytester: pytest.Pytester, policy: str
) -> None:
    pytester.makefile(".toml", **{"rp-bts": f'flaky = "{policy}"\n'})
    flaky_again(pytester)
    ((key, _, _, labels),) = issues(pytester)
    assert "flaky" not in json.loads(labels)
    # "skip" files nothing for a flaky result, "file" comments as for any failure
    assert len(comments(pytester, key)) == (2 if policy == "file" else 0)


def test_a_flaky_failure_labels_the_existing_jira_issue(
    pytester: pytest.Pytester, jira: RunningJira, monkeypatch: pytest.MonkeyPatch
) -> None:
    jira.login_env(monkeypatch)
    pytester.makefile(".toml", **{"rp-bts": jira.integration_toml()})
    flaky_again(pytester)
    ((key, issue),) = jira.state.issues.items()
    assert issue["fields"]["labels"].count("flaky") == 1
    assert issue["fields"]["labels"][0].startswith("rpbts")  # the fingerprint stays
    assert len(jira.state.comments[key]) == 2
    edits = [path for method, path in jira.state.requests if method == "PUT"]
    assert edits == [f"/rest/api/2/issue/{key}"]  # once: the third run found the label there


def test_flaky_file_labels_no_existing_jira_issue(
    pytester: pytest.Pytester, jira: RunningJira, monkeypatch: pytest.MonkeyPatch
) -> None:
    jira.login_env(monkeypatch)
    config = 'flaky = "file"\n\n' + jira.integration_toml()
    pytester.makefile(".toml", **{"rp-bts": config})
    flaky_again(pytester)
    ((key, issue),) = jira.state.issues.items()
    assert "flaky" not in issue["fields"]["labels"] and len(jira.state.comments[key]) == 2
    assert not [path for method, path in jira.state.requests if method == "PUT"]


def test_a_flaky_failure_tags_the_existing_rally_defect(
    pytester: pytest.Pytester, rally: RunningRally, monkeypatch: pytest.MonkeyPatch
) -> None:
    rally.login_env(monkeypatch)
    pytester.makefile(".toml", **{"rp-bts": rally.integration_toml()})
    flaky_again(pytester)
    (defect,) = rally.state.defects()
    tags = [t["Name"] for t in defect["Tags"]["_tagsNameArray"]]
    assert tags[0].startswith("rpbts") and tags[1:] == ["flaky"]
    assert len(rally.state.posts_of(defect["ObjectID"])) == 2
    assert rally.state.count("POST defect/{oid}") == 1  # once: the third run found the tag there


SWITCH = """
import pathlib

def test_checkout():
    if pathlib.Path(__file__).with_name("broken.flag").exists():
        raise RuntimeError("checkout is down")

def test_other():
    pass
"""


@pytest.mark.parametrize("xdist", MODES)
def test_three_passing_runs_resolve_a_local_issue(pytester: pytest.Pytester, xdist: bool) -> None:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_switch=SWITCH)
    pytester.makefile(".toml", **{"rp-bts": 'on_pass = "resolve"\n'})
    flag = pytester.path / "broken.flag"
    flag.write_text("")
    run(pytester, xdist)
    ((key, _, status, _),) = issues(pytester)
    assert status == "Open"
    flag.unlink()
    for _ in range(2):
        run(pytester, xdist)
        assert issues(pytester)[0][2] == "Open"  # one passing run, two: not yet
    third = run(pytester, xdist)
    assert issues(pytester)[0][2] == "Closed"
    third.stdout.fnmatch_lines([f"passing   ?local? {key} (Closed): since run *, resolved"])
    bodies = [
        body
        for (body,) in tracker_rows(
            pytester.path, f"SELECT body FROM comments WHERE issue_key = '{key}'"
        )
    ]
    assert len(bodies) == 1 and bodies[0].startswith("Passing since run ")
    assert "passed in 3 runs in a row" in bodies[0]
    # the passing test was the only result kept apart from the plain ones
    assert results(pytester)["test_switch.py::test_checkout"]["outcome"] == "passed"
    fourth = run(pytester, xdist)  # once: the issue no longer waits on its test
    assert "passing " not in fourth.stdout.str()
    assert len(tracker_rows(pytester.path, "SELECT id FROM comments")) == 1


def test_on_pass_comment_and_a_failure_restarts_the_count(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_switch=SWITCH)
    pytester.makefile(".toml", **{"rp-bts": "[on_pass]\nruns = 2\n"})
    flag = pytester.path / "broken.flag"
    flag.write_text("")
    run(pytester, False)
    flag.unlink()
    run(pytester, False)
    flag.write_text("")
    run(pytester, False)  # fails again: the streak starts over
    flag.unlink()
    run(pytester, False)
    assert tracker_rows(pytester.path, "SELECT body FROM comments WHERE body LIKE 'Pass%'") == []
    last = run(pytester, False)
    last.stdout.fnmatch_lines(["passing   ?local? LOCAL-1 (Open): since run *, commented"])
    assert issues(pytester)[0][2] == "Open"  # on_pass = "comment" (the default) leaves it open


@pytest.mark.parametrize("xdist", MODES)
def test_three_passing_runs_resolve_a_jira_issue(
    pytester: pytest.Pytester, jira: RunningJira, monkeypatch: pytest.MonkeyPatch, xdist: bool
) -> None:
    jira.login_env(monkeypatch)
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_switch=SWITCH)
    config = 'on_pass = "resolve"\n\n' + jira.integration_toml(resolve_transition='"Done"')
    pytester.makefile(".toml", **{"rp-bts": config})
    flag = pytester.path / "broken.flag"
    flag.write_text("")
    run(pytester, xdist)
    (key,) = jira.state.issues
    assert jira.state.issues[key]["fields"]["status"]["name"] == "To Do"
    flag.unlink()
    for _ in range(3):
        last = run(pytester, xdist)
    assert jira.state.issues[key]["fields"]["status"]["name"] == "Done"
    last.stdout.fnmatch_lines([f"passing   ?Shop bugs? {key} (Done): since run *, resolved"])
    comments = [c["body"] for c in jira.state.comments[key]]
    assert len(comments) == 1 and "Passing since run" in comments[0]
