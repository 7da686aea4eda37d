"""``rp-bts integrations test`` for Jira: one precise hint per failure the reference guide lists."""

from __future__ import annotations

from typing import Any

import pytest
import requests
import responses
from jira_server import DC_USER, PASSWORD, PAT, USER, RunningJira

from rp_bts_agent.config import build_integration
from rp_bts_agent.connection import CheckOptions, CheckResult, check


def run(server: RunningJira | None, **kw: Any) -> CheckResult:
    values: dict[str, Any] = {
        "kind": "jira",
        "name": "Shop bugs",
        "url": server.url if server else "https://jira.example.com",
        "project_key": "SHOP",
        "auth": "basic",
        "username": USER if server is None or server.state.cloud else DC_USER,
        "password": PASSWORD,
        "issue_type": "Bug",
    }
    values.update(kw)
    result = check(build_integration(**values), CheckOptions())
    secret = str(values.get("password") or values.get("token") or "")
    assert secret not in result.summary + " ".join(result.hints)
    return result


@pytest.mark.parametrize("flavour", ["cloud", "dc"])
def test_ok(make_jira: Any, flavour: str) -> None:
    server = make_jira(flavour)
    result = run(server)
    assert result.ok, result
    assert ("Cloud" in result.summary) == (flavour == "cloud")
    assert "project SHOP" in result.summary


def test_pat_ok_and_expired(make_jira: Any) -> None:
    server = make_jira("dc")
    assert run(server, auth="pat", token=PAT, username="", password="").ok
    expired = run(server, auth="pat", token="expired-token-1", username="", password="")
    assert not expired.ok and "HTTP 401" in expired.summary
    assert "personal access token is wrong, expired or revoked" in expired.hints[0]


def test_context_path_missing_or_extra(make_jira: Any) -> None:
    server = make_jira("dc", context="/jira")
    missing = run(server, url=server.state.base_url)
    assert not missing.ok
    assert missing.hints == (f'Jira answers at {server.url}: set url = "{server.url}"',)
    plain = make_jira("dc")
    extra = run(plain, url=plain.url + "/jira")
    assert extra.hints == (f'Jira answers at {plain.url}: set url = "{plain.url}"',)


def test_project_name_instead_of_key(make_jira: Any) -> None:
    server = make_jira("cloud")
    result = run(server, project_key="Online Shop")
    assert not result.ok
    assert result.hints == (
        "'Online Shop' is the name of project SHOP: set project_key = \"SHOP\"",
    )
    other = run(server, project_key="NOPE")
    assert "projects this user can see: SHOP" in other.hints[-1]


def test_login_name_vs_email(make_jira: Any) -> None:
    cloud = make_jira("cloud")
    result = run(cloud, username="qa")
    assert "e-mail address, not 'qa'" in result.hints[0]
    wrong_token = run(cloud, password="not-the-token")
    assert "API token is wrong, expired or revoked" in wrong_token.hints[0]
    dc = make_jira("dc")
    result = run(dc, username="qa@example.com")
    assert "login name, not the e-mail 'qa@example.com' (try 'qa')" in result.hints[0]


def test_captcha(make_jira: Any) -> None:
    server = make_jira("dc")
    server.state.captcha = True
    result = run(server)
    assert not result.ok and "CAPTCHA" in result.summary
    assert "log in once in a browser" in result.hints[0]


def test_no_create_permission(make_jira: Any) -> None:
    server = make_jira("cloud")
    server.state.can_create = False
    result = run(server)
    assert not result.ok and "may not create issues in SHOP" in result.summary
    assert "Create Issues permission" in result.hints[0]


def test_unknown_issue_type(make_jira: Any) -> None:
    result = run(make_jira("dc"), issue_type="Defect")
    assert not result.ok and result.hints == ("set issue_type to one of: Bug, Task",)


def test_missing_settings() -> None:
    assert not run(None, url="").ok
    result = run(None, auth="pat", token="")
    assert not result.ok and "needs token" in result.summary


@responses.activate
def test_tls_failure_points_at_ca_file() -> None:
    responses.get(
        "https://jira.example.com/rest/api/2/serverInfo",
        body=requests.exceptions.SSLError("certificate verify failed"),
    )
    result = run(None)
    assert not result.ok and "TLS verification failed" in result.summary
    assert "ca_file" in result.hints[0]


@responses.activate
def test_unreachable_host() -> None:
    result = run(None)
    assert not result.ok and "cannot connect" in result.summary


def test_cli_integrations_test(
    make_jira: Any,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from rp_bts_agent.cli import main

    server = make_jira("dc")
    monkeypatch.setenv("JIRA_USER", "qa@example.com")
    monkeypatch.setenv("JIRA_TOKEN", PASSWORD)
    monkeypatch.setenv("RP_BTS_GLOBAL_CONFIG", str(tmp_path / "none.toml"))
    (tmp_path / "rp-bts.toml").write_text(
        f'[[integrations]]\nkind = "jira"\nname = "DC"\nurl = "{server.url}"\n'
        'project_key = "SHOP"\nusername = "${JIRA_USER}"\npassword = "${JIRA_TOKEN}"\n'
    )
    assert main(["--root", str(tmp_path), "integrations", "test", "DC"]) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "FAILED: Jira: login failed (HTTP 401)"
    assert "hint: Jira Data Center logs in with the login name" in out
    assert PASSWORD not in out
    monkeypatch.setenv("JIRA_USER", DC_USER)
    assert main(["--root", str(tmp_path), "integrations", "test", "DC"]) == 0
    assert capsys.readouterr().out.startswith("ok: Jira Data Center 9.12.4")
