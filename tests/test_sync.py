"""``rp-bts sync``: the loop with an injected clock (no sleeps), Ctrl-C between steps, a tracker
that is down retried next period, one bad item skipped, the log, and linked Jira issues'
status refreshed for the next run."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from clarity_server import (  # noqa: F401 (fixtures)
    RunningClarity,
    clarity_contract_fixture,
    clarity_fixture,
)
from jira_server import RunningJira, jira_contract_fixture, jira_fixture  # noqa: F401

from rp_bts_agent import sync
from rp_bts_agent.cli import main
from rp_bts_agent.config import load_config
from rp_bts_agent.known import KnownStore
from rp_bts_agent.redact import Redactor
from rp_bts_agent.state import State


class Clock:
    """Time that moves only when the loop waits; ``rounds`` waits, then "Ctrl-C"."""

    def __init__(self, rounds: int, stop: sync.Stop) -> None:
        self.now, self.rounds, self.stop, self.waits = 1000.0, rounds, stop, []  # type: ignore[var-annotated]

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.now += seconds
        if len(self.waits) >= self.rounds:
            self.stop.set()
        return self.stop.is_set()


def _context(root: Path, once: bool = False) -> sync.SyncContext:
    config = load_config(root, global_file=root / "none.toml")
    return sync.SyncContext(config, KnownStore(State(root).known_db), once=once)


def _project(
    root: Path, clarity: RunningClarity, monkeypatch: pytest.MonkeyPatch, **sync_: Any
) -> None:
    clarity.login_env(monkeypatch)
    text = clarity.integration_toml("basic", sync={"period": 60, **sync_})
    (root / "rp-bts.toml").write_text(text, encoding="utf-8")


def test_loop_every_period_until_stopped(
    tmp_path: Path, clarity: RunningClarity, monkeypatch: pytest.MonkeyPatch
) -> None:
    _project(
        tmp_path,
        clarity,
        monkeypatch,
        projects=[{"code": "PR1001"}, {"code": "PR1002", "auto": False}],
    )
    stop = sync.Stop()
    clock = Clock(3, stop)
    log = sync.SyncLog(State(tmp_path).sync_log)
    entries = sync.run(
        _context(tmp_path),
        log=log,
        redactor=Redactor(()),
        clock=clock,
        sleep=clock.sleep,
        stop=stop,
    )
    # PR1002 has auto-sync off: not in the loop; PR1001 pulled at 0, 60, 120, then Ctrl-C
    assert [e.step for e in entries] == ["Shop issues: pull PR1001"] * 3
    assert clock.waits == [60.0, 60.0, 60.0]
    assert len(clarity.state.calls("GET", "/projects/5000001/issues")) == 3
    assert [e.step for e in log.tail(10)] == [e.step for e in entries]
    # once (cron): the tab without auto-sync is synced too
    once = sync.run(_context(tmp_path, once=True), log=log, redactor=Redactor(()))
    assert [e.step for e in once] == ["Shop issues: pull PR1001", "Shop issues: pull PR1002"]


def test_stop_between_steps(
    tmp_path: Path, clarity: RunningClarity, monkeypatch: pytest.MonkeyPatch
) -> None:
    _project(tmp_path, clarity, monkeypatch)
    stop = sync.Stop()
    ran = []

    def planner(context: sync.SyncContext) -> list[sync.SyncStep]:
        def first() -> list[str]:
            ran.append("first")
            stop.set()  # Ctrl-C while the first step runs
            return ["done"]

        return [
            sync.SyncStep("first", first),
            sync.SyncStep("second", lambda: ran.append("second") or []),
        ]

    entries = sync.run(
        _context(tmp_path),
        log=sync.SyncLog(tmp_path / "log"),
        redactor=Redactor(()),
        stop=stop,
        planner=planner,
    )
    assert ran == ["first"] and [e.step for e in entries] == ["first"]


def test_down_tracker_retried_next_period_and_bad_item_skipped(
    tmp_path: Path, clarity: RunningClarity, monkeypatch: pytest.MonkeyPatch
) -> None:
    _project(tmp_path, clarity, monkeypatch)
    clarity.state.add_issue("PR1001", "fine", c_tests="t.py::test_a")
    bad = clarity.state.add_issue("PR1001", "odd")
    clarity.change(bad["code"], c_occurrences="many")  # a value that does not fit its field
    stop = sync.Stop()
    clock = Clock(2, stop)

    def planner(context: sync.SyncContext) -> list[sync.SyncStep]:
        clarity.state.outage = not clock.waits  # down in the first round only
        return sync.plan(context)

    entries = sync.run(
        _context(tmp_path),
        log=sync.SyncLog(tmp_path / "log"),
        redactor=Redactor(()),
        clock=clock,
        sleep=clock.sleep,
        stop=stop,
        planner=planner,
    )
    assert [e.ok for e in entries] == [False, True]
    assert "HTTP 503" in entries[0].lines[0] and "tried again next period" in entries[0].lines[0]
    assert entries[1].lines[0].startswith("1 issue(s) match")
    assert f"skipped {bad['code']}: c_occurrences holds 'many', not a number" in entries[1].lines
    (record,) = KnownStore(State(tmp_path).known_db).records("Shop issues")
    assert record.tests == ("t.py::test_a",)


def test_unknown_field_in_expression_is_one_line(
    tmp_path: Path,
    clarity: RunningClarity,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _project(
        tmp_path, clarity, monkeypatch, expression=[{"field": "colour", "op": "=", "value": "red"}]
    )
    assert main(["--root", str(tmp_path), "sync", "--once"]) == 1
    out = capsys.readouterr().out
    assert "FAILED Shop issues: pull PR1001" in out and "unknown field 'colour'" in out
    assert main(["--root", str(tmp_path), "sync", "log", "--json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["ok"] is False and "unknown field 'colour'" in entry["lines"][0]


def test_refresh_fields_shows_attributes_and_lookups(
    tmp_path: Path,
    clarity: RunningClarity,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _project(tmp_path, clarity, monkeypatch)
    clarity.state.issue_attributes.append(
        {
            "name": "c_team",
            "label": "Team",
            "dataType": "string",
            "isMandatory": False,
            "isReadOnly": False,
            "isMultiValued": False,
        }
    )
    assert main(["--root", str(tmp_path), "sync", "--once", "--refresh-fields"]) == 0
    out = capsys.readouterr().out
    assert "c_team (string): Team" in out
    assert (
        "status (lookup): Status; lookup RIM_ISSUE_STATUS: Open, In Progress, Resolved, Closed"
        in out
    )


def test_disabled_integration_is_not_synced(
    tmp_path: Path,
    clarity: RunningClarity,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clarity.login_env(monkeypatch)
    (tmp_path / "rp-bts.toml").write_text(clarity.integration_toml(enabled=False), encoding="utf-8")
    assert main(["--root", str(tmp_path), "sync", "--once"]) == 0
    assert "disabled (enabled = false): not synced" in capsys.readouterr().out
    assert clarity.state.requests == []


def test_linked_jira_status_refreshed_for_next_run(
    pytester: pytest.Pytester,
    jira: RunningJira,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    jira.login_env(monkeypatch)
    monkeypatch.setenv("RP_BTS_GLOBAL_CONFIG", str(pytester.path / "none.toml"))
    pytester.makefile(".toml", **{"rp-bts": jira.integration_toml()})
    pytester.makepyfile("def test_a():\n    assert 0\n")
    pytester.runpytest("--rp-bts")
    root = str(pytester.path)
    assert main(["--root", root, "sync", "--once"]) == 0
    jira.state.set_status("SHOP-1", "Done")
    capsys.readouterr()
    assert main(["--root", root, "sync", "--once"]) == 0
    out = capsys.readouterr().out
    assert "Shop bugs: refresh linked issues" in out and "SHOP-1 To Do -> Done" in out
    (record,) = KnownStore(State(pytester.path).known_db).records("Shop bugs")
    assert (record.status, record.closed) == ("Done", True)
    # a later run whose `issue` marker names it, with Jira out of reach: the synced status
    from rp_bts_agent.hooks import HookManager
    from rp_bts_agent.model import KnownIssue, Launch, RunResults, TestResult
    from rp_bts_agent.pipeline import Agent

    config = load_config(pytester.path, global_file=pytester.path / "none.toml")
    (shop,) = config.integrations
    offline = dataclasses.replace(
        config, integrations=(shop.with_settings(url="http://127.0.0.1:9"),)
    )
    marked = TestResult("t.py::test_a", "failed", known_issues=(KnownIssue("SHOP-1", "Shop bugs"),))
    agent = Agent(offline, hooks=HookManager(), redactor=Redactor(()))
    (ref,) = agent.run(RunResults(Launch("nightly", "run-9"), (marked,))).run.results[0].issues
    assert (ref.action, ref.status) == ("known", "Done") and "cannot connect" in ref.error


def test_ctrl_c_stops_the_loop_cleanly(
    tmp_path: Path, clarity: RunningClarity, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import signal
    import subprocess
    import sys

    _project(tmp_path, clarity, monkeypatch)
    env = {**os.environ, "RP_BTS_GLOBAL_CONFIG": str(tmp_path / "none.toml")}
    command = [sys.executable, "-m", "rp_bts_agent.cli", "--root", str(tmp_path), "sync"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) as process:
        assert process.stdout is not None
        first = process.stdout.readline()  # the first round's pull, then it waits 60 s
        assert "ok     Shop issues: pull PR1001" in first
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=30)
    assert process.returncode == 0 and out.rstrip().endswith("sync stopped")
    assert len(sync.SyncLog(State(tmp_path).sync_log).tail(10)) == 1


def test_push_in_batches_of_50_only_what_changed(
    tmp_path: Path, clarity: RunningClarity, monkeypatch: pytest.MonkeyPatch
) -> None:
    _project(tmp_path, clarity, monkeypatch, projects=[{"code": "PR1001", "push": True}])
    for number in range(60):
        clarity.state.add_issue("PR1001", f"known {number}", c_tests=f"t.py::test_{number}")
    log = sync.SyncLog(tmp_path / "log")
    first = sync.run(_context(tmp_path, once=True), log=log, redactor=Redactor(()))
    assert [e.lines[0] for e in first][1] == "nothing changed" and clarity.patch_count == 0
    known = KnownStore(State(tmp_path).known_db)
    for record in known.records("Shop issues"):  # a run linked each test's failure
        known.hit(record, record.tests[0], "run-7")
    second = sync.run(_context(tmp_path, once=True), log=log, redactor=Redactor(()))
    push = second[1].lines
    assert push[0] == "batch 1: 50 of 50 issue(s) updated"
    assert "batch 2: 10 of 10 issue(s) updated" in push
    assert clarity.patch_count == 60
    patch = clarity.state.calls("PATCH")[0].body
    assert patch == {"c_occurrences": 1, "c_last_run": "run-7"}  # tests unchanged: not sent
    third = sync.run(_context(tmp_path, once=True), log=log, redactor=Redactor(()))
    assert third[1].lines == ("nothing changed",) and clarity.patch_count == 60
