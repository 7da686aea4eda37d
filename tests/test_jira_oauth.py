"""OAuth 1.0a (RSA-SHA1, Jira application links): the tracker and the connection test sign
requests that the test server verifies with oauthlib."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jira_server import OAUTH_CONSUMER, RunningJira

from rp_bts_agent.config import build_integration
from rp_bts_agent.config_types import Integration
from rp_bts_agent.connection import CheckOptions, check
from rp_bts_agent.integrations.jira.tracker import JiraTracker
from rp_bts_agent.tracker import Body, IssueDraft, TrackerError

TOKEN = "oauth-access-token-31337"


@pytest.fixture
def oauth_jira(make_jira: Any, tmp_path: Path) -> tuple[RunningJira, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = tmp_path / "jira_privatekey.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = make_jira("dc")
    server.state.oauth_public_key = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    server.state.oauth_tokens.add(TOKEN)
    return server, pem


def oauth_integration(server: RunningJira, pem: Path, token: str = TOKEN) -> Integration:
    return build_integration(
        kind="jira",
        name="DC oauth",
        url=server.url,
        project_key="SHOP",
        auth="oauth1",
        consumer_key=OAUTH_CONSUMER,
        private_key_file=str(pem),
        access_token=token,
        access_token_secret="",
    )


def test_tracker_signs_every_request(oauth_jira: tuple[RunningJira, Path]) -> None:
    server, pem = oauth_jira
    tracker = JiraTracker(oauth_integration(server, pem))
    created = tracker.create(IssueDraft("s", Body(()), "fp-1", labels=("fp-1",)))
    assert created.key == "SHOP-1"
    assert tracker.find(["fp-1"])["fp-1"].key == "SHOP-1"
    tracker.close()


def test_wrong_token_and_missing_key(oauth_jira: tuple[RunningJira, Path], tmp_path: Path) -> None:
    server, pem = oauth_jira
    tracker = JiraTracker(oauth_integration(server, pem, token="revoked-token-9"))
    with pytest.raises(TrackerError, match="HTTP 401") as info:
        tracker.find(["x"])
    assert "revoked-token-9" not in str(info.value)
    tracker.close()
    missing = JiraTracker(oauth_integration(server, tmp_path / "nope.pem"))
    with pytest.raises(TrackerError, match="cannot read private_key_file"):
        missing.find(["x"])


def test_connection_check(oauth_jira: tuple[RunningJira, Path]) -> None:
    server, pem = oauth_jira
    ok = check(oauth_integration(server, pem), CheckOptions())
    assert ok.ok, ok
    bad = check(oauth_integration(server, pem, token="revoked-token-9"), CheckOptions())
    assert not bad.ok and "OAuth access token was refused" in bad.hints[0]


# -- rp-bts integrations oauth ----------------------------------------------------------------


class _Stdin:
    """The user at the terminal: Enter after the application link, then the code."""

    def __init__(self, server: RunningJira, code: str) -> None:
        self.server, self.code, self.calls = server, code, 0

    def readline(self) -> str:
        self.calls += 1
        if self.calls == 1:
            return "\n"
        self.server.state.approve("verified-123")  # the user allows access in the browser
        return self.code + "\n"


def _project(root: Path, server: RunningJira, pem: Path | None) -> None:
    key = f'private_key_file = "{pem}"\n' if pem else ""
    (root / "rp-bts.toml").write_text(
        '# mine\n[[integrations]]\nkind = "jira"\nname = "DC oauth"\n'
        f'url = "{server.url}"\nproject_key = "SHOP"\n{key}',
        encoding="utf-8",
    )


def test_oauth_dance_stores_token_as_env_secret(
    oauth_jira: tuple[RunningJira, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import sys

    from rp_bts_agent.cli import main
    from rp_bts_agent.config import load_config

    server, pem = oauth_jira
    root = tmp_path / "project"
    root.mkdir()
    monkeypatch.setenv("RP_BTS_GLOBAL_CONFIG", str(tmp_path / "none.toml"))
    _project(root, server, pem)
    (root / ".env").write_text("OTHER=1\n", encoding="utf-8")
    (root / ".env").chmod(0o644)  # readable by all before: 0600 after, whatever it was
    monkeypatch.setattr(sys, "stdin", _Stdin(server, "verified-123"))
    assert main(["--root", str(root), "integrations", "oauth", "DC oauth"]) == 0
    out = capsys.readouterr().out
    assert "Consumer key: rp-bts" in out and "-----BEGIN PUBLIC KEY-----" in out
    assert f"{server.url}/plugins/servlet/oauth/authorize?oauth_token=request-" in out
    (token,) = server.state.oauth_tokens - {TOKEN}
    text = (root / "rp-bts.toml").read_text(encoding="utf-8")
    assert text.startswith("# mine\n") and token not in text
    assert 'access_token = "${JIRA_DC_OAUTH_ACCESS_TOKEN}"' in text
    env = (root / ".env").read_text(encoding="utf-8")
    assert f"JIRA_DC_OAUTH_ACCESS_TOKEN='{token}'" in env
    assert (root / ".env").stat().st_mode & 0o077 == 0
    assert env.startswith("OTHER=1\n")
    monkeypatch.delenv("JIRA_DC_OAUTH_ACCESS_TOKEN")
    monkeypatch.delenv("JIRA_DC_OAUTH_ACCESS_TOKEN_SECRET")
    integration = load_config(root).integration("DC oauth")
    assert integration is not None and integration.settings.auth == "oauth1"
    assert check(integration, CheckOptions()).ok  # the stored token works


def test_oauth_creates_a_key_and_explains_a_refusal(
    oauth_jira: tuple[RunningJira, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import sys

    from rp_bts_agent.cli import main

    server, _ = oauth_jira
    monkeypatch.setenv("RP_BTS_GLOBAL_CONFIG", str(tmp_path / "none.toml"))
    _project(tmp_path, server, None)
    monkeypatch.setattr(sys, "stdin", _Stdin(server, "x"))
    # the new public key is not in the application link (the server has another)
    assert main(["--root", str(tmp_path), "integrations", "oauth", "DC oauth"]) == 1
    out = capsys.readouterr().out
    created = tmp_path / ".rp-bts" / "oauth" / "dc_oauth.pem"
    assert f"Created the RSA key {created}" in out
    assert created.stat().st_mode & 0o077 == 0
    assert "FAILED: OAuth with" in out and "consumer key 'rp-bts'" in out
