"""Shared helpers for the end-to-end tests: a demo-like suite and readers of what a run left."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

#: the test servers and the fake tracker, registered once for every test module
pytest_plugins = (
    "jira_server",
    "sauce_server",
    "smtp_server",
    "rally_server",
    "clarity_server",
    "fake_tracker",
)

DEMO = """
import logging
import pytest

log = logging.getLogger("shop")

def cart_total(items):
    return sum(items) + 1

def test_passes():
    assert cart_total([]) >= 0

def test_empty_cart():
    assert cart_total([]) == 0

@pytest.mark.parametrize("items", [[1], [2, 3], [10]])
def test_totals(items):
    log.warning("totals for %s", items)
    assert cart_total(items) == sum(items)

def test_key(rp_bts):
    rp_bts.attach(b"cart contents", name="cart.txt")
    {}["kiwi"]

@pytest.fixture
def broken():
    raise ConnectionError("gateway refused")

def test_uses_broken(broken):
    pass

@pytest.mark.xfail(strict=True)
def test_expected_failure():
    assert False

@pytest.mark.xfail(strict=True)
def test_unexpected_pass():
    pass

@pytest.mark.slid("job-123", data_center="eu-central-1")
def test_sauce():
    assert "a" == "b"
"""
#: distinct fingerprints of DEMO: empty_cart, totals (3 params, one bug), key, broken,
#: the strict XPASS (a failure with no exception), sauce.
DEMO_FINGERPRINTS = 6


@pytest.fixture
def demo(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_demo=DEMO)
    pytester.makeini("[pytest]\n")
    return pytester


def tracker_rows(
    root: Path, query: str = "SELECT key, fingerprint, status FROM issues"
) -> list[Any]:
    db = root / ".rp-bts" / "tracker.db"
    if not db.exists():
        return []
    with closing(sqlite3.connect(db)) as conn:
        return list(conn.execute(query))


def results_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def by_nodeid(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["nodeid"].split("::", 1)[-1]: r for r in data["results"]}


def all_files(root: Path) -> Iterator[Path]:
    yield from (p for p in root.rglob("*") if p.is_file())


#: one attachment per failing test, one fingerprint per test
ATTACHING = """
def test_bug_{n}(rp_bts):
    rp_bts.attach(b"state of {n}", name="state.txt")
    assert {n} == -1, "bug {n}"
"""


def killed_when(pytester: pytest.Pytester, done: Callable[[], bool], *args: str) -> None:
    """Run ``pytest --rp-bts`` in a process killed (SIGKILL, as CI cancels a job) as soon as
    ``done()`` says so, from what a test server received."""
    proc = pytester.popen(
        [sys.executable, "-m", "pytest", "--rp-bts", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while proc.poll() is None and not done() and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.kill()
    assert proc.wait(timeout=60) < 0, "the run ended before it was killed"
