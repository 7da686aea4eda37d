"""The Rally tracker against the contract-checking test server, with an API key and with Basic."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rally_server import (
    API_KEY,
    OTHER_USER,
    PASSWORD,
    PROJECT,
    USER,
    VIEWER_PROJECT,
    WORKSPACE,
    RunningRally,
    parse_query,
)

from rp_bts_agent import http
from rp_bts_agent.config import build_integration
from rp_bts_agent.config_types import Integration
from rp_bts_agent.connection import CheckOptions
from rp_bts_agent.integrations.rally import tracker as rally_module
from rp_bts_agent.integrations.rally.markup import TEXT_LIMIT, render
from rp_bts_agent.integrations.rally.tracker import RallyTracker, check_connection, either
from rp_bts_agent.model import Link
from rp_bts_agent.pipeline import open_tracker
from rp_bts_agent.tracker import (
    AttachmentFile,
    Body,
    CommentDraft,
    IssueDraft,
    Section,
    TrackerError,
)

AUTHS = ["api-key", "basic"]


def integration(server: RunningRally, auth: str = "api-key", **kw: Any) -> Integration:
    values: dict[str, Any] = {
        "url": server.url,
        "workspace": WORKSPACE,
        "project_key": PROJECT,
        "auth": auth,
    }
    if auth == "api-key":
        values["api_key"] = API_KEY
    else:
        values.update(username=USER, password=PASSWORD)
    values.update(kw)
    return build_integration("rally", "Rally defects", **values)


def draft(fingerprint: str = "rpbts1-aaa", **kw: Any) -> IssueDraft:
    body = Body(
        (
            Section("", '1 test(s) failed <script>alert(1)</script> & "quoted"'),
            Section("Failure", "Traceback\n  <b>boom</b>\nAssertionError: 1 < 2", True),
        )
    )
    values: dict[str, Any] = {
        "summary": "test_a: AssertionError <i>",
        "body": body,
        "fingerprint": fingerprint,
        "labels": (fingerprint,),
    }
    values.update(kw)
    return IssueDraft(**values)


@pytest.fixture(params=AUTHS)
def auth(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def tracker(rally: RunningRally, auth: str) -> Iterator[RallyTracker]:
    opened = open_tracker(integration(rally, auth))
    assert isinstance(opened, RallyTracker)
    yield opened
    opened.close()


def secrets_of(rally: RunningRally) -> list[str]:
    """The credentials and every security token the server handed out."""
    return [API_KEY, PASSWORD, *rally.state.tokens]


def assert_no_secret_sent(rally: RunningRally) -> None:
    """Credentials travel in the auth header (and the token as ``key=``) only."""
    sent = json.dumps(
        [
            (r.path, r.body, {k: v for k, v in r.query.items() if k != "key"})
            for r in rally.state.requests
        ]
    )
    for secret in secrets_of(rally):
        assert secret not in sent


# -- markup ------------------------------------------------------------------------------------


def test_markup_escapes_test_text_and_keeps_tracebacks_preformatted() -> None:
    body = Body(
        (
            Section("<h1>Title</h1>", 'say "hi" & <a href="x">go</a>\nsecond line'),
            Section("Failure", "  File x\n<script>x</script>", True),
        )
    )
    links = (
        Link("Sauce job <b>", "https://app.saucelabs.com/tests/abc?x=1&y=2"),
        Link("bad", "javascript:alert(1)"),
    )
    html = render(body, links=links, trailer=("rp-bts run 7",))
    assert "<script>" not in html and "<h1>" not in html and '<a href="x">' not in html
    assert "<p><b>&lt;h1&gt;Title&lt;/h1&gt;</b></p>" in html
    assert "say &quot;hi&quot; &amp; &lt;a href=&quot;x&quot;&gt;go&lt;/a&gt;<br />second" in html
    assert "<pre>  File x\n&lt;script&gt;x&lt;/script&gt;</pre>" in html
    assert (
        '<a href="https://app.saucelabs.com/tests/abc?x=1&amp;y=2">Sauce job &lt;b&gt;</a>' in html
    )
    assert "javascript:" not in html
    assert html.endswith("<p>rp-bts run 7</p>")


def test_markup_fits_rallys_limit_keeping_the_traceback_tail() -> None:
    huge = "<" * 50_000 + "\nthe last line"
    html = render(Body((Section("Log", "x" * 40_000), Section("Failure", huge, True))))
    assert len(html) <= TEXT_LIMIT
    assert html.count("<pre>") == 1 and html.endswith("the last line</pre>")
    assert "characters cut; the full text is attached" in html


def test_or_joined_queries_are_nested_pairs() -> None:
    terms = [f'(Tags.Name contains "fp{n}")' for n in range(4)]
    assert either(terms[:1]) == terms[0]
    assert either(terms[:2]) == f"({terms[0]} OR {terms[1]})"
    tree = parse_query(either(terms))  # Rally's grammar: every AND/OR binary
    assert tree[0] == "OR" and tree[1][0] == "OR" and tree[1][1][0] == "OR"


# -- filing ------------------------------------------------------------------------------------


def test_files_defects_with_tag_fields_and_attachments(
    rally: RunningRally, tracker: RallyTracker, tmp_path: Path
) -> None:
    log = tmp_path / "cart.txt"
    log.write_bytes(b"cart contents")
    fields = {
        "Severity": "Major Problem",
        "priority": "High Attention",  # ElementNames are matched without case
        "Found In": "1.4.2",  # and display names too
        "Owner": OTHER_USER,  # a UserName, looked up
        "c_Component": "Cart",
    }
    first = draft(fields=fields, attachments=(AttachmentFile("cart.txt", str(log), "text/plain"),))
    answers = tracker.create_many([first, draft("rpbts1-bbb")])
    assert [a.key for a in answers if isinstance(a, type(answers[0]))] == ["DE1", "DE2"]
    issue = answers[0]
    assert not isinstance(issue, TrackerError)
    tracker.complete(issue.key, first)
    defect = rally.state.defect("DE1")
    assert [t["Name"] for t in defect["Tags"]["_tagsNameArray"]] == ["rpbts1-aaa"]
    assert (defect["Severity"], defect["Priority"], defect["FoundInBuild"]) == (
        "Major Problem",
        "High Attention",
        "1.4.2",
    )
    assert (defect["c_Component"], defect["Owner"]["_refObjectName"]) == ("Cart", "Dev Person")
    assert defect["Project"]["_refObjectName"] == PROJECT
    assert defect["Name"] == "test_a: AssertionError <i>"  # a plain-text field
    assert "&lt;script&gt;" in defect["Description"] and "<script>" not in defect["Description"]
    assert "<pre>Traceback\n  &lt;b&gt;boom&lt;/b&gt;" in defect["Description"]
    (attachment,) = rally.state.attachments_of("DE1")
    assert (attachment["Name"], attachment["bytes"], attachment["ContentType"]) == (
        "cart.txt",
        b"cart contents",
        "text/plain",
    )
    oid = defect["ObjectID"]
    project = rally.state.project
    assert issue.url == f"{rally.url}/#/{project}/detail/defect/{oid}"
    assert (issue.status, issue.closed, issue.issue_id) == ("Submitted / Defined", False, str(oid))
    assert sorted(rally.state.tags()) == ["rpbts1-aaa", "rpbts1-bbb"]
    assert_no_secret_sent(rally)


def test_a_new_defect_is_tagged_with_its_labels(rally: RunningRally) -> None:
    tracker = open_tracker(integration(rally))
    tracker.create_many([draft(labels=("rpbts1-aaa", "flaky")), draft("rpbts1-bbb")])
    tracker.close()
    tagged = {
        d["FormattedID"]: [t["Name"] for t in d["Tags"]["_tagsNameArray"]]
        for d in rally.state.defects()
    }
    assert tagged == {"DE1": ["rpbts1-aaa", "flaky"], "DE2": ["rpbts1-bbb"]}
    assert rally.state.count("GET tag") == 1  # one query for every tag of the batch


def test_a_tag_is_looked_up_once_and_reused(rally: RunningRally, auth: str) -> None:
    rally.state.tag("rpbts1-aaa")  # made by an earlier run
    first = open_tracker(integration(rally, auth))
    first.create_many([draft("rpbts1-aaa"), draft("rpbts1-bbb"), draft("rpbts1-ccc")])
    assert rally.state.count("GET tag") == 1  # one OR-joined query for the batch
    assert rally.state.count("POST tag/create") == 2
    rally.state.set_state("DE1", "Closed")
    first.create_many([draft("rpbts1-aaa")])  # the tag is cached for the run
    assert rally.state.count("GET tag") == 1
    first.close()
    assert sorted(rally.state.tags()) == ["rpbts1-aaa", "rpbts1-bbb", "rpbts1-ccc"]
    assert len(rally.state.defects()) == 4


def test_find_one_query_per_batch_newest_open_first(
    rally: RunningRally, tracker: RallyTracker
) -> None:
    rally.state.file(Name="old", Tags=["rpbts1-aaa"], State="Closed")
    rally.state.file(Name="open", Tags=["rpbts1-aaa", "other"])
    rally.state.file(Name="closed", Tags=["rpbts1-bbb"], State="Closed")
    rally.state.file(Name="longer tag", Tags=["rpbts1-aaa-not"])
    found = tracker.find(["rpbts1-aaa", "rpbts1-bbb", "rpbts1-ccc"])
    assert rally.state.count("GET defect") == 1
    assert {f: (i.key, i.closed) for f, i in found.items()} == {
        "rpbts1-aaa": ("DE2", False),
        "rpbts1-bbb": ("DE3", True),
    }
    (search,) = [r for r in rally.state.requests if r.path.endswith("/defect")]
    assert search.query["projectScopeDown"] == ["true"] and search.query["start"] == ["1"]
    assert parse_query(search.query["query"][0])[0] == "OR"


def test_find_pages_with_start_and_pagesize(
    rally: RunningRally, tracker: RallyTracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rally_module, "PAGE", 2)
    for n in range(5):
        rally.state.file(Name=f"bug {n}", Tags=[f"rpbts1-{n}"])
    found = tracker.find([f"rpbts1-{n}" for n in range(5)])
    assert sorted(i.key for i in found.values()) == [f"DE{n}" for n in range(1, 6)]
    pages = [r.query for r in rally.state.requests if r.path.endswith("/defect")]
    assert [(q["start"], q["pagesize"]) for q in pages] == [
        (["1"], ["2"]),
        (["3"], ["2"]),
        (["5"], ["2"]),
    ]


def test_a_batch_larger_than_one_query_is_split(rally: RunningRally, tracker: RallyTracker) -> None:
    wanted = [f"rpbts1-{n:02d}" for n in range(rally_module.BATCH + 1)]
    rally.state.file(Name="last", Tags=[wanted[-1]])
    assert list(tracker.find(wanted)) == [wanted[-1]]
    assert rally.state.count("GET defect") == 2


def test_create_finds_an_open_defect_and_skips_closed_ones(
    rally: RunningRally, tracker: RallyTracker
) -> None:
    rally.state.file(Name="filed", Tags=["rpbts1-aaa"])
    rally.state.file(Name="closed", Tags=["rpbts1-bbb"], State="Closed")
    existing, new = tracker.create_many([draft("rpbts1-aaa"), draft("rpbts1-bbb")])
    assert not isinstance(existing, TrackerError) and not isinstance(new, TrackerError)
    assert (existing.key, existing.existed) == ("DE1", True)
    assert (new.key, new.existed) == ("DE3", False)
    # the lookup, then the query that settles what was filed (see the next test)
    lookup, settle = [r for r in rally.state.requests if r.path.endswith("/defect")]
    assert 'AND (State != "Closed")' in lookup.query["query"][0]
    assert (
        '"rpbts1-bbb"' in settle.query["query"][0] and "rpbts1-aaa" not in settle.query["query"][0]
    )


def test_two_jobs_filing_at_once_end_with_one_open_defect(
    rally: RunningRally, tracker: RallyTracker
) -> None:
    """Another job filed the fingerprint after our lookup: our newer defect is closed as a
    Duplicate of the older, with a post naming it, and the older is the answer (it gets this
    run's comment); one that stands alone is left as it is."""
    rally.state.file(Name="the other job's", Tags=["rpbts1-aaa"])
    ours, alone = tracker.create_many([draft("rpbts1-aaa"), draft("rpbts1-bbb")], look_first=False)
    assert not isinstance(ours, TrackerError) and not isinstance(alone, TrackerError)
    assert (ours.key, ours.existed, ours.closed) == ("DE1", True, False)
    assert (alone.key, alone.existed) == ("DE3", False)
    duplicate = rally.state.defect("DE2")
    assert (duplicate["State"], duplicate["Resolution"]) == ("Closed", "Duplicate")
    (post,) = rally.state.posts_of(duplicate["ObjectID"])
    assert "duplicate of DE1" in post["Text"] and "rpbts1-aaa" in post["Text"]
    assert rally.state.defect("DE1")["State"] != "Closed"
    assert rally.state.defect("DE3")["State"] != "Closed"
    assert rally.state.posts_of(rally.state.defect("DE3")["ObjectID"]) == []


def test_a_refusal_names_the_field_and_the_rest_is_filed(
    rally: RunningRally, tracker: RallyTracker
) -> None:
    bad = draft("rpbts1-bad", fields={"Severity": "Catastrophic"})
    refused, filed = tracker.create_many([bad, draft("rpbts1-good")])
    assert isinstance(refused, TrackerError) and not refused.retryable
    assert str(refused) == (
        'Rally create defect: Validation error: Defect.Severity "Catastrophic" is not an'
        " allowed value"
    )
    assert not isinstance(filed, TrackerError) and filed.key == "DE1"


def test_a_viewer_project_refusal_says_what_to_ask_for(rally: RunningRally, auth: str) -> None:
    viewer = open_tracker(integration(rally, auth, project_key=VIEWER_PROJECT))
    (refused,) = viewer.create_many([draft()])
    assert isinstance(refused, TrackerError)
    assert "Not authorized to create: Defect" in str(refused)
    assert "Editor role in project 'Archive'" in str(refused)
    viewer.close()


def test_rallys_warnings_are_shown(
    rally: RunningRally, tracker: RallyTracker, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, "rp_bts_agent"):
        (filed,) = tracker.create_many([draft(fields={"Labels": "x"})])
    assert not isinstance(filed, TrackerError)
    assert (
        "Rally create defect: Ignored JSON element Defect.Labels during processing of this"
        " request." in caplog.messages
    )


def test_an_unknown_owner_is_one_line(rally: RunningRally, tracker: RallyTracker) -> None:
    (refused,) = tracker.create_many([draft(fields={"Owner": "ghost@example.com"})])
    assert str(refused) == "Rally: field Owner: no user 'ghost@example.com' (give a UserName)"
    assert rally.state.defects() == []


# -- discussion, reopen, links -----------------------------------------------------------------


def comment(run_id: str) -> CommentDraft:
    return CommentDraft(
        Body((Section("", "Failed again <b>"), Section("Failure", "x", True))), run_id
    )


def test_one_discussion_post_per_run(rally: RunningRally, tracker: RallyTracker) -> None:
    rally.state.file(Name="filed", Tags=["rpbts1-aaa"])
    assert tracker.comment("DE1", comment("run-1")) is True
    assert tracker.comment("DE1", comment("run-1")) is False
    other = open_tracker(integration(rally))  # a replay in another process, same run
    assert other.comment("de1", comment("run-1")) is False
    assert other.comment("DE1", comment("run-1x")) is True  # not mistaken for run-1
    other.close()
    posts = rally.state.posts_of("DE1")
    assert len(posts) == 2
    assert "Failed again &lt;b&gt;" in posts[0]["Text"]
    assert posts[0]["Text"].endswith("<p>rp-bts run run_1</p>")


def test_reopen_sets_the_state(rally: RunningRally, tracker: RallyTracker) -> None:
    rally.state.file(Name="filed", State="Closed")
    reopened = tracker.reopen("DE1")
    assert (reopened.status, reopened.closed) == ("Open / Defined", False)
    assert rally.state.defect("DE1")["State"] == "Open"
    writes = rally.state.count("POST defect/{oid}")
    tracker.reopen("DE1")  # open already: nothing to do
    assert rally.state.count("POST defect/{oid}") == writes


def test_get_by_formatted_id_url_or_ref(rally: RunningRally, tracker: RallyTracker) -> None:
    for n in range(12):
        rally.state.file(Name=f"bug {n}")
    rally.state.set_state("DE12", "Fixed")
    oid = rally.state.defect("DE12")["ObjectID"]
    web = f"{rally.url}/#/{rally.state.project}d/detail/defect/{oid}"
    for key in ("DE12", "de12", web, f"{rally.api}/defect/{oid}"):
        found = tracker.get(key)
        assert (found.key, found.status, found.closed) == ("DE12", "Fixed / Defined", False)
        assert found.url == f"{rally.url}/#/{rally.state.project}/detail/defect/{oid}"
    with pytest.raises(TrackerError, match="no defect DE99 in workspace 'Shop WS'"):
        tracker.get("DE99")
    with pytest.raises(TrackerError, match="not a Rally defect id"):
        tracker.get("SHOP-1")


def test_dry_run_writes_nothing(rally: RunningRally) -> None:
    reader = open_tracker(integration(rally), read_only=True)
    with pytest.raises(TrackerError, match="read-only"):
        reader.create_many([draft()])
    assert rally.state.tags() == [] and rally.state.defects() == []


# -- attachments -------------------------------------------------------------------------------


def test_a_file_over_the_cap_is_cut_with_a_note(
    rally: RunningRally, tracker: RallyTracker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rally_module, "MAX_ATTACHMENT", 1000)  # 50 MB, scaled down
    rally.state.max_attachment_bytes = 1000
    big, small = tmp_path / "big.log", tmp_path / "small.log"
    big.write_bytes(b"x" * 5000)
    small.write_bytes(b"y" * 1000)
    files = (AttachmentFile("big.log", str(big)), AttachmentFile("small.log", str(small)))
    (filed,) = tracker.create_many([draft(attachments=files)])
    assert not isinstance(filed, TrackerError)
    tracker.complete(filed.key, draft(attachments=files))
    kept = {a["Name"]: a for a in rally.state.attachments_of(filed.key)}
    assert len(kept["big.log"]["bytes"]) == 1000
    assert kept["big.log"]["bytes"].endswith(
        b"[rp-bts: cut to 1,000 of 5,000 bytes (Rally's limit per file)]\n"
    )
    assert kept["big.log"]["Description"].startswith("cut to 1,000 of 5,000 bytes")
    assert kept["small.log"]["bytes"] == b"y" * 1000 and kept["small.log"]["Description"] == ""


def test_a_missing_file_is_skipped(
    rally: RunningRally, tracker: RallyTracker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ok = tmp_path / "ok.txt"
    ok.write_text("fine")
    files = (
        AttachmentFile("gone.txt", str(tmp_path / "gone.txt")),
        AttachmentFile("ok.txt", str(ok)),
    )
    (filed,) = tracker.create_many([draft()])
    assert not isinstance(filed, TrackerError)
    tracker.complete(filed.key, draft(attachments=files))
    assert [a["Name"] for a in rally.state.attachments_of(filed.key)] == ["ok.txt"]
    assert any("attachment 'gone.txt' skipped" in m for m in caplog.messages)


# -- authentication and faults -----------------------------------------------------------------


def test_basic_fetches_the_security_token_once_and_again_when_it_expires(
    rally: RunningRally,
) -> None:
    tracker = open_tracker(integration(rally, "basic"))
    tracker.create_many([draft("rpbts1-a"), draft("rpbts1-b")])
    assert rally.state.count("GET security/authorize") == 1
    rally.state.expire_tokens()
    (again,) = tracker.create_many([draft("rpbts1-c")])
    assert not isinstance(again, TrackerError)
    assert rally.state.count("GET security/authorize") == 2
    assert len(rally.state.defects()) == 3
    writes = [r for r in rally.state.requests if r.method == "POST"]
    assert all(r.query.get("key") == ["<redacted>"] for r in writes)
    assert all("fetch" not in r.query for r in writes)  # creates declare no query parameters
    tracker.close()
    assert_no_secret_sent(rally)


def test_api_key_goes_in_the_zsessionid_header(rally: RunningRally) -> None:
    tracker = open_tracker(integration(rally))
    tracker.create_many([draft()])
    tracker.close()
    assert rally.state.count("GET security/authorize") == 0
    assert all(r.headers.get("ZSESSIONID") == "<redacted>" for r in rally.state.requests)
    assert all("key" not in r.query for r in rally.state.requests)


def test_429_is_waited_out_after_retry_after(rally: RunningRally, tracker: RallyTracker) -> None:
    tracker.scope()
    rally.state.throttle(times=1, retry_after="1")
    started = time.monotonic()
    (filed,) = tracker.create_many([draft()])
    assert not isinstance(filed, TrackerError)
    assert time.monotonic() - started >= 0.9
    assert len(rally.state.defects()) == 1


def test_503_beyond_the_retries_is_kept_for_later(
    rally: RunningRally, tracker: RallyTracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http, "BACKOFF", 0.01)
    tracker.scope()
    rally.state.unavailable(times=http.RETRIES + 1)
    with pytest.raises(TrackerError) as caught:
        tracker.create_many([draft()])
    assert caught.value.retryable and "HTTP 503" in str(caught.value)


def test_a_rally_that_does_not_answer_costs_one_call(monkeypatch: pytest.MonkeyPatch) -> None:
    tracker = RallyTracker(
        build_integration("rally", "R", url="http://127.0.0.1:9", project_key="P", api_key="k1234")
    )
    with pytest.raises(TrackerError, match="cannot connect") as first:
        tracker.find(["rpbts1-aaa"])
    assert first.value.retryable and not first.value.transient

    def no_call(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a second call to a Rally that is down")

    monkeypatch.setattr(tracker.session, "request", no_call)
    with pytest.raises(TrackerError, match="cannot connect"):
        tracker.get("DE1")
    tracker.close()


def test_a_lost_answer_is_found_on_the_next_try(rally: RunningRally, tracker: RallyTracker) -> None:
    tracker.scope()
    tracker.tag_refs(["rpbts1-aaa"])
    rally.state.drop_write(1)  # the defect's create: done, unanswered
    with pytest.raises(TrackerError) as caught:
        tracker.create_many([draft()])
    assert caught.value.transient
    (again,) = tracker.create_many([draft()], look_first=True)
    assert not isinstance(again, TrackerError) and again.existed and again.key == "DE1"
    assert len(rally.state.defects()) == 1


def test_not_rally_is_one_line(tmp_path: Path) -> None:
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        with pytest.raises(TrackerError, match="HTTP 404"):
            RallyTracker(
                build_integration("rally", "R", url=url, project_key="P", api_key="k1234")
            ).scope()
    finally:
        server.shutdown()
        server.server_close()


# -- rp-bts integrations test ------------------------------------------------------------------


def test_check_passes_with_either_login(rally: RunningRally, auth: str) -> None:
    result = check_connection(integration(rally, auth), CheckOptions())
    assert result.ok, result
    assert result.summary == (
        f"Rally at {rally.url}: logged in as QA Bot ({auth}); workspace 'Shop WS'; project"
        " 'Shop'; files Defects"
    )


@pytest.mark.parametrize(
    ("switch", "hint"),
    [
        ("on_prem", 'an on-premises Rally takes no API keys; set auth = "basic"'),
        ("api_keys_disabled", "the subscription has API keys turned off"),
    ],
)
def test_check_explains_a_refused_api_key(
    make_rally: Callable[..., RunningRally], switch: str, hint: str
) -> None:
    server = make_rally(**{switch: True})
    result = check_connection(integration(server), CheckOptions())
    assert not result.ok
    assert result.summary == "Rally: login refused (HTTP 401, api-key)"
    assert any(hint in line for line in result.hints), result.hints
    assert API_KEY not in repr(result)
    if switch == "on_prem":  # and Basic works there
        assert check_connection(integration(server, "basic"), CheckOptions()).ok


def test_check_explains_a_wrong_password(rally: RunningRally) -> None:
    result = check_connection(integration(rally, "basic", password="wrong-pass-1"), CheckOptions())
    assert (result.ok, result.summary) == (False, "Rally: login refused (HTTP 401, basic)")
    assert "check username" in result.hints[0]
    assert "wrong-pass-1" not in repr(result)


def test_check_lists_the_workspaces_and_projects_the_user_sees(rally: RunningRally) -> None:
    wrong_ws = check_connection(integration(rally, workspace="Shop"), CheckOptions())
    assert not wrong_ws.ok
    assert (
        wrong_ws.summary
        == "Rally: logged in as QA Bot, but no workspace 'Shop' visible to this user"
    )
    assert wrong_ws.hints == ("set workspace to one of: Shop WS",)
    wrong_project = check_connection(integration(rally, project_key="Shop WS"), CheckOptions())
    assert wrong_project.hints == ("set project_key to one of: Shop, Archive",)
    by_oid = check_connection(
        integration(
            rally,
            workspace=str(rally.state.workspace),
            project_key=f"/project/{rally.state.project}",
        ),
        CheckOptions(),
    )
    assert by_oid.ok, by_oid


def test_check_says_when_the_user_is_no_editor(rally: RunningRally) -> None:
    result = check_connection(integration(rally, project_key=VIEWER_PROJECT), CheckOptions())
    assert not result.ok
    assert result.summary == "Rally: QA Bot may not create defects in project 'Archive' (Viewer)"
    assert "Editor role in 'Archive'" in result.hints[0]


def test_check_says_when_nothing_answers() -> None:
    result = check_connection(
        build_integration("rally", "R", url="http://127.0.0.1:9", project_key="P", api_key="k1234"),
        CheckOptions(),
    )
    assert not result.ok and "cannot connect" in result.summary
    assert "check url" in result.hints[0]


def test_settings_are_checked_before_any_call() -> None:
    missing = build_integration("rally", "R", project_key="P", auth="basic", username="u")
    result = check_connection(missing, CheckOptions())
    assert result.summary == "integration 'R': auth = \"basic\" needs username and password"
    task = build_integration("rally", "R", project_key="P", api_key="k1234", issue_type="Task")
    with pytest.raises(TrackerError, match="rp-bts files Rally Defects"):
        open_tracker(task)
