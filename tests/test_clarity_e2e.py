"""The demo suite filing into the Clarity test server (serial and ``-n 2``), a status changed in
Clarity seen by ``rp-bts sync --once`` and by the next run, and the OAuth set-up."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from clarity_server import (  # noqa: F401 (fixtures)
    RunningClarity,
    clarity_contract_fixture,
    clarity_fixture,
)

from conftest import ATTACHING, DEMO_FINGERPRINTS, by_nodeid, killed_when, results_json
from rp_bts_agent.cli import main


@pytest.fixture
def clarity_demo(
    demo: pytest.Pytester, clarity: RunningClarity, monkeypatch: pytest.MonkeyPatch
) -> pytest.Pytester:
    clarity.login_env(monkeypatch)
    monkeypatch.setenv("RP_BTS_GLOBAL_CONFIG", str(demo.path / "none.toml"))
    integration = clarity.integration_toml(
        "session",
        fields={"priority": "High"},
        sync={"projects": [{"code": "PR1001", "push": True}]},
    )
    demo.makefile(".toml", **{"rp-bts": 'launch = "nightly"\n\n' + integration})
    return demo


def _results(pytester: pytest.Pytester) -> dict[str, dict[str, Any]]:
    return by_nodeid(results_json(pytester.path / ".rp-bts" / "results.json"))


def _check_filed(clarity: RunningClarity, pytester: pytest.Pytester) -> None:
    issues = clarity.issues()
    assert len(issues) == DEMO_FINGERPRINTS
    assert len({i["c_rp_fingerprint"] for i in issues}) == DEMO_FINGERPRINTS
    assert all(i["priority"] == "HIGH" and len(i["name"]) <= 80 for i in issues)
    data = _results(pytester)
    totals = {data[f"test_totals[items{i}]"]["issues"][0]["key"] for i in range(3)}
    assert len(totals) == 1
    (issue,) = [i for i in issues if i["code"] in totals]
    expected = [f"test_demo.py::test_totals[items{i}]" for i in range(3)]
    assert sorted(issue["c_tests"].splitlines()) == expected
    assert "totals for" in issue["description"]  # the log tail


def test_files_then_updates_serial(clarity_demo: pytest.Pytester, clarity: RunningClarity) -> None:
    first = clarity_demo.runpytest("--rp-bts")
    assert first.ret == pytest.ExitCode.TESTS_FAILED
    first.stdout.fnmatch_lines(["created   ?Shop issues? RP* test_demo.py::*"])
    _check_filed(clarity, clarity_demo)
    assert clarity.state.logins == clarity.state.logouts == 1
    second = clarity_demo.runpytest("--rp-bts")
    assert "created " not in second.stdout.str()
    second.stdout.fnmatch_lines(["commented ?Shop issues? RP*"])
    assert len(clarity.issues()) == DEMO_FINGERPRINTS
    assert sorted(i["c_occurrences"] for i in clarity.issues()) == [2] * DEMO_FINGERPRINTS
    assert clarity.patch_count == DEMO_FINGERPRINTS  # one update per issue per run


def test_files_once_with_xdist(clarity_demo: pytest.Pytester, clarity: RunningClarity) -> None:
    pytest.importorskip("xdist")
    result = clarity_demo.runpytest_subprocess("--rp-bts", "-n", "2")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*2 workers*"])
    _check_filed(clarity, clarity_demo)
    clarity_demo.runpytest_subprocess("--rp-bts", "-n", "2")
    assert len(clarity.issues()) == DEMO_FINGERPRINTS


def test_status_changed_in_clarity_seen_by_sync_and_next_run(
    clarity_demo: pytest.Pytester, clarity: RunningClarity, capsys: pytest.CaptureFixture[str]
) -> None:
    clarity_demo.makepyfile(
        test_demo="def test_a():\n    assert 0\n\ndef test_b():\n    assert 1 == 2\n"
    )
    clarity_demo.runpytest("--rp-bts")
    a_key = _results(clarity_demo)["test_a"]["issues"][0]["key"]
    root = str(clarity_demo.path)
    assert main(["--root", root, "sync", "--once"]) == 0
    # someone files an issue by hand that names test_b, and closes ours
    clarity.state.add_issue("PR1001", "b is known", c_tests="test_demo.py::test_b")
    clarity.set_status(a_key, "Closed")
    capsys.readouterr()
    assert main(["--root", root, "sync", "--once"]) == 0
    out = capsys.readouterr().out
    assert f"status {a_key} Open -> Closed" in out
    assert "2 issue(s) match" not in out and "3 issue(s) match" in out
    rerun = clarity_demo.runpytest("--rp-bts")
    data = _results(clarity_demo)
    (ref_b,) = data["test_b"]["issues"]
    assert (ref_b["action"], ref_b["status"]) == ("known", "Open")  # linked, not filed
    (ref_a,) = data["test_a"]["issues"]
    assert ref_a["action"] == "created" and ref_a["key"] == a_key + "-2"  # on_closed = new
    assert "known" in rerun.stdout.str()
    # the push writes the run back to the hand-filed issue, once
    patches = clarity.patch_count
    assert main(["--root", root, "sync", "--once"]) == 0
    hand = next(i for i in clarity.issues() if i["name"] == "b is known")
    assert hand["c_occurrences"] == 1 and hand["c_last_run"]
    assert clarity.patch_count == patches + 1
    assert main(["--root", root, "sync", "--once"]) == 0
    assert clarity.patch_count == patches + 1  # nothing changed: nothing written
    capsys.readouterr()
    assert main(["--root", root, "sync", "log"]) == 0
    log = capsys.readouterr().out
    assert "Shop issues: pull PR1001" in log and "Shop issues: push PR1001" in log
    assert "nothing changed" in log and "batch 1: 1 of 1 issue(s) updated" in log


def test_clarity_down_queues_then_flush_files_once(
    clarity_demo: pytest.Pytester, clarity: RunningClarity
) -> None:
    clarity.state.outage = True
    result = clarity_demo.runpytest("--rp-bts")
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # the verdict pytest gives anyway
    result.stdout.fnmatch_lines(["queued    ?Shop issues? - test_demo.py::*kept for rp-bts flush*"])
    assert len(clarity.state.requests) <= 10  # one breaker trip, not a call per failure
    clarity.state.outage = False
    root = ["--root", str(clarity_demo.path)]
    assert main([*root, "flush"]) == 0
    assert len(clarity.issues()) == DEMO_FINGERPRINTS
    assert main([*root, "flush"]) == 0
    assert len(clarity.issues()) == DEMO_FINGERPRINTS


# -- rp-bts integrations oauth --------------------------------------------------------------


class _Stdin:
    """The user: Enter once the application is set up in Clarity, then the code read off the
    authorization page (opened like a browser would)."""

    def __init__(self, server: RunningClarity, capsys: pytest.CaptureFixture[str]) -> None:
        self.server, self.capsys, self.calls = server, capsys, 0

    def readline(self) -> str:
        self.calls += 1
        if self.calls == 1:
            return "\n"
        out = self.capsys.readouterr().out
        sys.stdout.write(out)
        url = [line.strip() for line in out.splitlines() if "/authorize?" in line][-1]
        return self.server.visit(url) + "\n"


def test_oauth_dance_then_files(
    clarity: RunningClarity, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from rp_bts_agent.config import load_config
    from rp_bts_agent.connection import CheckOptions, check

    monkeypatch.setenv("RP_BTS_GLOBAL_CONFIG", str(tmp_path / "none.toml"))
    block = clarity.integration_toml(
        "oauth1", access_token=None, access_token_secret=None, name='"Clarity OAuth"'
    )
    (tmp_path / "rp-bts.toml").write_text("# ours\n" + block, encoding="utf-8")
    monkeypatch.setattr(sys, "stdin", _Stdin(clarity, capsys))
    assert main(["--root", str(tmp_path), "integrations", "oauth", "Clarity OAuth"]) == 0
    out = capsys.readouterr().out
    assert "Consumer key: rp-bts-clarity" in out and "API - Application Links" in out
    text = (tmp_path / "rp-bts.toml").read_text(encoding="utf-8")
    assert text.startswith("# ours\n")
    assert 'access_token = "${CLARITY_CLARITY_OAUTH_ACCESS_TOKEN}"' in text
    new_tokens = set(clarity.state.oauth_access) - {"clarity-access-token-31337"}
    (token,) = new_tokens
    assert token not in text and token in (tmp_path / ".env").read_text(encoding="utf-8")
    integration = load_config(tmp_path).integration("Clarity OAuth")
    assert integration is not None
    assert check(integration, CheckOptions()).ok  # the stored token signs the calls
    assert any(s.auth == "oauth1" for s in clarity.state.requests)


def test_a_killed_run_is_completed_without_its_own_update(
    pytester: pytest.Pytester,
    clarity: RunningClarity,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue 11, point 2: a run killed after some creates left issues carrying its run marker;
    the replay does not update them as a repeat of the failure (occurrences + 1). Without a
    ``last_run_field`` only the marker in the description tells."""
    clarity.login_env(monkeypatch)
    monkeypatch.setenv("RP_BTS_GLOBAL_CONFIG", str(pytester.path / "none.toml"))
    integration = clarity.integration_toml("basic", last_run_field='""', timeout="2")
    pytester.makefile(".toml", **{"rp-bts": integration})
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_bugs="".join(ATTACHING.format(n=n) for n in range(8)))

    def creates_in_flight() -> bool:
        """Some issues filed, and creates Clarity received but has not answered yet."""
        sent = [r for r in clarity.state.requests[:] if r.method == "POST"]
        return len(sent) > len(clarity.issues()) >= 3

    clarity.state.latency = 1.0  # what is in flight at the kill lands after the replay started
    killed_when(pytester, creates_in_flight)
    clarity.state.latency = 0
    assert 3 <= len(clarity.issues()) < 8

    assert main(["--root", str(pytester.path), "flush"]) == 0
    waited = "for the last requests of run" in capsys.readouterr().out
    clarity.wait_idle()  # what the killed run had sent has landed
    issues = clarity.issues()
    assert len(issues) == 8
    assert clarity.patch_count == 0
    assert {i["c_occurrences"] for i in issues} == {1}
    assert waited  # for the creates in flight when it was killed
