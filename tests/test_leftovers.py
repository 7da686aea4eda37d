"""Leftovers of earlier runs are sent before a run's own filing, and never at the cost of a second
wait for a tracker that is down (benchmarks/unreachable.py measures the connect timeout)."""

from __future__ import annotations

import pytest
from jira_server import RunningJira


def test_a_tracker_still_down_is_tried_once_per_run(
    demo: pytest.Pytester, jira: RunningJira, monkeypatch: pytest.MonkeyPatch
) -> None:
    jira.login_env(monkeypatch)
    demo.makefile(".toml", **{"rp-bts": jira.integration_toml()})
    jira.state.outage = True
    demo.runpytest("--rp-bts", "-k", "test_key").stdout.fnmatch_lines(["queued *"])
    one_trip = len(jira.state.requests)
    second = demo.runpytest("--rp-bts", "-k", "test_empty_cart")
    second.stdout.fnmatch_lines(["queued *"])
    assert len(jira.state.requests) == 2 * one_trip  # its own trip only, no replay's
    assert jira.state.issues == {}

    jira.state.outage = False
    third = demo.runpytest("--rp-bts", "-k", "test_uses_broken")
    third.stdout.fnmatch_lines(
        ["created *test_uses_broken", "flush: created *", "flush: created *"]
    )
    summaries = sorted(i["fields"]["summary"].split(":")[0] for i in jira.state.issues.values())
    assert summaries == ["test_empty_cart", "test_key", "test_uses_broken"]
