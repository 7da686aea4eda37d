"""The Jira tracker against the contract-checking test server, Cloud and Data Center."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any

import pytest
import responses
from jira_server import DC_USER, PASSWORD, PAT, USER, Faults, Reply, RunningJira

from rp_bts_agent import http
from rp_bts_agent.config import build_integration
from rp_bts_agent.config_types import Integration
from rp_bts_agent.integrations.jira import tracker as jira_module
from rp_bts_agent.integrations.jira.markup import escape, noformat, render
from rp_bts_agent.integrations.jira.tracker import JiraTracker, parse_key
from rp_bts_agent.model import Link
from rp_bts_agent.pipeline import open_tracker
from rp_bts_agent.tracker import Body, CommentDraft, IssueDraft, Section, TrackerError


def integration(server: RunningJira, **kw: Any) -> Integration:
    cloud = server.state.cloud
    values: dict[str, Any] = {
        "kind": "jira",
        "name": "Shop bugs",
        "url": server.url,
        "project_key": "SHOP",
        "auth": "basic",
        "username": USER if cloud else DC_USER,
        "password": PASSWORD,
        "issue_type": "Bug",
    }
    values.update(kw)
    return build_integration(**values)


def draft(fingerprint: str = "rpbts1-abc", **kw: Any) -> IssueDraft:
    body = Body(
        (
            Section("", "1 test(s) failed *bold* [~admin] {code}x{code}"),
            Section("Failure", "Traceback\n{noformat}\nh1. boom | cell", True),
        )
    )
    values: dict[str, Any] = {
        "summary": "test_a: AssertionError",
        "body": body,
        "fingerprint": fingerprint,
        "labels": (fingerprint,),
    }
    values.update(kw)
    return IssueDraft(**values)


@pytest.fixture
def tracker(jira: RunningJira) -> Any:
    t = open_tracker(integration(jira))
    yield t
    t.close()


# -- markup ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "hostile",
    [
        "{code}x{code}",
        "[~admin]",
        "[click|http://evil]",
        "*bold* _it_ -strike- +u+ ^sup^ ~sub~ ??cite??",
        "|a|b|",
        "!image.png!",
        "h1. heading",
        "bq. quote",
        "# item",
        "(y) :D &#123;",
        "\\\\ line break",
    ],
)
def test_escape_leaves_no_markup(hostile: str) -> None:
    out = re.sub(r"&#[0-9]+;|&amp;", "", escape(hostile))
    for char in "{}[]|*_-+^~!#()\\?":
        assert char not in out
    assert "h1." not in out and "bq." not in out and ":D" not in out
    assert escape("&#123;") == "&amp;&#35;123;"  # a test's own entity stays text


def test_noformat_cannot_be_closed_from_inside() -> None:
    out = noformat("a\n{noformat}\n{NoFormat}\nb")
    assert out.count("{noformat}") == 2 and out.startswith("{noformat}\n")
    assert out.lower().count("{noformat}") == 2


def test_render_stays_under_jira_limit() -> None:
    body = Body((Section("Failure", "x\n" * 100_000, True), Section("Note", "[~a]" * 20_000)))
    text = render(body)
    assert len(text) <= 32_000
    assert text.count("{noformat}") % 2 == 0


def test_parse_key() -> None:
    assert parse_key("SHOP-17") == parse_key("shop-17") == "SHOP-17"
    assert parse_key("https://jira.example.com/jira/browse/SHOP-17") == "SHOP-17"
    with pytest.raises(TrackerError):
        parse_key("nothing here")


# -- the tracker against the server ----------------------------------------------------------


def test_create_find_comment_once(jira: RunningJira, tracker: JiraTracker, tmp_path: Path) -> None:
    log = tmp_path / "cart.txt"
    log.write_bytes(b"cart contents")
    created = tracker.create(
        draft(
            fields={"priority": "High", "components": ["Checkout"], "Environment name": "ci"},
            attachments=(jira_module.AttachmentFile("cart.txt", str(log), "text/plain"),),
            links=(Link("Sauce Labs job", "https://app.saucelabs.com/tests/j1", "sauce:j1"),),
        )
    )
    assert created.key == "SHOP-1" and created.status == "To Do" and not created.closed
    assert created.url == f"{jira.url}/browse/SHOP-1"
    issue = jira.state.issues["SHOP-1"]["fields"]
    assert issue["labels"] == ["rpbts1-abc"]
    assert issue["priority"] == {"name": "High"}
    assert issue["components"] == [{"name": "Checkout"}]
    assert issue["customfield_10050"] == "ci"
    assert issue["issuetype"]["name"] == "Bug"
    description = issue["description"]
    assert "[~admin]" not in description and "{code}" not in description
    assert description.count("{noformat}") == 2 and "h1. boom | cell" in description
    (attachment,) = jira.state.attachments["SHOP-1"]
    assert (attachment["filename"], attachment["content"]) == ("cart.txt", b"cart contents")
    (remote,) = jira.state.remote_links["SHOP-1"]
    assert remote["globalId"] == "rp-bts:sauce:j1"

    found = tracker.find(["rpbts1-abc", "rpbts1-other"])
    assert list(found) == ["rpbts1-abc"] and found["rpbts1-abc"].key == "SHOP-1"
    searches = [p for _, p in jira.state.requests if "/search" in p]
    assert len(searches) == 3  # create checks before and after filing; find is one call
    assert all(("/search/jql?" in p) == jira.state.cloud for p in searches)

    comment = CommentDraft(Body((Section("", "again {panel}"),)), run_id="run-1")
    assert tracker.comment("SHOP-1", comment) is True
    assert tracker.comment("SHOP-1", comment) is False
    assert tracker.comment("SHOP-1", CommentDraft(comment.body, run_id="run-2")) is True
    bodies = [c["body"] for c in jira.state.comments["SHOP-1"]]
    assert len(bodies) == 2 and "{panel}" not in bodies[0]


def test_comment_adds_the_labels_the_issue_lacks(
    jira: RunningJira, tracker: JiraTracker, caplog: pytest.LogCaptureFixture
) -> None:
    tracker.create(draft())
    body = Body((Section("", "again"),))
    assert tracker.comment("SHOP-1", CommentDraft(body, "run-1", labels=("flaky",)))
    assert tracker.comment("SHOP-1", CommentDraft(body, "run-2", labels=("flaky",)))
    assert jira.state.issues["SHOP-1"]["fields"]["labels"] == ["rpbts1-abc", "flaky"]
    assert [p for m, p in jira.state.requests if m == "PUT"] == ["/rest/api/2/issue/SHOP-1"]
    # a label Jira refuses (it has a space) is logged; the comment still goes
    assert tracker.comment("SHOP-1", CommentDraft(body, "run-3", labels=("two words",)))
    assert len(jira.state.comments["SHOP-1"]) == 3
    assert "SHOP-1 not labelled two words" in caplog.text
    assert jira.state.issues["SHOP-1"]["fields"]["labels"] == ["rpbts1-abc", "flaky"]


def test_find_prefers_open_then_newest(jira: RunningJira, tracker: JiraTracker) -> None:
    old = tracker.create(draft())
    jira.state.set_status(old.key, "Done")
    assert tracker.find(["rpbts1-abc"])["rpbts1-abc"].closed
    new = tracker.create(draft(relates_to=old.key))
    assert jira.state.links == [{"type": "Relates", "inward": new.key, "outward": old.key}]
    jira.state.set_status(new.key, "In Progress")
    found = tracker.find(["rpbts1-abc"])["rpbts1-abc"]
    assert (found.key, found.status, found.closed) == (new.key, "In Progress", False)


def test_create_is_idempotent_on_open_fingerprint(jira: RunningJira, tracker: JiraTracker) -> None:
    first = tracker.create(draft())
    second = tracker.create(draft())
    assert second.existed and second.key == first.key
    assert len(jira.state.issues) == 1


def test_cloud_search_lag_is_reconciled(make_jira: Any) -> None:
    server = make_jira("cloud")
    server.state.lagging_search = True
    t = JiraTracker(integration(server))
    first = t.create(draft())
    assert t.find(["rpbts1-abc"])["rpbts1-abc"].key == first.key
    assert t.create(draft()).existed
    t.close()
    assert len(server.state.issues) == 1
    assert any("reconcileIssues=" in p for _, p in server.state.requests)
    other = JiraTracker(integration(server))  # another process: its search lags
    assert other.find(["rpbts1-abc"]) == {}
    other.close()


def test_reopen_and_get(jira: RunningJira, tracker: JiraTracker) -> None:
    created = tracker.create(draft())
    jira.state.set_status(created.key, "Done")
    assert tracker.get(created.url).closed
    reopened = tracker.reopen(created.key)
    assert not reopened.closed and reopened.status != "Done"
    assert tracker.get(created.key).status == reopened.status


def test_resolve_takes_the_named_transition_or_the_first_into_done(jira: RunningJira) -> None:
    """``on_pass = "resolve"``: ``resolve_transition`` by name (any case), else into Done."""
    named = open_tracker(integration(jira, resolve_transition="in progress"))
    created = named.create(draft())
    assert named.resolve(created.key).status == "In Progress"  # the name the user chose
    plain = open_tracker(integration(jira))
    resolved = plain.resolve(created.key)
    assert resolved.closed and resolved.status == "Done"
    assert plain.resolve(created.key).status == "Done"  # resolved already: no transition
    missing = open_tracker(integration(jira, resolve_transition="Ship It"))
    other = missing.create(draft("rpbts2-other"))
    with pytest.raises(TrackerError, match="no transition named 'Ship It'"):
        missing.resolve(other.key)
    for t in (named, plain, missing):
        t.close()


def test_field_errors_listed_field_by_field(jira: RunningJira, tracker: JiraTracker) -> None:
    with pytest.raises(TrackerError) as info:
        tracker.create(draft(fields={"priority": "Urgentest", "colour": "red"}))
    text = str(info.value)
    assert "HTTP 400" in text and "field 'priority'" in text and "field 'colour'" in text
    assert not info.value.retryable


def test_unknown_issue_type_lists_the_types(jira: RunningJira) -> None:
    t = JiraTracker(integration(jira, issue_type="Epic"))
    with pytest.raises(TrackerError, match="Bug, Task"):
        t.create(draft())
    t.close()


def test_wrong_password_is_not_retried_and_hides_secret(jira: RunningJira) -> None:
    t = JiraTracker(integration(jira, password="wrong-secret-xyz"))
    with pytest.raises(TrackerError) as info:
        t.find(["x"])
    t.close()
    assert "HTTP 401" in str(info.value) and "wrong-secret-xyz" not in str(info.value)
    assert not info.value.retryable
    assert len(jira.state.requests) == 1


def test_429_and_503_retried_after_retry_after(
    jira: RunningJira, tracker: JiraTracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http, "BACKOFF", 0.0)
    tracker.find(["x"])  # connect first
    jira.state.inject += [
        Reply(429, {"errorMessages": ["slow down"]}, {"Retry-After": "0"}),
        Reply(503, None, {"Retry-After": "0"}),
    ]
    tracker.create(draft())
    assert len(jira.state.issues) == 1
    jira.state.inject += [Reply(503, None, {"Retry-After": "0"})] * 5
    with pytest.raises(TrackerError) as info:
        tracker.find(["x"])
    assert info.value.retryable and "HTTP 503" in str(info.value)
    jira.state.inject.clear()


def test_pat_on_data_center(make_jira: Any) -> None:
    server = make_jira("dc")
    t = JiraTracker(integration(server, auth="pat", token=PAT, username="", password=""))
    assert t.create(draft()).key == "SHOP-1"
    t.close()
    assert any(True for _ in server.state.issues)


def test_read_only_writes_nothing(jira: RunningJira) -> None:
    t = JiraTracker(integration(jira), read_only=True)
    assert t.find(["x"]) == {}
    with pytest.raises(TrackerError, match="read-only"):
        t.create(draft())
    t.close()


# -- single calls with responses ---------------------------------------------------------------


def test_html_answer_is_a_tracker_error(make_jira: Any) -> None:
    server = make_jira("dc", context="/jira")
    # a url with a context path the server does not have: an HTML 404 from the proxy
    t = JiraTracker(integration(server, url=server.url + "/jira"))
    with pytest.raises(TrackerError, match="HTTP 404"):
        t.find(["x"])
    t.close()


@responses.activate
def test_not_json_and_down_once() -> None:
    responses.get("https://jira.example.com/rest/api/2/serverInfo", body="<html>login</html>")
    i = build_integration(
        kind="jira",
        name="j",
        url="https://jira.example.com",
        project_key="S",
        username="u",
        password="p",
    )
    with pytest.raises(TrackerError, match="not Jira's JSON"):
        JiraTracker(i).find(["x"])


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_refused_connection_is_retryable_and_tried_once() -> None:
    i = build_integration(
        kind="jira",
        name="j",
        url=f"http://127.0.0.1:{closed_port()}",
        project_key="S",
        username="u",
        password="p",
    )
    down = JiraTracker(i)
    with pytest.raises(TrackerError) as info:
        down.find(["x"])
    assert info.value.retryable and not info.value.transient
    assert "cannot connect" in str(info.value)
    for _ in range(3):  # the answer is remembered: no second connect timeout in this run
        with pytest.raises(TrackerError) as again:
            down.get("SH-1")
        assert again.value is info.value


def test_dropped_answers_are_transient_and_tried_once_here(jira: RunningJira) -> None:
    """The tracker tries once; trying again is the pipeline's, as one idempotent step, so
    tries never stack up layer on layer (tests/test_pipeline.py shows the step retried)."""
    jira.state.faults = Faults(drop=1.0)
    tracker = JiraTracker(integration(jira))
    with pytest.raises(TrackerError) as info:
        tracker.find(["x"])
    assert info.value.transient and "connection broke" in str(info.value)
    assert len(jira.state.requests) == 1
    tracker.close()


def test_an_answer_slower_than_timeout_is_transient(
    jira: RunningJira, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http, "BACKOFF", 0.0)
    jira.state.faults = Faults(slow=1.0, slow_seconds=1.5)
    tracker = JiraTracker(integration(jira, timeout=1))
    with pytest.raises(TrackerError) as info:
        tracker.find(["x"])
    assert info.value.transient and "timed out" in str(info.value)
    assert len(jira.state.requests) == 1
    tracker.close()


def test_our_record_finds_what_a_lagging_cloud_search_does_not(
    make_jira: Any, tmp_path: Path
) -> None:
    """Issue 3, point 7: a rerun (a new process) comments instead of filing a duplicate."""
    from rp_bts_agent.config_types import Config
    from rp_bts_agent.hooks import HookManager
    from rp_bts_agent.model import Launch, RunResults, TestResult
    from rp_bts_agent.pipeline import Agent
    from rp_bts_agent.redact import Redactor

    server = make_jira("cloud")
    server.state.lagging_search = True
    config = Config(integrations=(integration(server),), root=str(tmp_path))
    failing = TestResult("t.py::test_a", "failed", exc_type="E", fingerprint="rpbts1-lag")

    def run(run_id: str) -> str:
        agent = Agent(config, hooks=HookManager(), redactor=Redactor(()))
        outcome = agent.run(RunResults(Launch("nightly", run_id), (failing,)))
        (ref,) = outcome.run.results[0].issues
        return ref.action

    assert run("run-1") == "created"
    assert run("run-2") == "commented"  # found through reconcileIssues from our record
    assert len(server.state.issues) == 1
    assert (tmp_path / ".rp-bts" / "filed.db").exists()


def test_tracker_io_runs_on_a_bounded_pool(make_jira: Any, tmp_path: Path) -> None:
    """Issue 6, point 4: creates go 50 to a call; the writes that follow (attachments) overlap,
    at most the kind's pool size at a time."""
    from rp_bts_agent import kinds
    from rp_bts_agent.config_types import Config
    from rp_bts_agent.hooks import HookManager
    from rp_bts_agent.model import Launch, RunResults, TestResult
    from rp_bts_agent.pipeline import Agent, Options
    from rp_bts_agent.redact import Redactor

    server = make_jira("dc")
    server.state.write_delay = 0.05
    # 60 new issues of one exception type: the storm guard (not this test's subject) stays off
    config = Config(
        integrations=(integration(server),),
        root=str(tmp_path),
        max_new_issues=100,
        storm_ratio=1.0,
    )
    failures = tuple(
        TestResult(f"t.py::test_{i}", "failed", exc_type="E", longrepr="E", fingerprint=f"fp{i}")
        for i in range(60)
    )
    agent = Agent(
        config, hooks=HookManager(), redactor=Redactor(()), options=Options(spool=tmp_path)
    )
    outcome = agent.run(RunResults(Launch("nightly", "run-1"), failures))
    assert {ref.action for r in outcome.run.results for ref in r.issues} == {"created"}
    assert len(server.state.issues) == 60
    assert sum(len(files) for files in server.state.attachments.values()) == 60
    assert [p for m, p in server.state.requests if m == "POST" and "/bulk" in p] == [
        "/rest/api/2/issue/bulk"
    ] * 2
    assert not any(p == "/rest/api/2/issue" for _, p in server.state.requests)
    # both batches need the create metadata at once: it is fetched once (types, then fields)
    assert len([p for _, p in server.state.requests if "/createmeta/" in p]) == 2
    assert 2 <= server.state.max_in_flight <= kinds.get("jira").pool_size


def test_a_create_whose_answer_was_lost_is_completed_not_repeated(
    make_jira: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 6, point 3: Jira filed the batch but the answer never came; the retry finds the
    issues, files none twice, and gives them their attachments."""
    from rp_bts_agent import pipeline
    from rp_bts_agent.config_types import Config
    from rp_bts_agent.hooks import HookManager
    from rp_bts_agent.model import Launch, RunResults, TestResult
    from rp_bts_agent.pipeline import Agent, Options
    from rp_bts_agent.redact import Redactor

    monkeypatch.setattr(pipeline, "PAUSE", 0.0)
    server = make_jira("cloud")
    server.state.drop_after = ["/rest/api/2/issue/bulk"]
    config = Config(integrations=(integration(server),), root=str(tmp_path))
    failures = tuple(
        TestResult(f"t.py::test_{i}", "failed", exc_type="E", longrepr="E", fingerprint=f"fp{i}")
        for i in range(3)
    )
    agent = Agent(
        config, hooks=HookManager(), redactor=Redactor(()), options=Options(spool=tmp_path)
    )
    outcome = agent.run(RunResults(Launch("nightly", "run-1"), failures))
    assert [p for m, p in server.state.requests if p.endswith("/bulk")] == [
        "/rest/api/2/issue/bulk"
    ]  # one bulk call: the retry found the issues
    assert len(server.state.issues) == 3
    assert {ref.action for r in outcome.run.results for ref in r.issues} == {"created"}
    for key in server.state.issues:
        assert [a["filename"] for a in server.state.attachments[key]] == ["failure-details.txt"]
        assert server.state.comments.get(key, []) == []


def test_two_jobs_filing_at_once_end_with_one_open_issue(make_jira: Any) -> None:
    """Issue 6, point 3: the later duplicate is closed as a duplicate and linked to the first."""
    server = make_jira("cloud")
    server.state.lagging_search = True  # neither job sees the other's issue before it files
    other_job = JiraTracker(integration(server))
    first = other_job.create(draft())
    other_job.close()
    server.state.index_on_create = True  # ...but the index has caught up after ours is filed
    ours = JiraTracker(integration(server))
    result = ours.create(draft())
    ours.close()
    assert result.key == first.key and result.existed
    assert len(server.state.issues) == 2
    (duplicate,) = [k for k in server.state.issues if k != first.key]
    assert server.state.issues[duplicate]["fields"]["status"]["statusCategory"]["key"] == "done"
    assert {"type": "Duplicate", "inward": duplicate, "outward": first.key} in server.state.links
    assert server.state.violations == []
