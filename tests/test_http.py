"""The one HTTP layer: an integration's CA wins over the environment's, the deadline bounds
every call, and a certificate failure says to set ca_file."""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import certifi
import pytest
import requests
import trustme
from urllib3.exceptions import InsecureRequestWarning

from rp_bts_agent import http
from rp_bts_agent.config import build_integration
from rp_bts_agent.connection import CheckOptions, check
from rp_bts_agent.deadline import before_each_send
from rp_bts_agent.settings import TlsSettings
from rp_bts_agent.tracker import TrackerError


class _Whoami(BaseHTTPRequestHandler):
    """Answers every GET as Sauce Labs' whoami would, after ``delay`` seconds."""

    delay = 0.0

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        time.sleep(self.delay)
        body = json.dumps({"username": "alice"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def private_ca(tmp_path: Path) -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def https_url(private_ca: trustme.CA) -> Iterator[str]:
    """An HTTPS server on 127.0.0.1 whose certificate only the private CA signs."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Whoami)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    private_ca.issue_cert("127.0.0.1").configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def ca_file(private_ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "corp-ca.pem"
    private_ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def system_bundle_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """What most CI images set: the system's bundle, which does not know the private CA."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    monkeypatch.setenv("CURL_CA_BUNDLE", certifi.where())


@pytest.mark.usefixtures("system_bundle_in_env")
def test_ca_file_wins_over_requests_ca_bundle(https_url: str, ca_file: str) -> None:
    with requests.Session() as plain:  # what requests alone does: the environment wins
        plain.verify = ca_file
        with pytest.raises(requests.exceptions.SSLError):
            plain.get(https_url, timeout=5)
    with http.new_session(TlsSettings(ca_file=ca_file)) as session:
        assert session.get(https_url).json() == {"username": "alice"}


@pytest.mark.usefixtures("system_bundle_in_env")
def test_an_integration_with_a_private_ca_works_under_a_ci_bundle(
    https_url: str, ca_file: str
) -> None:
    sauce = build_integration(
        "sauce", "Sauce", username="alice", access_key="k-123", api_url=https_url, ca_file=ca_file
    )
    result = check(sauce, CheckOptions())
    assert result.ok, result.summary


def test_a_certificate_failure_names_ca_file(https_url: str) -> None:
    with (
        http.new_session(TlsSettings()) as session,
        pytest.raises(requests.RequestException) as info,
    ):
        session.get(https_url)
    error = http.transport_error("Jira", "server info", info.value)
    assert "certificate" in str(error) and "ca_file" in str(error)
    assert not error.retryable  # a replay will not fix a certificate


def test_verify_tls_false_wins_too(https_url: str, system_bundle_in_env: None) -> None:
    session = http.new_session(TlsSettings(verify_tls=False))
    with session, pytest.warns(InsecureRequestWarning):  # the user chose it, and is told
        assert session.get(https_url).ok


def test_the_deadline_bounds_every_call(https_url: str, ca_file: str) -> None:
    _Whoami.delay = 3.0
    try:
        with http.new_session(TlsSettings(ca_file=ca_file), timeout=60) as session:
            session.deadline = time.monotonic() + 0.5
            started = time.monotonic()
            with pytest.raises(requests.RequestException) as slow:
                session.get(https_url)
            assert time.monotonic() - started < 1.5  # not the call's own 60 s
            assert "timed out" in str(http.transport_error("Jira", "search", slow.value))
            time.sleep(0.2)
            with pytest.raises(http.BudgetSpent) as info:  # no call starts after it
                session.get(https_url)
    finally:
        _Whoami.delay = 0.0
    error = http.transport_error("Jira", "search", info.value)
    assert "time budget" in str(error) and error.retryable


def test_every_request_made_while_filing_renews_what_tells_a_replay_when_it_left(
    https_url: str, ca_file: str
) -> None:
    """The pipeline's per-request hook (its outbox lease's renewal) runs before each request
    leaves, in the calling context only: a killed run's lease then says when it last sent."""
    calls: list[str] = []
    with http.new_session(TlsSettings(ca_file=ca_file)) as session:
        with before_each_send(lambda: calls.append("sent")):
            session.get(https_url)
            session.get(https_url)
        session.get(https_url)
    assert calls == ["sent", "sent"]


@pytest.mark.parametrize(
    ("status", "retryable", "transient"),
    [(400, False, False), (401, False, False), (404, False, False), (429, True, False),
     (500, True, True), (502, True, True), (503, True, False), (504, True, True)],
)  # fmt: skip
def test_status_errors_say_what_a_replay_can_fix(
    status: int, retryable: bool, transient: bool
) -> None:
    error = http.status_error("Rally", "create", status, ["Name is required"], "check project")
    assert isinstance(error, TrackerError)
    assert str(error) == f"Rally create: HTTP {status}: Name is required (check project)"
    assert (error.retryable, error.transient) == (retryable, transient)
