"""The demo suite filing into the Rally test server: serial and xdist, API key and Basic."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from rally_server import (
    API_KEY,
    PASSWORD,
    RunningRally,
)

from conftest import ATTACHING, DEMO_FINGERPRINTS, all_files, by_nodeid, killed_when, results_json

NAME = "Rally defects"


def configure(
    pytester: pytest.Pytester, rally: RunningRally, auth: str = "api-key", **overrides: str
) -> None:
    keys = {
        "name": f'"{NAME}"',
        "issue_type": '"Defect"',
        "fields": '{ Severity = "Major Problem", "Found In" = "1.4.2", c_Component = "Checkout" }',
        **overrides,
    }
    integration = rally.integration_toml(auth, **keys)
    pytester.makefile(".toml", **{"rp-bts": 'launch = "nightly"\n\n' + integration})


@pytest.fixture(params=["api-key", "basic"])
def auth(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def rally_demo(
    demo: pytest.Pytester, rally: RunningRally, monkeypatch: pytest.MonkeyPatch, auth: str
) -> pytest.Pytester:
    rally.login_env(monkeypatch)
    configure(demo, rally, auth)
    return demo


def _results(pytester: pytest.Pytester) -> dict[str, dict[str, Any]]:
    return by_nodeid(results_json(pytester.path / ".rp-bts" / "results.json"))


def _check_first_run(rally: RunningRally, pytester: pytest.Pytester) -> None:
    state = rally.state
    defects = state.defects()
    assert len(defects) == DEMO_FINGERPRINTS
    data = _results(pytester)
    fingerprints = {r["fingerprint"] for r in data.values() if r["issues"]}
    assert len(fingerprints) == DEMO_FINGERPRINTS
    for fingerprint in fingerprints:
        (defect,) = [
            d for d in defects if fingerprint in [t["Name"] for t in d["Tags"]["_tagsNameArray"]]
        ]
        assert [t["Name"] for t in defect["Tags"]["_tagsNameArray"]] == [fingerprint]
        assert (defect["Severity"], defect["FoundInBuild"], defect["c_Component"]) == (
            "Major Problem",
            "1.4.2",
            "Checkout",
        )
        assert defect["Project"]["_refObjectName"] == "Shop"
        assert "nightly" in defect["Description"] and fingerprint in defect["Description"]
    assert sorted(state.tags()) == sorted(fingerprints)
    ref = data["test_key"]["issues"][0]
    names = {a["Name"]: a["bytes"] for a in state.attachments_of(ref["key"])}
    assert names["cart.txt"] == b"cart contents"
    assert b"KeyError: 'kiwi'" in names["failure-details.txt"]
    defect = state.defect(ref["key"])
    assert "<pre>" in defect["Description"] and "KeyError" in defect["Description"]
    assert ref["url"] == f"{rally.url}/#/{state.project}/detail/defect/{defect['ObjectID']}"
    assert (ref["status"], ref["action"]) == ("Submitted / Defined", "created")
    totals = {data[f"test_totals[items{i}]"]["issues"][0]["key"] for i in range(3)}
    assert len(totals) == 1
    sauce = state.defect(data["test_sauce"]["issues"][0]["key"])
    assert "job-123" in sauce["Description"]


def test_files_then_posts_once_serial(rally_demo: pytest.Pytester, rally: RunningRally) -> None:
    first = rally_demo.runpytest("--rp-bts")
    assert first.ret == pytest.ExitCode.TESTS_FAILED
    first.stdout.fnmatch_lines([f"created   ?{NAME}? DE* test_demo.py::*"])
    _check_first_run(rally, rally_demo)
    keys = [d["FormattedID"] for d in rally.state.defects()]

    second = rally_demo.runpytest("--rp-bts")
    assert second.ret == pytest.ExitCode.TESTS_FAILED
    assert "created " not in second.stdout.str()
    second.stdout.fnmatch_lines([f"commented ?{NAME}? DE*"])
    assert [d["FormattedID"] for d in rally.state.defects()] == keys
    assert [len(rally.state.posts_of(key)) for key in keys] == [1] * DEMO_FINGERPRINTS
    assert rally.state.count("POST tag/create") == DEMO_FINGERPRINTS  # found, not made, again


def test_files_once_with_xdist(rally_demo: pytest.Pytester, rally: RunningRally) -> None:
    pytest.importorskip("xdist")
    result = rally_demo.runpytest_subprocess("--rp-bts", "-n", "2")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*2 workers*"])
    _check_first_run(rally, rally_demo)
    again = rally_demo.runpytest_subprocess("--rp-bts", "-n", "2")
    assert again.ret == pytest.ExitCode.TESTS_FAILED
    assert len(rally.state.defects()) == DEMO_FINGERPRINTS
    posts = [len(rally.state.posts_of(d["ObjectID"])) for d in rally.state.defects()]
    assert posts == [1] * DEMO_FINGERPRINTS


@pytest.mark.parametrize("policy", ["new", "reopen"])
def test_closed_defect_follows_on_closed(
    pytester: pytest.Pytester, rally: RunningRally, monkeypatch: pytest.MonkeyPatch, policy: str
) -> None:
    rally.login_env(monkeypatch)
    configure(pytester, rally, on_closed=f'"{policy}"')
    pytester.makepyfile("def test_a():\n    assert 0\n")
    pytester.runpytest("--rp-bts")
    assert [d["FormattedID"] for d in rally.state.defects()] == ["DE1"]
    rally.state.set_state("DE1", "Closed")
    result = pytester.runpytest("--rp-bts")
    if policy == "new":
        assert [d["FormattedID"] for d in rally.state.defects()] == ["DE1", "DE2"]
        assert (
            "An earlier issue for this failure, DE1, is closed."
            in (rally.state.defect("DE2")["Description"])
        )
        assert rally.state.defect("DE1")["State"] == "Closed"
        result.stdout.fnmatch_lines([f"created   ?{NAME}? DE2 *"])
    else:
        assert [d["FormattedID"] for d in rally.state.defects()] == ["DE1"]
        assert rally.state.defect("DE1")["State"] == "Open"
        assert len(rally.state.posts_of("DE1")) == 1


def test_issue_marker_links_with_live_status(
    pytester: pytest.Pytester, rally: RunningRally, monkeypatch: pytest.MonkeyPatch
) -> None:
    rally.login_env(monkeypatch)
    configure(pytester, rally)
    for n in range(12):
        rally.state.file(Name=f"older bug {n}")
    rally.state.set_state("DE12", "Open")
    pytester.makepyfile(
        f"""
        import pytest
        @pytest.mark.issue("DE12", integration="{NAME}")
        def test_b():
            assert 1 == 2
        """
    )
    result = pytester.runpytest("--rp-bts")
    result.stdout.fnmatch_lines([f"known     ?{NAME}? DE12 (Open / Defined) test_*::test_b"])
    assert len(rally.state.defects()) == 12  # linked, never filed
    (ref,) = _results(pytester)["test_b"]["issues"]
    oid = rally.state.defect("DE12")["ObjectID"]
    assert ref["url"] == f"{rally.url}/#/{rally.state.project}/detail/defect/{oid}"
    rally.state.set_state("DE12", "Closed")
    flagged = pytester.runpytest("--rp-bts")
    flagged.stdout.fnmatch_lines(
        [
            f"known     ?{NAME}? DE12 (Closed / Defined) test_*::test_b:"
            " Closed / Defined, but the test still fails"
        ]
    )


def test_rally_down_queues_then_flush_files_once(
    rally_demo: pytest.Pytester, rally: RunningRally
) -> None:
    """Nothing lost: work Rally could not take is kept, and `rp-bts flush` files it, once."""
    from rp_bts_agent.cli import main

    rally.state.outage = True
    result = rally_demo.runpytest("--rp-bts")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([f"queued    ?{NAME}? - test_demo.py::*kept for rp-bts flush*"])
    queued = [r for r in _results(rally_demo).values() if r["issues"]]
    assert {i["action"] for r in queued for i in r["issues"]} == {"queued"}
    assert len(rally.state.requests) <= 10  # one breaker trip, not a call per failure

    rally.state.outage = False
    root = ["--root", str(rally_demo.path)]
    assert main([*root, "flush"]) == 0
    assert len(rally.state.defects()) == DEMO_FINGERPRINTS
    assert main([*root, "flush"]) == 0  # nothing left: nothing filed twice
    assert len(rally.state.defects()) == DEMO_FINGERPRINTS


def test_throttled_rally_is_waited_out(rally_demo: pytest.Pytester, rally: RunningRally) -> None:
    rally.state.throttle(times=2, retry_after="1")
    result = rally_demo.runpytest("--rp-bts", "-k", "test_key")
    result.stdout.fnmatch_lines(
        [f"created   ?{NAME}? DE1 (Submitted / Defined) test_demo.py::test_key"]
    )
    assert len(rally.state.defects()) == 1
    throttled = len(rally.state.requests) - sum(rally.state.counts.values())
    assert throttled == 2  # answered 429, waited out, asked again


def test_a_refusal_is_one_line_naming_the_field(
    pytester: pytest.Pytester, rally: RunningRally, monkeypatch: pytest.MonkeyPatch
) -> None:
    rally.login_env(monkeypatch)
    configure(pytester, rally, fields='{ Severity = "Catastrophic" }')
    pytester.makepyfile("def test_a():\n    assert 0\n")
    result = pytester.runpytest("--rp-bts")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "INTERNALERROR" not in result.stdout.str()
    lines = [line for line in result.stdout.lines if "Catastrophic" in line]
    assert lines and all(
        'Validation error: Defect.Severity "Catastrophic" is not an allowed value' in line
        for line in lines
    )
    assert rally.state.defects() == []
    (ref,) = _results(pytester)["test_a"]["issues"]
    assert ref["action"] == "failed"


def test_no_credential_or_token_in_any_output(
    rally_demo: pytest.Pytester, rally: RunningRally, auth: str
) -> None:
    """The API key, the password and every security token stay out of output, logs (at DEBUG,
    where urllib3 logs each URL), results, reports and what Rally keeps."""
    result = rally_demo.runpytest(
        "--rp-bts",
        "--rp-bts-report=report.html",
        "-o",
        "log_cli=true",
        "--log-level=DEBUG",
        "--log-file=pytest.log",
        "--log-file-level=DEBUG",
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    rally_demo.runpytest("--rp-bts", "--log-file=again.log", "--log-file-level=DEBUG")
    tokens = list(rally.state.tokens)
    assert bool(tokens) == (auth == "basic")
    secrets = [API_KEY, PASSWORD, *tokens]
    texts = [result.stdout.str(), result.stderr.str()]
    texts += [path.read_text(errors="replace") for path in all_files(rally_demo.path)]
    kept = [d["Description"] for d in rally.state.defects()]
    kept += [p["Text"] for d in rally.state.defects() for p in rally.state.posts_of(d["ObjectID"])]
    kept += [repr(r.body) + repr(r.path) for r in rally.state.requests]
    for secret in secrets:
        for text in texts + kept:
            assert secret not in text
    assert "security/authorize" in (rally_demo.path / "pytest.log").read_text() or auth != "basic"


def test_a_killed_run_is_completed_without_its_own_discussion_post(
    pytester: pytest.Pytester,
    rally: RunningRally,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue 11, point 2: a run killed after some creates left defects carrying its run
    marker; the replay completes them (each attachment once) and posts nothing of that run."""
    from rp_bts_agent.cli import main

    rally.login_env(monkeypatch)
    configure(pytester, rally, fields="{}", timeout="2")
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_bugs="".join(ATTACHING.format(n=n) for n in range(8)))

    def creates_in_flight() -> bool:
        """Some defects filed, and creates Rally received but has not answered yet."""
        sent = [r for r in rally.state.requests[:] if r.path.endswith("/defect/create")]
        return len(sent) > len(rally.state.defects()) >= 3

    rally.state.latency = 1.0  # what is in flight at the kill lands after the replay started
    killed_when(pytester, creates_in_flight)
    rally.state.latency = 0
    assert 3 <= len(rally.state.defects()) < 8

    assert main(["--root", str(pytester.path), "flush"]) == 0
    waited = "for the last requests of run" in capsys.readouterr().out
    rally.wait_idle()  # what the killed run had sent has landed
    defects = rally.state.defects()
    assert len(defects) == 8
    for defect in defects:
        assert rally.state.posts_of(defect["ObjectID"]) == [], defect["FormattedID"]
        names = [a["Name"] for a in rally.state.attachments_of(defect["ObjectID"])]
        assert names.count("state.txt") == 1, (defect["FormattedID"], names)
    assert waited  # for the creates in flight when it was killed


def test_two_jobs_on_other_machines_filing_at_once_leave_one_open_defect_per_failure(
    pytester: pytest.Pytester, rally: RunningRally, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two CI jobs in folders of their own (no outbox shared) file the same new failures at the
    same moment into a slow Rally: whichever way their lookups and creates interleave, each
    fingerprint ends with one open defect, and a duplicate one was closed as such."""
    rally.login_env(monkeypatch)
    rally.state.latency = 0.2  # both jobs look up before either has filed
    jobs = []
    for job in ("job1", "job2"):
        folder = pytester.mkdir(job)
        toml = 'launch = "nightly"\n\n' + rally.integration_toml(name=f'"{NAME}"', fields="{}")
        (folder / "rp-bts.toml").write_text(toml, encoding="utf-8")
        (folder / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
        tests = "".join(ATTACHING.format(n=n) for n in range(4))
        (folder / "test_bugs.py").write_text(tests, encoding="utf-8")
        jobs.append(
            subprocess.Popen(
                [sys.executable, "-m", "pytest", "--rp-bts", "-p", "no:cacheprovider"],
                cwd=folder,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    assert [job.wait(timeout=120) for job in jobs] == [1, 1]  # the tests fail, nothing else
    rally.wait_idle()

    defects = rally.state.defects()
    open_ones = [d for d in defects if d["State"] != "Closed"]
    fingerprints = {
        t["Name"]
        for d in open_ones
        for t in d["Tags"]["_tagsNameArray"]
        if t["Name"].startswith("rpbts")
    }
    assert len(open_ones) == len(fingerprints) == 4
    for closed in (d for d in defects if d["State"] == "Closed"):
        assert closed["Resolution"] == "Duplicate", closed["FormattedID"]
