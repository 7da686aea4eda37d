"""The pipeline on its own, against the in-memory tracker: routing, planning, the breaker, the
time budget and retries, with every call the tracker got counted."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from fake_tracker import FakeService

from rp_bts_agent import pipeline, replay
from rp_bts_agent.config import build_integration
from rp_bts_agent.config_types import Config
from rp_bts_agent.hooks import HookManager
from rp_bts_agent.model import KnownIssue, Launch, Route, RunResults, TestResult
from rp_bts_agent.outbox import LEASE_SECONDS, Outbox
from rp_bts_agent.pipeline import Agent, Options
from rp_bts_agent.redact import Redactor
from rp_bts_agent.state import State
from rp_bts_agent.tracker import TrackerError

LAUNCH = Launch("nightly", "run-1")


def failure(nodeid: str, fingerprint: str, **kw: Any) -> TestResult:
    return TestResult(nodeid, "failed", message="boom", fingerprint=fingerprint, **kw)


def config(tmp_path: Path, *names: str, **top: Any) -> Config:
    integrations = tuple(
        build_integration("fake", name, root=tmp_path, project_key=name.upper())
        for name in names or ("Bugs",)
    )
    return Config(integrations=integrations, root=str(tmp_path), **top)


def run(
    cfg: Config,
    *results: TestResult,
    hooks: HookManager | None = None,
    launch: Launch = LAUNCH,
    **options: Any,
):  # type: ignore[no-untyped-def]
    agent = Agent(
        cfg, hooks=hooks or HookManager(), redactor=Redactor(()), options=Options(**options)
    )
    return agent.run(RunResults(launch, results))


def refs(report: Any, nodeid: str) -> list[tuple[str, str, str]]:
    (result,) = [r for r in report.run.results if r.nodeid == nodeid]
    return [(i.integration, i.key, i.action) for i in result.issues]


@pytest.fixture(autouse=True)
def _no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline, "PAUSE", 0.0)


def test_failures_sharing_a_fingerprint_make_one_issue(fake: FakeService, tmp_path: Path) -> None:
    report = run(
        config(tmp_path),
        failure("t.py::a[1]", "fp-a"),
        failure("t.py::a[2]", "fp-a"),
        failure("t.py::b", "fp-b"),
        TestResult("t.py::ok", "passed"),
    )
    assert report.errors == []
    assert len(fake.issues) == 2
    assert fake.count("find") == 1  # one lookup for the whole plan
    assert fake.count("create_many") == 1  # both new issues in one batch (batch = 2)
    assert (
        refs(report, "t.py::a[1]") == refs(report, "t.py::a[2]") == [("Bugs", "FAKE-1", "created")]
    )
    assert refs(report, "t.py::ok") == []


def test_open_issue_gets_one_comment_per_run_closed_follows_on_closed(
    fake: FakeService, tmp_path: Path
) -> None:
    fake.file("fp-open")
    fake.file("fp-closed", status="Closed")
    cfg = config(tmp_path)
    report = run(cfg, failure("t.py::a", "fp-open"), failure("t.py::b", "fp-closed"))
    assert refs(report, "t.py::a") == [("Bugs", "FAKE-1", "commented")]
    assert refs(report, "t.py::b") == [("Bugs", "FAKE-3", "created")]  # new, related to FAKE-2
    assert fake.issues["FAKE-3"].draft.relates_to == "FAKE-2"
    run(cfg, failure("t.py::a", "fp-open"))  # the same run again: no second comment
    assert fake.issues["FAKE-1"].comments == ["run-1"]

    fake.issues["FAKE-3"].status = "Closed"
    reopening = build_integration("fake", "Bugs", root=tmp_path, on_closed="reopen")
    report = run(
        Config(integrations=(reopening,), root=str(tmp_path)),
        failure("t.py::b", "fp-closed"),
        launch=Launch("nightly", "run-2"),
    )
    assert refs(report, "t.py::b") == [("Bugs", "FAKE-3", "commented")]
    assert fake.issues["FAKE-3"].status == "Open" and fake.count("reopen") == 1


def test_this_runs_own_issue_found_at_create_is_completed_not_commented(
    fake: FakeService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The replay of a killed run: its last create, still in flight when it was killed, is
    committed after the replay looked; the replay's create finds that issue standing with this
    run's marker, so it completes it and adds no comment of the same run."""
    from fake_tracker import FakeTracker

    create_many = FakeTracker.create_many

    def late_commit(self: FakeTracker, drafts: Any, *, look_first: bool = True) -> Any:
        for draft in drafts:  # the killed run's request, committed a moment ago
            self.service.file(draft.fingerprint).draft = draft
        # a create that answers the issue standing on its key (Clarity's unique code)
        return create_many(self, drafts, look_first=True)

    monkeypatch.setattr(FakeTracker, "create_many", late_commit)
    report = run(config(tmp_path), failure("t.py::a", "fp-a"))
    assert refs(report, "t.py::a") == [("Bugs", "FAKE-1", "already filed")]
    assert len(fake.issues) == 1 and fake.count("comment") == 0
    assert fake.count("complete") == 1  # it gets what the killed run had not sent yet


def test_routing_hook_then_marker_then_option_then_default(
    fake: FakeService, tmp_path: Path
) -> None:
    class Hooks:
        @staticmethod
        def rp_bts_route(result: TestResult, config: Config) -> str | None:
            return "Hooked" if "hooked" in result.nodeid else None

    hooks = HookManager()
    hooks.register(Hooks())
    cfg = config(tmp_path, "First", "Marked", "Chosen", "Hooked", default_integration="Default")
    cfg = Config(
        integrations=(*cfg.integrations, build_integration("fake", "Default", root=tmp_path)),
        root=str(tmp_path),
        default_integration="Default",
    )
    report = run(
        cfg,
        failure("t.py::hooked", "fp-1", route=Route("Marked")),
        failure("t.py::marked", "fp-2", route=Route("Marked")),
        failure("t.py::plain", "fp-3"),
        hooks=hooks,
        integration="Chosen",
    )
    assert refs(report, "t.py::hooked")[0][0] == "Hooked"
    assert refs(report, "t.py::marked")[0][0] == "Marked"
    assert refs(report, "t.py::plain")[0][0] == "Chosen"
    assert refs(run(cfg, failure("t.py::plain", "fp-4")), "t.py::plain")[0][0] == "Default"
    report = run(cfg, failure("t.py::lost", "fp-5", route=Route("Nowhere")))
    ((_, _, action),) = refs(report, "t.py::lost")
    assert action == "failed" and report.errors == [
        "t.py::lost: no tracker integration named 'Nowhere'"
    ]


def test_link_mode_never_creates_and_dry_run_never_writes(
    fake: FakeService, tmp_path: Path
) -> None:
    fake.file("fp-known")
    cfg = config(tmp_path)
    report = run(cfg, failure("t.py::a", "fp-known"), failure("t.py::b", "fp-new"), mode="link")
    assert refs(report, "t.py::a") == [("Bugs", "FAKE-1", "linked")]
    assert refs(report, "t.py::b") == []
    assert fake.count("create_many") == fake.count("comment") == 0
    report = run(cfg, failure("t.py::b", "fp-new"), mode="dry-run")
    assert [a.verb for a in report.plan] == ["create"]
    assert fake.read_only_opened and fake.count("create_many") == 0


def test_a_tracker_that_does_not_answer_is_asked_once(fake: FakeService, tmp_path: Path) -> None:
    fake.down = TrackerError("fake: cannot connect", retryable=True)
    results = [failure(f"t.py::t{n}", f"fp-{n}") for n in range(6)]
    report = run(config(tmp_path), *results)
    assert fake.calls == ["find"]  # the breaker opened: no call per failure
    assert {refs(report, r.nodeid)[0][2] for r in results} == {"queued"}
    assert len(report.errors) == 1


def test_one_tracker_down_leaves_the_other_alone(fake: FakeService, tmp_path: Path) -> None:
    """Two integrations of one kind share a service here: its first lookup fails, the
    second integration's lookup goes through (the breaker is per integration)."""
    fake.fail("find", TrackerError("fake: cannot connect", retryable=True))
    cfg = config(tmp_path, "Down", "Up")

    class Hooks:
        @staticmethod
        def rp_bts_route(result: TestResult, config: Config) -> str:
            return "Down" if "down" in result.nodeid else "Up"

    hooks = HookManager()
    hooks.register(Hooks())
    report = run(cfg, failure("t.py::down", "fp-1"), failure("t.py::up", "fp-2"), hooks=hooks)
    assert refs(report, "t.py::down")[0][2] == "queued"
    assert refs(report, "t.py::up")[0][2] == "created"


def test_transient_failures_are_tried_again_as_one_step(fake: FakeService, tmp_path: Path) -> None:
    fake.fail("create_many", *[TrackerError("fake: HTTP 502", transient=True)] * 2)
    report = run(config(tmp_path), failure("t.py::a", "fp-a"))
    assert refs(report, "t.py::a") == [("Bugs", "FAKE-1", "created")]
    assert fake.count("create_many") == pipeline.ATTEMPTS
    assert fake.count("find") == pipeline.ATTEMPTS  # the plan's, then one before each retry


def test_a_refusal_is_not_retried_and_not_queued(fake: FakeService, tmp_path: Path) -> None:
    fake.fail("create_many", TrackerError("fake: HTTP 400: field 'priority' is wrong"))
    report = run(config(tmp_path), failure("t.py::a", "fp-a"))
    assert refs(report, "t.py::a") == [("Bugs", "", "failed")]
    assert fake.count("create_many") == 1
    assert "field 'priority' is wrong" in report.errors[0]


def test_a_spent_budget_keeps_the_rest_for_later(fake: FakeService, tmp_path: Path) -> None:
    fake.latency = 0.3
    results = [failure(f"t.py::t{n}", f"fp-{n}") for n in range(20)]  # 10 batches, 4 at once
    report = run(config(tmp_path), *results, time_budget=0.4)
    actions = [refs(report, r.nodeid)[0][2] for r in results]
    assert "queued" in actions and "created" in actions  # the rest waits for rp-bts flush
    assert fake.count("create_many") < 10  # not every batch was sent
    assert any("time budget" in e for e in report.errors)


def test_known_issue_is_linked_with_its_status_never_filed(
    fake: FakeService, tmp_path: Path
) -> None:
    fake.file("other", status="Closed")
    report = run(
        config(tmp_path),
        failure("t.py::a", "fp-a", known_issues=(KnownIssue("FAKE-1", "Bugs"),)),
    )
    assert refs(report, "t.py::a") == [("Bugs", "FAKE-1", "known")]
    assert fake.count("create_many") == 0
    assert report.errors == ["t.py::a: known issue FAKE-1 is Closed"]  # still failing: flagged


# -- the replay of a run killed while it was filing --------------------------------------------


def _killed_owner() -> str:
    """An outbox owner on this machine whose process has ended."""
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return f"{socket.gethostname()}@{int(done.stdout)}:killed"


@pytest.mark.parametrize(
    ("kind", "killed_ago", "waits"),
    [("fake", 0.0, True), ("fake", LEASE_SECONDS + 5, False), ("local", 0.0, False)],
    ids=["tracker-killed-moments-ago", "killed-long-ago", "local-tracker"],
)
def test_a_replay_waits_for_requests_a_run_killed_moments_ago_may_still_land(
    fake: FakeService,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    killed_ago: float,
    waits: bool,
) -> None:
    """A tracker commits a create whose sender was killed: the replay waits until the killed
    run's last request has timed out (``timeout`` 2 s + the lease's 1 s renewal step) before it
    looks up, and says so as the wait starts (``rp-bts flush`` prints it then); not for a run
    killed long ago, nor for the local tracker (nothing in flight)."""
    cfg = Config(
        integrations=(build_integration(kind, "Bugs", root=tmp_path, timeout=2),),
        root=str(tmp_path),
    )
    outbox = Outbox(State(tmp_path).outbox_db)
    outbox.begin(LAUNCH, [("Bugs", (failure("t.py::a", "fp-a"),))], _killed_owner())
    with sqlite3.connect(outbox.path) as conn:
        conn.execute("UPDATE pending SET lease = lease - ?", (killed_ago,))
    events: list[tuple[str, object]] = []
    monkeypatch.setattr(
        replay.time, "sleep", lambda pause: pause and events.append(("slept", pause))
    )

    lines = replay.flush_trackers(cfg, say=lambda line: events.append(("said", line)))

    assert any(line.startswith("created") for line in lines), lines
    assert outbox.entries() == []
    if waits:
        (said, line), (slept, wait) = events  # said as the wait starts, not after
        assert (said, slept) == ("said", "slept") and isinstance(wait, float)
        assert 2.0 < wait <= 3.0 and f"waiting {wait:.1f} s" in str(line) and "run-1" in str(line)
    else:
        assert events == []


@pytest.mark.parametrize(("budget", "waits"), [(60, True), (5, False)])
def test_a_run_end_waits_for_a_run_killed_moments_ago_within_half_its_budget(
    fake: FakeService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, budget: int, waits: bool
) -> None:
    """The next run's end replays a run killed moments ago: it waits for its last requests
    while that leaves it half its time budget; else it leaves that run's work in the outbox for
    ``rp-bts flush`` and says so."""
    cfg = Config(
        integrations=(build_integration("fake", "Bugs", root=tmp_path, timeout=2),),
        root=str(tmp_path),
    )
    outbox = Outbox(State(tmp_path).outbox_db)
    outbox.begin(LAUNCH, [("Bugs", (failure("t.py::a", "fp-a"),))], _killed_owner())
    slept: list[float] = []
    monkeypatch.setattr(replay.time, "sleep", slept.append)

    lines = replay.flush_trackers(cfg, time_budget=budget)

    if waits:
        assert [pause for pause in slept if pause] and len(fake.issues) == 1
        assert outbox.entries() == []
        return
    assert not any(slept) and fake.issues == {}
    assert lines == [
        "run run-1 was killed moments ago, its last requests may still be landing: its work"
        " is left for rp-bts flush"
    ]
    assert [e.fingerprint for e in outbox.entries()] == ["fp-a"]


def test_each_request_renews_the_lease_of_the_groups_being_filed(tmp_path: Path) -> None:
    """What a replay's wait is measured from: the lease renewed as requests leave (at most once
    a second), so a killed run's lease tells when it last sent."""
    outbox = Outbox(State(tmp_path).outbox_db)
    with outbox.lease() as lease:
        outbox.begin(LAUNCH, [("Bugs", (failure("t.py::a", "fp-a"),))], lease.owner)
        with sqlite3.connect(outbox.path) as conn:
            conn.execute("UPDATE pending SET lease = 0")
        lease.sending()
        renewed = _leases(outbox)
        assert renewed and renewed[0] > time.time() + LEASE_SECONDS - 5
        with sqlite3.connect(outbox.path) as conn:
            conn.execute("UPDATE pending SET lease = 0")
        lease.sending()  # within a second of the last: no write
        assert _leases(outbox) == [0.0]


def _leases(outbox: Outbox) -> list[float]:
    with closing(sqlite3.connect(outbox.path)) as conn:
        return [lease for (lease,) in conn.execute("SELECT lease FROM pending")]
