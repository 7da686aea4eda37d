"""OAuth 1.0a (RSA-SHA1, Jira application links): the tracker and the connection test sign
requests that the test server verifies with oauthlib."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jira_server import (  # noqa: F401 (fixtures)
    OAUTH_CONSUMER,
    RunningJira,
    jira_contract_fixture,
    make_jira_fixture,
)

from rp_bts_agent.config_types import Integration
from rp_bts_agent.connection import CheckOptions, check
from rp_bts_agent.trackers.base import Body, IssueDraft, TrackerError
from rp_bts_agent.trackers.jira import JiraTracker

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
    return Integration(
        kind="jira",
        name="DC oauth",
        url=server.url,
        project_key="SHOP",
        auth="oauth1",
        extra={
            "consumer_key": OAUTH_CONSUMER,
            "private_key_file": str(pem),
            "access_token": token,
            "access_token_secret": "",
        },
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
