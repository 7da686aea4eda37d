"""The demo suite filing into the Jira test server: serial and xdist, Cloud and Data Center."""

from __future__ import annotations

from typing import Any

import pytest
from jira_server import RunningJira

from conftest import DEMO_FINGERPRINTS, all_files, by_nodeid, results_json
from rp_bts_agent.cli import main


@pytest.fixture
def jira_demo(
    demo: pytest.Pytester, jira: RunningJira, monkeypatch: pytest.MonkeyPatch
) -> pytest.Pytester:
    jira.login_env(monkeypatch)
    configure(demo, jira, "new")
    return demo


def configure(pytester: pytest.Pytester, jira: RunningJira, on_closed: str) -> None:
    integration = jira.integration_toml(
        issue_type='"Bug"',
        fields='{ priority = "High", components = ["Checkout"] }',
        on_closed=f'"{on_closed}"',
    )
    pytester.makefile(".toml", **{"rp-bts": 'launch = "nightly"\n\n' + integration})


def _results(pytester: pytest.Pytester) -> dict[str, dict[str, Any]]:
    return by_nodeid(results_json(pytester.path / ".rp-bts" / "results.json"))


def _check_first_run(jira: RunningJira, pytester: pytest.Pytester) -> None:
    state = jira.state
    assert len(state.issues) == DEMO_FINGERPRINTS
    data = _results(pytester)
    fingerprints = {r["fingerprint"] for r in data.values() if r["issues"]}
    assert len(fingerprints) == DEMO_FINGERPRINTS
    for fingerprint in fingerprints:
        (issue,) = state.by_label(fingerprint)
        fields = issue["fields"]
        assert fields["labels"] == [fingerprint]
        assert fields["priority"] == {"name": "High"}
        assert fields["components"] == [{"name": "Checkout"}]
        assert fields["issuetype"]["name"] == "Bug"
        assert "nightly" in fields["description"]
    key = data["test_key"]["issues"][0]["key"]
    names = {a["filename"]: a["content"] for a in state.attachments[key]}
    assert names["cart.txt"] == b"cart contents"
    assert "failure-details.txt" in names
    sauce_key = data["test_sauce"]["issues"][0]["key"]
    (link,) = state.remote_links[sauce_key]
    assert link["globalId"] == "rp-bts:saucelabs-job-job-123"
    totals = {data[f"test_totals[items{i}]"]["issues"][0]["key"] for i in range(3)}
    assert len(totals) == 1
    assert data["test_key"]["issues"][0]["url"] == f"{jira.url}/browse/{key}"
    assert data["test_key"]["issues"][0]["status"] == "To Do"


def test_files_then_comments_serial(jira_demo: pytest.Pytester, jira: RunningJira) -> None:
    first = jira_demo.runpytest("--rp-bts")
    assert first.ret == pytest.ExitCode.TESTS_FAILED
    first.stdout.fnmatch_lines(["created   ?Shop bugs? SHOP-* test_demo.py::*"])
    _check_first_run(jira, jira_demo)
    issues = dict(jira.state.issues)

    second = jira_demo.runpytest("--rp-bts")
    assert second.ret == pytest.ExitCode.TESTS_FAILED
    assert "created " not in second.stdout.str()
    second.stdout.fnmatch_lines(["commented ?Shop bugs? SHOP-*"])
    assert jira.state.issues.keys() == issues.keys()
    assert sorted(len(c) for c in jira.state.comments.values()) == [1] * DEMO_FINGERPRINTS
    searches = [p for _, p in jira.state.requests if "/search" in p]
    expected = "/search/jql?" if jira.state.cloud else "/search?"
    assert all(expected in p for p in searches)


def test_files_once_with_xdist(jira_demo: pytest.Pytester, jira: RunningJira) -> None:
    pytest.importorskip("xdist")
    result = jira_demo.runpytest_subprocess("--rp-bts", "-n", "2")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*2 workers*"])
    _check_first_run(jira, jira_demo)
    again = jira_demo.runpytest_subprocess("--rp-bts", "-n", "2")
    assert again.ret == pytest.ExitCode.TESTS_FAILED
    assert len(jira.state.issues) == DEMO_FINGERPRINTS
    assert sum(len(c) for c in jira.state.comments.values()) == DEMO_FINGERPRINTS


@pytest.mark.parametrize("policy", ["new", "reopen"])
def test_closed_issue_follows_on_closed(
    pytester: pytest.Pytester, jira: RunningJira, monkeypatch: pytest.MonkeyPatch, policy: str
) -> None:
    jira.login_env(monkeypatch)
    configure(pytester, jira, policy)
    pytester.makepyfile("def test_a():\n    assert 0\n")
    pytester.runpytest("--rp-bts")
    assert list(jira.state.issues) == ["SHOP-1"]
    jira.state.set_status("SHOP-1", "Done")
    pytester.runpytest("--rp-bts")
    if policy == "new":
        assert list(jira.state.issues) == ["SHOP-1", "SHOP-2"]
        assert jira.state.links == [{"type": "Relates", "inward": "SHOP-2", "outward": "SHOP-1"}]
        assert jira.state.issues["SHOP-1"]["fields"]["status"]["name"] == "Done"
    else:
        assert list(jira.state.issues) == ["SHOP-1"]
        assert jira.state.issues["SHOP-1"]["fields"]["status"]["name"] != "Done"
        assert len(jira.state.comments["SHOP-1"]) == 1


def test_issue_marker_shows_status(
    pytester: pytest.Pytester, jira: RunningJira, monkeypatch: pytest.MonkeyPatch
) -> None:
    jira.login_env(monkeypatch)
    configure(pytester, jira, "new")
    pytester.makepyfile(
        """
        import pytest
        def test_a():
            assert 0
        @pytest.mark.issue("SHOP-1", integration="Shop bugs")
        def test_b():
            assert 1 == 2
        """
    )
    pytester.runpytest("--rp-bts", "-k", "test_a")
    jira.state.set_status("SHOP-1", "In Progress")
    result = pytester.runpytest("--rp-bts")
    result.stdout.fnmatch_lines(["known     ?Shop bugs? SHOP-1 (In Progress) test_*::test_b"])
    assert len(jira.state.issues) == 1
    jira.state.set_status("SHOP-1", "Done")
    flagged = pytester.runpytest("--rp-bts", "-k", "test_b")
    flagged.stdout.fnmatch_lines(
        ["known     ?Shop bugs? SHOP-1 (Done) test_*::test_b: Done, but the test still fails"]
    )
    assert _results(pytester)["test_b"]["issues"][0]["status"] == "Done"


def test_jira_down_changes_no_verdict(
    pytester: pytest.Pytester, jira: RunningJira, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JIRA_USER", "nobody@example.com")
    monkeypatch.setenv("JIRA_TOKEN", "wrong-canary-token-77")
    configure(pytester, jira, "new")
    pytester.makepyfile("def test_a():\n    assert 0\ndef test_b():\n    pass\n")
    result = pytester.runpytest("--rp-bts")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "INTERNALERROR" not in result.stdout.str()
    assert "HTTP 401" in result.stdout.str()
    assert "wrong-canary-token-77" not in result.stdout.str() + result.stderr.str()
    for path in all_files(pytester.path):
        assert b"wrong-canary-token-77" not in path.read_bytes(), path
    assert jira.state.issues == {}


def test_manual_post_and_link_with_jira(jira_demo: pytest.Pytester, jira: RunningJira) -> None:
    """ReportPortal's Post Issue and Link Issue on a saved results file, against Jira."""
    from rp_bts_agent.cli import main

    saved = jira_demo.path / "run.json"
    jira_demo.runpytest("--rp-bts", "--rp-bts-mode=dry-run", f"--rp-bts-results={saved}")
    assert jira.state.issues == {}
    root = ["--root", str(jira_demo.path)]
    assert main([*root, "post", str(saved), "test_key", "--include", "logs"]) == 0
    (issue,) = jira.state.issues.values()
    key = issue["key"]
    jira.state.set_status(key, "In Progress")
    assert main([*root, "link", str(saved), "test_sauce", f"{jira.url}/browse/{key}"]) == 0
    linked = by_nodeid(results_json(saved))["test_sauce"]["issues"]
    assert [(i["key"], i["action"], i["status"]) for i in linked] == [
        (key, "linked", "In Progress")
    ]


def test_jira_down_queues_then_flush_files_once(
    jira_demo: pytest.Pytester, jira: RunningJira
) -> None:
    """Nothing lost: work Jira could not take is kept, and `rp-bts flush` files it, once."""
    from rp_bts_agent.cli import main

    jira.state.outage = True
    result = jira_demo.runpytest("--rp-bts")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["queued    ?Shop bugs? - test_demo.py::*kept for rp-bts flush*"])
    queued = [r for r in _results(jira_demo).values() if r["issues"]]
    assert {i["action"] for r in queued for i in r["issues"]} == {"queued"}
    calls_while_down = len(jira.state.requests)
    assert calls_while_down <= 10  # one breaker trip, not a call per failure

    jira.state.outage = False
    root = ["--root", str(jira_demo.path)]
    assert main([*root, "flush"]) == 0
    assert len(jira.state.issues) == DEMO_FINGERPRINTS
    assert main([*root, "flush"]) == 0  # nothing left: nothing filed twice
    assert len(jira.state.issues) == DEMO_FINGERPRINTS


def test_a_flush_asks_a_tracker_that_is_down_once(
    jira_demo: pytest.Pytester, jira: RunningJira
) -> None:
    """Three kept runs, Jira still down: the flush keeps all three after one breaker trip."""
    from rp_bts_agent import http
    from rp_bts_agent.cli import main
    from rp_bts_agent.outbox import Outbox
    from rp_bts_agent.state import State

    jira.state.outage = True
    for _ in range(3):
        jira_demo.runpytest("--rp-bts", "-k", "test_key")
    kept = Outbox(State(jira_demo.path).outbox_db).entries()
    assert len({entry.run_id for entry in kept}) == 3
    calls = len(jira.state.requests)
    assert main(["--root", str(jira_demo.path), "flush"]) == 0
    assert len(jira.state.requests) - calls == 1 + http.RETRIES  # one call, its retries
    assert len(Outbox(State(jira_demo.path).outbox_db).entries()) == 3


def test_a_run_flushes_earlier_leftovers_first(
    jira_demo: pytest.Pytester, jira: RunningJira
) -> None:
    jira.state.outage = True
    jira_demo.runpytest("--rp-bts", "-k", "test_key")
    assert jira.state.issues == {}
    jira.state.outage = False
    jira_demo.runpytest("--rp-bts", "-k", "test_empty_cart")
    summaries = sorted(i["fields"]["summary"] for i in jira.state.issues.values())
    assert [s.split(":")[0] for s in summaries] == ["test_empty_cart", "test_key"]


def test_a_refusal_is_set_aside_and_retried_once_the_config_changes(
    jira_demo: pytest.Pytester, jira: RunningJira, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 12, point 2: a refused entry is kept with what it was refused with, listed by
    ``flush --list``, said in one line per run, and filed once the configuration is fixed."""
    root = str(jira_demo.path)
    config = jira_demo.path / "rp-bts.toml"
    right = config.read_text()
    config.write_text(right.replace('issue_type = "Bug"', 'issue_type = "Nope"'))
    jira_demo.runpytest_subprocess("--rp-bts")
    assert jira.state.issues == {}
    capsys.readouterr()
    calls = len(jira.state.requests)
    assert main(["--root", root, "flush"]) == 0  # nothing new failed: it waits for a fix
    out = capsys.readouterr().out
    assert out.startswith(f"set aside [Shop bugs] {DEMO_FINGERPRINTS} group(s)") and "Nope" in out
    assert len(out.splitlines()) == 1
    assert len(jira.state.requests) == calls  # not retried with the same configuration
    assert main(["--root", root, "flush", "--list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == DEMO_FINGERPRINTS and all(
        " failed " in line and "Nope" in line for line in listed
    )

    again = jira_demo.runpytest_subprocess(
        "--rp-bts", "-k", "test_key"
    )  # still wrong: one line for all
    flushed = [line for line in again.outlines if line.startswith("flush:")]
    assert len(flushed) == 1 and flushed[0].startswith(
        f"flush: set aside [Shop bugs] {DEMO_FINGERPRINTS} group(s)"
    )

    dropped = int(listed[0].split()[0])
    assert main(["--root", root, "flush", "--drop", str(dropped)]) == 0
    assert "dropped 1 entry" in capsys.readouterr().out
    config.write_text(right)  # fixed: the refused entries go on the next flush
    assert main(["--root", root, "flush"]) == 0
    out = capsys.readouterr().out
    # every fingerprint once (the one dropped was filed by the second run's entry)
    assert out.count("created   [Shop bugs]") + out.count("commented [Shop bugs]") == (
        DEMO_FINGERPRINTS
    )
    assert len({i["fields"]["labels"][0] for i in jira.state.issues.values()}) == len(
        jira.state.issues
    )
    assert main(["--root", root, "flush", "--list"]) == 0
    assert capsys.readouterr().out.strip() == "nothing kept"


def test_flush_retry_failed_and_drop_all_failed(
    jira_demo: pytest.Pytester, jira: RunningJira, capsys: pytest.CaptureFixture[str]
) -> None:
    root = str(jira_demo.path)
    jira.state.can_create = False  # a refusal the configuration does not explain
    jira_demo.runpytest_subprocess("--rp-bts", "-k", "test_key")
    assert main(["--root", root, "flush", "--retry-failed"]) == 1  # tried, refused again
    assert "retrying 1 refused entr" in capsys.readouterr().out
    assert main(["--root", root, "flush", "--all-failed"]) == 0
    assert main(["--root", root, "flush", "--list"]) == 0
    assert capsys.readouterr().out.strip().endswith("nothing kept")
    with pytest.raises(SystemExit):
        main(["--root", root, "flush", "--drop", "x"])


def test_link_mode_keeps_nothing_for_a_replay(
    jira_demo: pytest.Pytester, jira: RunningJira
) -> None:
    """A replay files issues, which link mode never does: nothing goes to the outbox."""
    jira.state.outage = True
    jira_demo.runpytest("--rp-bts", "--rp-bts-mode=link", "-k", "test_key")
    (ref,) = _results(jira_demo)["test_key"]["issues"]
    assert ref["action"] == "failed"
    assert "kept for" not in ref["error"]
    assert not (jira_demo.path / ".rp-bts" / "outbox.db").exists()


def test_a_repeated_process_says_already_commented(
    jira_demo: pytest.Pytester, jira: RunningJira, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 12, point 14: Jira finds the run's marker in a comment on the second
    ``rp-bts process`` of the same results; nothing is added and the line says so."""
    jira_demo.runpytest("--rp-bts")
    shard = jira_demo.path / "shard.json"
    jira_demo.runpytest("--rp-bts", "--rp-bts-mode=dry-run", f"--rp-bts-results={shard}")
    root, merged = ["--root", str(jira_demo.path)], jira_demo.path / "merged.json"
    capsys.readouterr()
    assert main([*root, "process", str(shard), "--output", str(merged)]) == 0
    first = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("commented [Shop bugs] SHOP-") for line in first) == (
        DEMO_FINGERPRINTS
    )
    comments = {key: len(c) for key, c in jira.state.comments.items()}
    assert sorted(comments.values()) == [1] * DEMO_FINGERPRINTS

    assert main([*root, "process", str(shard), "--output", str(merged)]) == 0
    again = capsys.readouterr().out.splitlines()
    assert not any(line.startswith("commented ") for line in again)
    assert sum(line.startswith("already commented [Shop bugs] SHOP-") for line in again) == (
        DEMO_FINGERPRINTS
    )
    assert {key: len(c) for key, c in jira.state.comments.items()} == comments
    actions = {i["action"] for r in results_json(merged)["results"] for i in r["issues"]}
    assert actions == {"already commented"}
