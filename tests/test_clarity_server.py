"""The Clarity test server behaves as the contract and Broadcom's docs say: driven here with
plain ``requests`` (and requests-oauthlib for OAuth 1.0a), so a client can trust it."""

from __future__ import annotations

import base64
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from clarity_server import (
    API_KEY,
    CLIENT_ID,
    ENV,
    OAUTH_CONSUMER,
    PASSWORD,
    USER,
    RunningClarity,
    matches,
    parse_filter,
    validate_response,
)

from rp_bts_agent.config import load_config
from rp_bts_agent.integrations.clarity import ClaritySettings

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

BASIC = (USER, PASSWORD)
MakeClarity = Callable[..., RunningClarity]


def _issues_url(server: RunningClarity, project: str = "PR1001") -> str:
    return f"{server.api}/projects/{server.project_id(project)}/issues"


def _basic() -> requests.Session:
    session = requests.Session()
    session.auth = BASIC
    return session


def _error(response: requests.Response, status: int, code: str) -> str:
    """The error's message, after checking status, code and the contract's error body."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["errorCode"] == code, body
    assert body["httpStatus"] == str(status) and "resourceId" in body
    return str(body["errorMessage"])


def _create(session: requests.Session, server: RunningClarity, **attrs: Any) -> dict[str, Any]:
    response = session.post(
        _issues_url(server), json=attrs, headers={"x-api-full-response": "true"}, timeout=5
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# -- authentication --------------------------------------------------------------------------


def test_basic_on_every_call(clarity: RunningClarity) -> None:
    ok = requests.get(f"{clarity.api}/projects", auth=BASIC, timeout=5)
    assert ok.status_code == 200 and ok.json()["_totalCount"] == 2
    wrong = requests.get(f"{clarity.api}/projects", auth=(USER, "nope"), timeout=5)
    assert "password" in _error(wrong, 401, "API-1001")
    assert [s.auth for s in clarity.state.requests] == ["basic", "basic"]


def test_session_login_expiry_relogin_logout(clarity: RunningClarity) -> None:
    login = requests.post(f"{clarity.api}/auth/login", auth=BASIC, timeout=5)
    assert login.status_code == 200
    token = login.json()["authToken"]
    header = {"authToken": token}
    assert requests.get(f"{clarity.api}/projects", headers=header, timeout=5).status_code == 200
    clarity.state.expire_sessions()  # the session timed out on the server
    expired = requests.get(f"{clarity.api}/projects", headers=header, timeout=5)
    assert "log in again" in _error(expired, 401, "API-1002")
    again = requests.post(f"{clarity.api}/auth/login", auth=BASIC, timeout=5).json()["authToken"]
    assert again != token
    header = {"authToken": again}
    assert requests.get(f"{clarity.api}/projects", headers=header, timeout=5).status_code == 200
    out = requests.delete(f"{clarity.api}/auth/logout", headers=header, timeout=5)
    assert out.status_code == 200 and out.content == b""
    after = requests.get(f"{clarity.api}/projects", headers=header, timeout=5)
    _error(after, 401, "API-1002")
    assert (clarity.state.logins, clarity.state.logouts) == (2, 1)
    bad_login = requests.post(f"{clarity.api}/auth/login", auth=(USER, "x"), timeout=5)
    _error(bad_login, 401, "API-1001")


def test_session_tokens_that_serve_n_calls(make_clarity: MakeClarity) -> None:
    server = make_clarity(session_calls=2)
    token = requests.post(f"{server.api}/auth/login", auth=BASIC, timeout=5).json()["authToken"]
    codes = [
        requests.get(f"{server.api}/projects", headers={"authToken": token}, timeout=5).status_code
        for _ in range(3)
    ]
    assert codes == [200, 200, 401]


def test_api_key_with_client_header(clarity: RunningClarity) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}", "x-api-ppm-client": CLIENT_ID}
    assert requests.get(f"{clarity.api}/projects", headers=headers, timeout=5).status_code == 200
    other = {**headers, "x-api-ppm-client": "someone_else"}
    wrong_client = requests.get(f"{clarity.api}/projects", headers=other, timeout=5)
    assert "x-api-ppm-client" in _error(wrong_client, 401, "API-1033")
    unknown = {**headers, "Authorization": "Bearer not-a-key"}
    assert "Invalid API key" in _error(
        requests.get(f"{clarity.api}/projects", headers=unknown, timeout=5), 401, "API-1033"
    )


@pytest.mark.parametrize(
    ("switch", "code", "words"),
    [
        ("api_keys_enabled", "API-1030", "not enabled"),
        ("api_key_expired", "API-1031", "expired"),
        ("api_key_revoked", "API-1032", "revoked"),
    ],
)
def test_api_key_refusals(make_clarity: MakeClarity, switch: str, code: str, words: str) -> None:
    server = make_clarity(**{switch: switch != "api_keys_enabled"})  # enabled=False, or True
    headers = {"Authorization": f"Bearer {API_KEY}", "x-api-ppm-client": CLIENT_ID}
    refused = requests.get(f"{server.api}/projects", headers=headers, timeout=5)
    assert words in _error(refused, 401, code)
    # Basic still works: only the API key is refused
    assert requests.get(f"{server.api}/projects", auth=BASIC, timeout=5).status_code == 200


def test_user_without_api_access_right(make_clarity: MakeClarity) -> None:
    """Broadcom KB 12828: a user without "API - Access" gets API-1029 Authentication Error."""
    server = make_clarity(api_access=False)
    for response in (
        requests.post(f"{server.api}/auth/login", auth=BASIC, timeout=5),
        requests.get(f"{server.api}/projects", auth=BASIC, timeout=5),
        requests.get(
            f"{server.api}/projects",
            headers={"Authorization": f"Bearer {API_KEY}", "x-api-ppm-client": CLIENT_ID},
            timeout=5,
        ),
    ):
        assert _error(response, 401, "API-1029") == "Authentication Error"
    wrong = requests.get(f"{server.api}/projects", auth=(USER, "nope"), timeout=5)
    _error(wrong, 401, "API-1001")  # bad credentials still say so


def test_no_credentials_is_refused_and_a_contract_violation(clarity: RunningClarity) -> None:
    response = requests.get(f"{clarity.api}/projects", timeout=5)
    _error(response, 401, "API-1000")
    violations = clarity.state.take_violations()
    assert len(violations) == 1 and "GET /ppm/rest/v1/projects" in violations[0]
    assert "Security" in violations[0]


def test_oauth1_dance_then_signed_calls(clarity: RunningClarity) -> None:
    from oauthlib.oauth1 import SIGNATURE_RSA  # type: ignore[import-untyped,unused-ignore]
    from requests_oauthlib import OAuth1, OAuth1Session  # type: ignore[import-untyped,unused-ignore]

    private = clarity.private_key_file.read_text(encoding="utf-8")
    session = OAuth1Session(
        OAUTH_CONSUMER, rsa_key=private, signature_method=SIGNATURE_RSA, callback_uri="oob"
    )
    session.fetch_request_token(clarity.request_token_url)
    code = clarity.visit(session.authorization_url(clarity.authorize_url))
    assert code
    tokens = session.fetch_access_token(clarity.access_token_url, verifier=code)
    session.close()
    token = tokens["oauth_token"]
    assert token in clarity.state.oauth_access
    auth = OAuth1(
        OAUTH_CONSUMER,
        rsa_key=private,
        signature_method=SIGNATURE_RSA,
        resource_owner_key=token,
        resource_owner_secret=tokens["oauth_token_secret"],
    )
    found = requests.get(
        f"{clarity.api}/projects", params={"filter": "(code = 'PR1001')"}, auth=auth, timeout=5
    )
    assert found.status_code == 200 and found.json()["_results"][0]["name"] == "Shop"
    created = requests.post(_issues_url(clarity), json={"name": "signed"}, auth=auth, timeout=5)
    assert created.status_code == 200
    # the access token from the environment (integration_toml) works the same way
    env = clarity.login_env()
    preset = OAuth1(
        OAUTH_CONSUMER,
        rsa_key=private,
        signature_method=SIGNATURE_RSA,
        resource_owner_key=env["CLARITY_ACCESS_TOKEN"],
        resource_owner_secret=env["CLARITY_ACCESS_TOKEN_SECRET"],
    )
    assert requests.get(f"{clarity.api}/describe", auth=preset, timeout=5).status_code == 200
    revoked = OAuth1(
        OAUTH_CONSUMER, rsa_key=private, signature_method=SIGNATURE_RSA, resource_owner_key="x"
    )
    refused = requests.get(f"{clarity.api}/describe", auth=revoked, timeout=5)
    _error(refused, 401, "API-1034")
    assert [s.auth for s in clarity.state.calls(path="/ppm/rest/v1/")] == ["oauth1"] * 4


def test_oauth1_refusals(make_clarity: MakeClarity) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from oauthlib.oauth1 import SIGNATURE_RSA  # type: ignore[import-untyped,unused-ignore]
    from requests_oauthlib import OAuth1Session  # type: ignore[import-untyped,unused-ignore]

    server = make_clarity(oauth_user_denies=True)
    private = server.private_key_file.read_text(encoding="utf-8")
    session = OAuth1Session(
        OAUTH_CONSUMER, rsa_key=private, signature_method=SIGNATURE_RSA, callback_uri="oob"
    )
    session.fetch_request_token(server.request_token_url)
    assert server.visit(session.authorization_url(server.authorize_url)) == ""  # denied
    with pytest.raises(Exception, match="401"):
        session.fetch_access_token(server.access_token_url, verifier="guess")
    session.close()
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    pem = stranger.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    forged = OAuth1Session(
        OAUTH_CONSUMER, rsa_key=pem, signature_method=SIGNATURE_RSA, callback_uri="oob"
    )
    with pytest.raises(Exception, match="401"):  # not the registered public key
        forged.fetch_request_token(server.request_token_url)
    forged.close()


# -- projects, paging, filters ---------------------------------------------------------------


def test_projects_filter_fields_sort_and_one(clarity: RunningClarity) -> None:
    s = _basic()
    page = s.get(
        f"{clarity.api}/projects",
        params={"filter": "(code = 'PR1001')", "fields": "code,name"},
        timeout=5,
    ).json()
    assert page["_totalCount"] == 1 and "_next" not in page
    assert page["_results"] == [
        {
            "_internalId": clarity.project_id("PR1001"),
            "_self": f"{clarity.api}/projects/{clarity.project_id('PR1001')}",
            "code": "PR1001",
            "name": "Shop",
        }
    ]
    by_name = s.get(f"{clarity.api}/projects", params={"sort": "name asc"}, timeout=5).json()
    assert [p["name"] for p in by_name["_results"]] == ["Archive", "Shop"]
    inactive = s.get(
        f"{clarity.api}/projects", params={"filter": "(isActive = false)"}, timeout=5
    ).json()
    assert [p["code"] for p in inactive["_results"]] == ["PR1002"]
    one = s.get(f"{clarity.api}/projects/{clarity.project_id('PR1002')}", timeout=5)
    assert one.json()["name"] == "Archive"
    missing = s.get(f"{clarity.api}/projects/999", timeout=5)
    _error(missing, 404, "API-1009")
    _error(s.get(f"{clarity.api}/projects", params={"sort": "nope"}, timeout=5), 400, "API-1007")
    _error(s.get(f"{clarity.api}/projects", params={"fields": "x"}, timeout=5), 400, "API-1007")
    s.close()


def test_paging_follows_next(clarity: RunningClarity) -> None:
    s = _basic()
    for n in range(7):
        _create(s, clarity, name=f"bug {n}", code=f"B{n}")
    _create(s, clarity, name="other", code="OTHER")
    url: str | None = _issues_url(clarity)
    params: dict[str, Any] | None = {
        "filter": "(code startsWith 'B') and (status = 'OPEN')",
        "limit": 3,
        "sort": "code desc",
    }
    seen: list[str] = []
    pages = 0
    while url:
        page = s.get(url, params=params, timeout=5).json()
        params = None  # _next carries the query (filter, sort, limit, offset)
        assert page["_totalCount"] == 7 and page["_pageSize"] == 3
        seen += [i["code"] for i in page["_results"]]
        url = page.get("_next")
        pages += 1
    assert seen == [f"B{n}" for n in range(6, -1, -1)] and pages == 3
    default = s.get(_issues_url(clarity), timeout=5).json()
    assert default["_pageSize"] == 25 and "_next" not in default and "_previous" not in default
    last = s.get(_issues_url(clarity), params={"offset": 6, "limit": 3}, timeout=5).json()
    assert len(last["_results"]) == 2 and "offset=3" in last["_previous"]
    s.close()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("(code = 'A1')", ["A1"]),
        ("(code != 'A1')", ["A2", "B1"]),
        ("(c_occurrences > 1)", ["A2", "B1"]),
        ("(c_occurrences >= 2) and (c_occurrences <= 2)", ["A2"]),
        ("(c_occurrences < 2)", ["A1"]),
        ("(name startsWith 'test_')", ["A1", "A2"]),
        ("(name endsWith 'cart')", ["A1"]),
        ("(name contains 'it\\'s')", ["B1"]),
        ("(code in ('A1','B1'))", ["A1", "B1"]),
        ("(c_occurrences in (1, 3.5))", ["A1", "B1"]),
        ("((code = 'A1') or (code = 'A2')) and (priority = 'HIGH')", ["A2"]),
        ("(code = 'A1') or (code = 'A2') and (priority = 'LOW')", ["A1"]),  # and binds first
        ("((status = 'OPEN'))", ["A1", "A2", "B1"]),
        ("(_internalId > 0) and (description = 'back\\\\slash')", ["B1"]),
    ],
)
def test_filter_language(text: str, expected: list[str]) -> None:
    items = [
        {"_internalId": 1, "code": "A1", "name": "test_empty_cart", "c_occurrences": 1,
         "priority": "LOW", "status": "OPEN", "description": None},
        {"_internalId": 2, "code": "A2", "name": "test_totals", "c_occurrences": 2,
         "priority": "HIGH", "status": "OPEN", "description": None},
        {"_internalId": 3, "code": "B1", "name": "it's broken", "c_occurrences": 3.5,
         "priority": "LOW", "status": "OPEN", "description": "back\\slash"},
    ]  # fmt: skip
    types = {
        "_internalId": "integer",
        "code": "string",
        "name": "string",
        "c_occurrences": "number",
        "priority": "lookup",
        "status": "lookup",
        "description": "string",
    }
    tree = parse_filter(text, types)
    assert [i["code"] for i in items if matches(tree, i)] == expected


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("(code = PR1001)", "single quotes"),  # unquoted string
        ('(code = "PR1001")', "strings take single quotes"),
        ("(code = 'PR1001)", "unterminated string"),
        ("(code = 'O'Brien')", "unterminated string"),
        ("(code = 'O''Brien')", "expected ')'"),  # a doubled quote is no escape
        ("code = 'PR1001'", "expected '('"),  # conditions are parenthesised
        ("(nope = 'x')", "attribute 'nope' does not exist"),
        ("(isActive = 'true')", "true or false"),
        ("(_internalId = '5000001')", "bare number"),
        ("(code like 'P%')", "unknown operator"),
        ("(code = 'A') AND (name = 'B')", "unexpected 'AND'"),
        ("(isActive startsWith 'x')", "needs a string attribute"),
        ("(code = 'A')) ", "unexpected ')'"),
        ("", "empty filter"),
    ],
)
def test_filter_refusals(clarity: RunningClarity, text: str, words: str) -> None:
    response = requests.get(
        f"{clarity.api}/projects", params={"filter": text}, auth=BASIC, timeout=5
    )
    message = _error(response, 400, "API-1005")
    assert message.startswith("Invalid filter: ") and words in message, message


def test_filter_on_issue_attributes_over_http(clarity: RunningClarity) -> None:
    s = _basic()
    _create(s, clarity, name="one", c_rp_fingerprint="fp-1", c_occurrences=1)
    _create(s, clarity, name="two", c_rp_fingerprint="fp-2", c_occurrences=4)
    wanted = "(c_rp_fingerprint in ('fp-2','fp-9')) and (c_occurrences >= 2)"
    page = s.get(_issues_url(clarity), params={"filter": wanted}, timeout=5).json()
    assert [i["name"] for i in page["_results"]] == ["two"]
    bad = s.get(_issues_url(clarity), params={"filter": "(c_fingerprint = 'x')"}, timeout=5)
    assert "c_fingerprint" in _error(bad, 400, "API-1005")
    s.close()


# -- issues: create, patch, describe, lookups -------------------------------------------------


def test_create_answers_id_and_links_or_everything(clarity: RunningClarity) -> None:
    s = _basic()
    short = s.post(
        _issues_url(clarity),
        json={"name": "test_cart failed", "priority": "HIGH", "c_rp_fingerprint": "fp-1"},
        timeout=5,
    )
    assert short.status_code == 200
    body = short.json()
    assert set(body) == {"_internalId", "_self", "_parent", "name", "priority", "c_rp_fingerprint"}
    assert body["_self"].endswith(f"/issues/{body['_internalId']}")
    full = _create(
        s, clarity, name="test_totals", code="RP-2", c_occurrences=3, c_last_run="run 7",
        c_tests="tests/test_shop.py::test_totals", description="Traceback...",
    )  # fmt: skip
    assert full["status"] == "OPEN" and full["priority"] == "MEDIUM"  # the defaults
    assert full["c_occurrences"] == 3 and full["code"] == "RP-2"
    assert full["createdDate"] == full["lastUpdatedDate"] == full["_lastUpdatedDate"]
    stored = clarity.issues("PR1001")
    assert [i["code"] for i in stored] == [stored[0]["code"], "RP-2"]
    assert stored[0]["code"].startswith("ISS")  # numbered by the server when not given
    got = s.get(f"{_issues_url(clarity)}/{full['_internalId']}", params={"fields": "name"})
    assert got.json() == {
        "_internalId": full["_internalId"],
        "_self": full["_self"],
        "_parent": full["_parent"],
        "name": "test_totals",
    }
    elsewhere = s.get(f"{_issues_url(clarity, 'PR1002')}/{full['_internalId']}", timeout=5)
    _error(elsewhere, 404, "API-1009")  # an issue lives in its own project
    s.close()


def test_create_refusals(clarity: RunningClarity) -> None:
    s = _basic()
    url = _issues_url(clarity)
    _create(s, clarity, name="first", code="RP-1")
    duplicate = s.post(url, json={"name": "second", "code": "RP-1"}, timeout=5)
    assert "already exists" in _error(duplicate, 400, "API-1018")
    unknown = s.post(url, json={"name": "x", "c_severity": "S1"}, timeout=5)
    assert "c_severity" in _error(unknown, 400, "API-1007")
    read_only = s.post(url, json={"name": "x", "lastUpdatedDate": "2020-01-01"}, timeout=5)
    _error(read_only, 400, "API-1008")
    system = s.post(url, json={"name": "x", "_internalId": 1}, timeout=5)
    _error(system, 400, "API-1008")
    by_label = s.post(url, json={"name": "x", "priority": "High"}, timeout=5)
    assert "HIGH" in _error(by_label, 400, "API-1018")  # lookups take the value's id
    bad_status = s.post(url, json={"name": "x", "status": "DONE"}, timeout=5)
    assert STATUS_IDS in _error(bad_status, 400, "API-1018")
    no_name = s.post(url, json={"code": "RP-9"}, timeout=5)
    assert "mandatory" in _error(no_name, 400, "API-1018")
    wrong_type = s.post(url, json={"name": "x", "c_occurrences": "3"}, timeout=5)
    assert "number" in _error(wrong_type, 400, "API-1018")
    fingerprint = s.post(url, json={"name": "x", "c_rp_fingerprint": "f" * 81}, timeout=5)
    assert "80" in _error(fingerprint, 400, "API-1018")  # described maxLength, not in contract
    assert clarity.state.take_violations() == []
    too_long = s.post(url, json={"name": "n" * 81}, timeout=5)
    assert "longer than 80" in _error(too_long, 400, "API-1018")
    exactly = s.post(url, json={"name": "n" * 80}, timeout=5)
    assert exactly.status_code == 200
    # the contract says maxLength 80 too: the 81-character request is also a violation
    violations = clarity.state.take_violations()
    assert len(violations) == 1 and "InvalidRequestBody" in violations[0]
    assert "is too long" in violations[0]
    assert len(clarity.issues("PR1001")) == 2
    s.close()


STATUS_IDS = "OPEN, IN_PROGRESS, RESOLVED, CLOSED"


def test_patch_changes_only_given_fields(clarity: RunningClarity) -> None:
    s = _basic()
    issue = _create(s, clarity, name="flaky", c_occurrences=1, c_tests="a", priority="LOW")
    url = f"{_issues_url(clarity)}/{issue['_internalId']}"
    time.sleep(0.002)
    short = s.patch(url, json={"c_occurrences": 2, "status": "IN_PROGRESS"}, timeout=5)
    assert short.status_code == 200
    assert set(short.json()) == {"_internalId", "_self", "_parent", "c_occurrences", "status"}
    full = s.patch(
        url, json={"c_last_run": "run 9"}, headers={"x-api-full-response": "true"}, timeout=5
    ).json()
    assert full["c_occurrences"] == 2 and full["status"] == "IN_PROGRESS"
    assert full["c_tests"] == "a" and full["priority"] == "LOW" and full["name"] == "flaky"
    assert full["c_last_run"] == "run 9"
    assert full["lastUpdatedDate"] > issue["lastUpdatedDate"]
    assert full["createdDate"] == issue["createdDate"]
    assert clarity.patch_count == 2
    refused = s.patch(url, json={"c_nope": 1}, timeout=5)
    _error(refused, 400, "API-1007")
    blank = s.patch(url, json={"name": ""}, timeout=5)
    _error(blank, 400, "API-1018")
    other = _create(s, clarity, name="other", code="TAKEN")
    clash = s.patch(url, json={"code": "TAKEN"}, timeout=5)
    assert "already exists" in _error(clash, 400, "API-1018")
    same = s.patch(f"{_issues_url(clarity)}/{other['_internalId']}", json={"code": "TAKEN"})
    assert same.status_code == 200  # its own code is no clash
    assert clarity.state.issue(issue["_internalId"])["c_occurrences"] == 2
    s.close()


def test_describe_and_lookups(clarity: RunningClarity) -> None:
    s = _basic()
    resources = s.get(f"{clarity.api}/describe", timeout=5).json()["resources"]
    assert {r["resourceName"] for r in resources} >= {"projects", "issues"}
    described = s.get(f"{clarity.api}/describe/issues", timeout=5).json()
    attrs = {a["name"]: a for a in described["attributes"]}
    assert {n: attrs[n]["dataType"] for n in ("c_rp_fingerprint", "c_occurrences")} == {
        "c_rp_fingerprint": "string",
        "c_occurrences": "number",
    }
    assert attrs["c_last_run"]["dataType"] == attrs["c_tests"]["dataType"] == "string"
    assert attrs["name"]["maxLength"] == 80 and attrs["name"]["isMandatory"]
    assert attrs["lastUpdatedDate"]["isReadOnly"]
    assert attrs["status"]["lookupCode"] == "RIM_ISSUE_STATUS"
    assert attrs["priority"]["lookupCode"] == "RIM_ISSUE_PRIORITY"
    assert set(described["methods"]) >= {"GET", "POST", "PATCH"}
    _error(s.get(f"{clarity.api}/describe/widgets", timeout=5), 404, "API-1009")
    priorities = s.get(
        f"{clarity.api}/lookups/{attrs['priority']['lookupCode']}/lookupValues", timeout=5
    ).json()
    assert [(v["id"], v["displayValue"]) for v in priorities["_results"]] == [
        ("LOW", "Low"),
        ("MEDIUM", "Medium"),
        ("HIGH", "High"),
    ]
    statuses = s.get(f"{clarity.api}/lookups/RIM_ISSUE_STATUS/lookupValues", timeout=5).json()
    assert [v["displayValue"] for v in statuses["_results"]] == [
        "Open",
        "In Progress",
        "Resolved",
        "Closed",
    ]
    closed = s.get(
        f"{clarity.api}/lookups/RIM_ISSUE_STATUS/lookupValues",
        params={"filter": "(code = 'CLOSED')"},
        timeout=5,
    ).json()["_results"]
    by_id = s.get(
        f"{clarity.api}/lookups/RIM_ISSUE_STATUS/lookupValues",
        params={"filter": f"(_internalId = {closed[0]['_internalId']})"},
        timeout=5,
    ).json()["_results"]
    assert closed == by_id and closed[0]["displayValue"] == "Closed"
    _error(s.get(f"{clarity.api}/lookups/NOPE/lookupValues", timeout=5), 404, "API-1009")
    s.close()


def test_server_side_changes_are_seen(clarity: RunningClarity) -> None:
    s = _basic()
    issue = _create(s, clarity, name="fixed elsewhere", code="RP-7")
    before = issue["lastUpdatedDate"]
    clarity.set_status("RP-7", "Closed")  # someone closed it in Clarity
    clarity.change(issue["_internalId"], priority="High", c_tests="x")
    got = s.get(f"{_issues_url(clarity)}/{issue['_internalId']}", timeout=5).json()
    assert (got["status"], got["priority"], got["c_tests"]) == ("CLOSED", "HIGH", "x")
    changed = s.get(
        _issues_url(clarity), params={"filter": f"(lastUpdatedDate > '{before}')"}, timeout=5
    ).json()
    assert [i["code"] for i in changed["_results"]] == ["RP-7"]
    zoned = s.get(
        _issues_url(clarity), params={"filter": f"(lastUpdatedDate > '{before}Z')"}, timeout=5
    ).json()  # dates compare as instants: a zone is fine
    assert zoned["_totalCount"] == 1
    bad = s.get(
        _issues_url(clarity), params={"filter": "(lastUpdatedDate > 'yesterday')"}, timeout=5
    )
    assert "not an ISO 8601 date" in _error(bad, 400, "API-1005")
    assert clarity.issue("RP-7")["status"] == "CLOSED"
    added = clarity.state.add_issue("PR1001", "filed by hand", priority="Low")
    assert (added["name"], added["priority"]) == ("filed by hand", "LOW")
    assert len(clarity.issues()) == 2
    with pytest.raises(KeyError, match="c_typo"):
        clarity.change("RP-7", c_typo=1)
    assert clarity.state.calls("PATCH") == []  # none of this went through the API
    s.close()


# -- faults and instrumentation --------------------------------------------------------------


def test_injected_throttle_and_unavailable(clarity: RunningClarity) -> None:
    s = _basic()
    clarity.state.throttle(1, retry_after="2")
    clarity.state.unavailable(1)
    limited = s.get(f"{clarity.api}/projects", timeout=5)
    assert limited.headers["Retry-After"] == "2"
    _error(limited, 429, "API-1042")
    down = s.get(f"{clarity.api}/projects", timeout=5)
    assert down.status_code == 503 and down.headers["Content-Type"] == "text/html"
    assert s.get(f"{clarity.api}/projects", timeout=5).status_code == 200
    s.close()


def test_outage_latency_and_random_faults(make_clarity: MakeClarity) -> None:
    from clarity_server import Faults

    server = make_clarity(outage=True, latency=0.05)
    started = time.monotonic()
    assert requests.get(f"{server.api}/projects", auth=BASIC, timeout=5).status_code == 503
    assert time.monotonic() - started >= 0.05
    server.state.outage = False
    server.state.latency = 0.0
    server.state.faults = Faults(seed=1, error=1.0)
    assert requests.get(f"{server.api}/projects", auth=BASIC, timeout=5).status_code == 500
    server.state.faults = None
    with pytest.raises(TypeError, match="unknown switch"):
        make_clarity(nonsense=True)


def test_request_record_strips_secrets(clarity: RunningClarity) -> None:
    token = requests.post(f"{clarity.api}/auth/login", auth=BASIC, timeout=5).json()["authToken"]
    requests.get(f"{clarity.api}/projects", headers={"authToken": token}, timeout=5)
    requests.get(
        f"{clarity.api}/projects",
        headers={"Authorization": f"Bearer {API_KEY}", "x-api-ppm-client": CLIENT_ID},
        timeout=5,
    )
    record = repr(clarity.state.requests)
    basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    for secret in (PASSWORD, basic, token, API_KEY):
        assert secret not in record
    assert [s.auth for s in clarity.state.requests] == ["basic", "session", "api-key"]
    assert clarity.state.requests[1].headers["authtoken"] == "***"
    assert clarity.state.requests[2].headers["authorization"] == "Bearer ***"
    assert clarity.state.requests[2].headers["x-api-ppm-client"] == CLIENT_ID


def test_answers_follow_the_contract(clarity: RunningClarity) -> None:
    s = _basic()
    pid = clarity.project_id("PR1001")
    issue = _create(s, clarity, name="shape")
    responses = [
        s.post(f"{clarity.api}/auth/login", timeout=5),
        s.get(f"{clarity.api}/describe", timeout=5),
        s.get(f"{clarity.api}/describe/issues", timeout=5),
        s.get(f"{clarity.api}/lookups/RIM_ISSUE_PRIORITY/lookupValues", timeout=5),
        s.get(f"{clarity.api}/projects", params={"limit": 1}, timeout=5),
        s.get(f"{clarity.api}/projects/{pid}", timeout=5),
        s.get(_issues_url(clarity), timeout=5),
        s.get(f"{_issues_url(clarity)}/{issue['_internalId']}", timeout=5),
        s.post(_issues_url(clarity), json={"name": "x"}, timeout=5),
        s.patch(f"{_issues_url(clarity)}/{issue['_internalId']}", json={"c_tests": "y"}),
        s.post(_issues_url(clarity), json={"name": "x", "c_nope": 1}, timeout=5),
        s.get(f"{clarity.api}/projects", params={"filter": "(x = 1)"}, timeout=5),
    ]
    problems = [p for p in map(validate_response, responses) if p]
    assert problems == []
    s.close()


# -- the integration block -------------------------------------------------------------------


@pytest.mark.parametrize("auth", ["basic", "session", "api-key", "oauth1"])
def test_integration_toml_and_login_env(
    clarity: RunningClarity, auth: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    text = clarity.integration_toml(auth=auth, timeout="5", sync={"period": 60}, name=None)
    block = tomllib.loads(text)["integrations"][0]
    assert block["kind"] == "clarity" and block["auth"] == auth and "name" not in block
    assert (block["url"], block["project_key"]) == (clarity.url, "PR1001")
    assert block["timeout"] == 5 and block["sync"] == {"period": 60}
    env = clarity.login_env(monkeypatch)
    secrets = {k: v for k, v in block.items() if isinstance(v, str) and v.startswith("${")}
    for value in secrets.values():
        assert value[2:-1] in env and value[2:-1] in ENV
    if auth in ("basic", "session"):
        assert set(secrets) == {"username", "password"}
    elif auth == "api-key":
        assert set(secrets) == {"api_key"} and block["client_id"] == CLIENT_ID
    else:
        assert set(secrets) == {"access_token", "access_token_secret"}
        assert block["consumer_key"] == OAUTH_CONSUMER
        assert block["private_key_file"] == str(clarity.private_key_file)
        assert block["request_token_url"] == clarity.request_token_url
        assert block["authorize_url"].startswith(clarity.url)
        assert block["access_token_url"] == clarity.access_token_url
    assert os.environ["CLARITY_PASSWORD"] == PASSWORD
    # the block is one the project's config loader takes, its ${VAR}s filled from login_env()
    loadable = clarity.integration_toml(auth=auth, timeout=5, sync={"period": 60})
    (tmp_path / "rp-bts.toml").write_text(loadable, encoding="utf-8")
    loaded = load_config(tmp_path, global_file=tmp_path / "none.toml", environ=env)
    integration = loaded.integrations[0]
    settings = integration.settings_as(ClaritySettings)
    assert (integration.kind, settings.auth, settings.url) == ("clarity", auth, clarity.url)
    assert (settings.timeout, settings.sync.period) == (5, 60)
    if auth in ("basic", "session"):
        assert (settings.username, settings.password) == (USER, PASSWORD)
    elif auth == "api-key":
        assert (settings.api_key, settings.client_id) == (API_KEY, CLIENT_ID)
    else:
        assert settings.access_token == env["CLARITY_ACCESS_TOKEN"]


def test_a_site_without_the_custom_attribute(clarity: RunningClarity) -> None:
    clarity.state.issue_attributes = [
        a for a in clarity.state.issue_attributes if a["name"] != "c_rp_fingerprint"
    ]
    s = _basic()
    described = s.get(f"{clarity.api}/describe/issues", timeout=5).json()
    assert "c_rp_fingerprint" not in {a["name"] for a in described["attributes"]}
    refused = s.post(_issues_url(clarity), json={"name": "x", "c_rp_fingerprint": "fp"})
    assert "c_rp_fingerprint" in _error(refused, 400, "API-1007")
    searched = s.get(_issues_url(clarity), params={"filter": "(c_rp_fingerprint = 'fp')"})
    _error(searched, 400, "API-1005")
    s.close()
