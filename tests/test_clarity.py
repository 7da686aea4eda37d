"""The Clarity tracker against the contract-checking test server: filing, dedupe, the update
once per run, linking, every auth mode, the connection check's hints and the sync settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from clarity_server import (  # noqa: F401 (fixtures)
    ACCESS_TOKEN,
    ACCESS_TOKEN_SECRET,
    API_KEY,
    CLIENT_ID,
    OAUTH_CONSUMER,
    PASSWORD,
    USER,
    RunningClarity,
    clarity_contract_fixture,
    clarity_fixture,
    make_clarity_fixture,
)

from rp_bts_agent.config import build_integration, load_config
from rp_bts_agent.config_types import ConfigError, Integration
from rp_bts_agent.connection import CheckOptions, check
from rp_bts_agent.integrations.clarity import ClaritySettings, SyncSettings
from rp_bts_agent.integrations.clarity.expression import ExpressionError, compile_expression
from rp_bts_agent.integrations.clarity.tracker import ClarityTracker, cut_name
from rp_bts_agent.tracker import Body, CommentDraft, IssueDraft, Section, TrackerError


def credentials(server: RunningClarity, auth: str) -> dict[str, Any]:
    return {
        "basic": {"username": USER, "password": PASSWORD},
        "session": {"username": USER, "password": PASSWORD},
        "api-key": {"api_key": API_KEY, "client_id": CLIENT_ID},
        "oauth1": {
            "consumer_key": OAUTH_CONSUMER,
            "private_key_file": str(server.private_key_file),
            "access_token": ACCESS_TOKEN,
            "access_token_secret": ACCESS_TOKEN_SECRET,
        },
    }[auth]


def integration(server: RunningClarity, auth: str = "basic", **values: Any) -> Integration:
    given = {"url": server.url, "project_key": "PR1001", "auth": auth} | credentials(server, auth)
    return build_integration("clarity", "Shop issues", **(given | values))


def draft(
    fingerprint: str = "rpbts1-aaa", summary: str = "test_a: AssertionError: boom", **kw: Any
) -> IssueDraft:
    body = Body(
        (
            Section("Traceback", "Traceback: line 1\nAssertionError: boom", True),
            Section("Log", "tail of log"),
        )
    )
    return IssueDraft(summary, body, fingerprint, tests=("t.py::test_a",), run_id="run-1", **kw)


@pytest.mark.parametrize("auth", ["basic", "session", "api-key", "oauth1"])
def test_files_finds_and_updates_once_per_run(clarity: RunningClarity, auth: str) -> None:
    tracker = ClarityTracker(
        integration(clarity, auth, fields={"priority": "High", "status": "Open"})
    )
    long = "test_a: AssertionError: " + "the cart total is wrong again " * 5
    (created,) = tracker.create_many(
        [draft(summary=long, fields={"priority": "High", "status": "Open"})]
    )
    assert not isinstance(created, TrackerError) and not created.existed
    (issue,) = clarity.issues()
    assert len(issue["name"]) <= 80 and issue["name"].endswith("\u2026")
    assert issue["name"][:-1].endswith("again") or issue["name"][:-1].endswith("wrong")  # a word
    assert issue["code"] == created.key and issue["c_rp_fingerprint"] == "rpbts1-aaa"
    assert "AssertionError: boom" in issue["description"] and "tail of log" in issue["description"]
    assert (issue["priority"], issue["status"]) == ("HIGH", "OPEN")
    assert (issue["c_occurrences"], issue["c_last_run"], issue["c_tests"]) == (
        1,
        "run-1",
        "t.py::test_a",
    )
    # the same failure again: found by one exact filter query, not filed twice
    searches = len(clarity.state.calls("GET", "/issues"))
    (again,) = tracker.create_many([draft()])
    assert not isinstance(again, TrackerError) and again.existed and again.key == created.key
    assert len(clarity.state.calls("GET", "/issues")) == searches + 1
    assert (
        "c_rp_fingerprint in ('rpbts1-aaa')"
        in clarity.state.calls("GET", "/issues")[-1].query["filter"]
    )
    # a repeat failure updates the issue once per run
    comment = CommentDraft(Body(()), "run-2", tests=("t.py::test_b",))
    assert tracker.comment(created.key, comment) is True
    assert tracker.comment(created.key, comment) is False
    assert clarity.patch_count == 1
    issue = clarity.issue(created.key)
    assert (issue["c_occurrences"], issue["c_last_run"]) == (2, "run-2")
    assert issue["c_tests"] == "t.py::test_a\nt.py::test_b"
    tracker.close()
    calls = [s for s in clarity.state.requests if "/auth/login" not in s.path]
    assert {s.auth for s in calls} == {auth}


def test_one_query_per_batch_and_code_collisions(clarity: RunningClarity) -> None:
    tracker = ClarityTracker(integration(clarity))
    drafts = [draft(f"rpbts1-{n:03d}") for n in range(3)]
    answers = tracker.create_many(drafts)
    assert len(clarity.issues()) == 3 and not any(isinstance(a, TrackerError) for a in answers)
    # another job filed the same failure a moment ago: the unique code is refused, the issue
    # that stands is answered
    (twin,) = tracker.create_many([drafts[0]], look_first=False)
    assert not isinstance(twin, TrackerError) and twin.existed and len(clarity.issues()) == 3
    tracker.close()


def test_link_by_code_id_or_url_and_on_closed(clarity: RunningClarity) -> None:
    tracker = ClarityTracker(integration(clarity))
    (created,) = tracker.create_many([draft()])
    assert not isinstance(created, TrackerError)
    clarity.set_status(created.key, "Closed")
    for key in (created.key, created.issue_id, created.url):
        got = tracker.get(key)
        assert (got.key, got.status, got.closed) == (created.key, "Closed", True)
    assert tracker.find(["rpbts1-aaa"])["rpbts1-aaa"].closed
    # on_closed = "new": a new issue related to the closed one, with its own code
    (newer,) = tracker.create_many([draft(relates_to=created.key)])
    assert not isinstance(newer, TrackerError) and newer.key == created.key + "-2"
    assert tracker.find(["rpbts1-aaa"])["rpbts1-aaa"].key == newer.key  # open before closed
    # on_closed = "reopen"
    assert not tracker.reopen(created.key).closed
    assert clarity.issue(created.key)["status"] == "OPEN"
    with pytest.raises(TrackerError, match="no issue 'NOPE'"):
        tracker.get("NOPE")
    tracker.close()


def test_field_map_checked_against_describe(clarity: RunningClarity) -> None:
    tracker = ClarityTracker(integration(clarity))
    with pytest.raises(TrackerError, match=r"no attribute 'severity'.*c_rp_fingerprint"):
        tracker.body(draft(fields={"severity": "High"}))
    with pytest.raises(
        TrackerError, match=r"'Urgent' is not a value of priority.*Low, Medium, High"
    ):
        tracker.body(draft(fields={"priority": "Urgent"}))
    with pytest.raises(TrackerError, match="read-only"):
        tracker.body(draft(fields={"createdDate": "2020-01-01"}))
    (refused,) = tracker.create_many([draft(fields={"c_occurrences": "many"})])
    assert isinstance(refused, TrackerError) and "takes a number" in str(refused)
    assert clarity.issues() == []
    tracker.close()


def test_session_logs_in_once_and_again_after_expiry(clarity: RunningClarity) -> None:
    tracker = ClarityTracker(integration(clarity, "session"))
    tracker.create_many([draft("rpbts1-1"), draft("rpbts1-2")])
    assert clarity.state.logins == 1
    clarity.state.expire_sessions()
    assert tracker.get(clarity.issues()[0]["code"]).status == "Open"
    assert clarity.state.logins == 2
    tracker.close()
    assert clarity.state.logouts == 1
    assert all("authtoken" in s.headers for s in clarity.state.requests if s.auth == "session")


def test_disabled_neither_files_nor_finds(clarity: RunningClarity) -> None:
    tracker = ClarityTracker(integration(clarity, enabled=False))
    with pytest.raises(TrackerError, match="disabled"):
        tracker.create_many([draft()])
    with pytest.raises(TrackerError, match="disabled"):
        tracker.find(["x"])
    assert clarity.state.requests == []


def test_cut_name() -> None:
    assert cut_name("short") == "short"
    cut = cut_name("a" * 100)
    assert len(cut) == 80 and cut.endswith("\u2026")
    assert cut_name("one\ntwo") == "one two"


# -- integrations test --------------------------------------------------------------------


def test_check_ok_and_the_hints(make_clarity: Any) -> None:
    server = make_clarity()
    ok = check(integration(server), CheckOptions())
    assert ok.ok and "project PR1001" in ok.summary
    for auth in ("session", "api-key", "oauth1"):
        assert check(integration(server, auth), CheckOptions()).ok, auth
    bad_path = check(integration(server, url=server.url + "/niku/app"), CheckOptions())
    assert not bad_path.ok and f'set url = "{server.url}"' in bad_path.hints[0]
    nowhere = check(integration(server, url="http://127.0.0.1:9"), CheckOptions())
    assert not nowhere.ok and "rp-bts adds /ppm/rest/v1" in nowhere.hints[0]
    missing = check(integration(server, project_key="Shop"), CheckOptions())
    assert not missing.ok and "no project 'Shop'" in missing.summary
    assert 'set project_key = "PR1001"' in missing.hints[0]
    assert "PR1001 (Shop), PR1002 (Archive)" in missing.hints[1]
    wrong = check(integration(server, password="nope"), CheckOptions())
    assert not wrong.ok and "username and password" in wrong.hints[0]
    assert "nope" not in wrong.summary + "".join(wrong.hints)
    cases = [
        ({"api_access": False}, "basic", "API - Access"),
        ({"api_keys_enabled": False}, "api-key", "API keys are not enabled"),
        ({"api_key_expired": True}, "api-key", "expired"),
        ({"api_key_revoked": True}, "api-key", "revoked"),
    ]
    for switches, auth, hint in cases:
        result = check(integration(make_clarity(**switches), auth), CheckOptions())
        assert not result.ok and hint in result.hints[0], (switches, result)


# -- settings -----------------------------------------------------------------------------


def _load(tmp_path: Path, server: RunningClarity, **overrides: Any) -> Any:
    (tmp_path / "rp-bts.toml").write_text(server.integration_toml(**overrides), encoding="utf-8")
    return load_config(tmp_path, global_file=tmp_path / "none.toml")


def test_sync_settings_typed(
    tmp_path: Path, clarity: RunningClarity, monkeypatch: pytest.MonkeyPatch
) -> None:
    clarity.login_env(monkeypatch)
    sync = {
        "period": 60,
        "join": "or",
        "expression": [{"field": "status", "op": "in", "value": ["Open", "In Progress"]}],
        "projects": [{"code": "PR1001", "push": True, "mapping": {"tests": "c_tests"}}],
    }
    config = _load(tmp_path, clarity, sync=sync)
    settings = config.integrations[0].settings_as(ClaritySettings)
    assert settings.sync.period == 60 and settings.sync.join == "or"
    assert settings.sync.expression[0].value == ("Open", "In Progress")
    assert settings.tabs()[0].push and settings.mapping("PR1001")["tests"] == "c_tests"


@pytest.mark.parametrize(
    ("sync", "key", "message"),
    [
        ({"period": 0}, "sync.period", "seconds"),
        ({"join": "xor"}, "sync.join", "use and, or"),
        (
            {"expression": [{"field": "status", "op": "~", "value": "x"}]},
            "sync.expression[0].op",
            "unknown operator",
        ),
        (
            {"expression": [{"field": "status", "op": "in", "value": "x"}]},
            "sync.expression[0].value",
            "non-empty list",
        ),
        (
            {"expression": [{"field": "status", "value": "x"}]},
            "sync.expression[0]",
            "field, op and value",
        ),
        ({"projects": [{"auto": True}]}, "sync.projects[0].code", "code"),
        (
            {"projects": [{"code": "PR1001", "mapping": {"colour": "c_x"}}]},
            "sync.projects[0].mapping.colour",
            "unknown field",
        ),
        (
            {"projects": [{"code": "PR1001", "push": "yes"}]},
            "sync.projects[0].push",
            "true or false",
        ),
        ({"every": 5}, "sync.every", "unknown key"),
    ],
)
def test_sync_settings_errors_name_file_and_key(
    tmp_path: Path,
    clarity: RunningClarity,
    monkeypatch: pytest.MonkeyPatch,
    sync: Any,
    key: str,
    message: str,
) -> None:
    clarity.login_env(monkeypatch)
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, clarity, sync=sync)
    text = str(info.value)
    assert "\n" not in text and str(tmp_path / "rp-bts.toml") in text
    assert key in info.value.key and message in text


def test_expression_compiles_with_quoting(clarity: RunningClarity) -> None:
    from rp_bts_agent.integrations.clarity import Statement

    tracker = ClarityTracker(integration(clarity))
    sync = SyncSettings(
        expression=(
            Statement("name", "contains", "it's a \\ test"),
            Statement("status", "in", ("Open", "In Progress")),
            Statement("c_occurrences", ">=", 2),
        ),
    )
    text = compile_expression(sync, tracker.attributes, tracker.lookup_id)
    assert text == (
        "(name contains 'it\\'s a \\\\ test') and (status in ('OPEN', 'IN_PROGRESS'))"
        " and (c_occurrences >= 2)"
    )
    clarity.state.add_issue("PR1001", "it's a \\ test of quoting", c_occurrences=3)
    assert len(tracker.search(text)) == 1  # the server parses it as written
    with pytest.raises(ExpressionError, match="unknown field 'colour'"):
        compile_expression(
            SyncSettings(expression=(Statement("colour", "=", "x"),)),
            tracker.attributes,
            tracker.lookup_id,
        )
    with pytest.raises(ExpressionError, match="'startsWith' does not fit status \\(lookup\\)"):
        compile_expression(
            SyncSettings(expression=(Statement("status", "startsWith", "O"),)),
            tracker.attributes,
            tracker.lookup_id,
        )
    with pytest.raises(ExpressionError, match="give a number"):
        compile_expression(
            SyncSettings(expression=(Statement("c_occurrences", ">", "2"),)),
            tracker.attributes,
            tracker.lookup_id,
        )
    tracker.close()
