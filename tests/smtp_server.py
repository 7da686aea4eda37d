"""Real SMTP servers on 127.0.0.1 (aiosmtpd) for the e-mail tests, with certificates from trustme.

Three set-ups, as the issue asks: STARTTLS with AUTH required, implicit TLS, and plain. Each
fixture yields a :class:`Server` whose ``inbox`` holds what arrived, parsed, with its envelope.
"""

from __future__ import annotations

import email
import email.policy
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

USER = "mailer"
#: a canary: tests assert it appears in no output, file or message.
PASSWORD = "canary-Pa55w0rd-7f3c"


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    message: email.message.EmailMessage


@dataclass
class Inbox:
    received: list[Received] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), raw, parsed))
        return "250 OK"


@dataclass
class Server:
    host: str
    port: int
    security: str
    ca_file: str
    inbox: Inbox
    auth: bool = False

    def integration_toml(self, name: str = "Team mail", **extra: str) -> str:
        lines = [
            "[[integrations]]",
            'kind = "email"',
            f'name = "{name}"',
            f'host = "{self.host}"',
            f"port = {self.port}",
            f'security = "{self.security}"',
            f'ca_file = "{self.ca_file}"',
            'sender = "QA Bot <qa@example.com>"',
        ]
        if self.auth:
            lines += ["auth = true", f'username = "{USER}"', 'password = "${SMTP_PASSWORD}"']
        lines += [f"{k} = {v}" for k, v in extra.items()]
        return "\n".join(lines) + "\n"


def _authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
    ok = (
        isinstance(data, LoginPassword)
        and data.login == USER.encode()
        and data.password == PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def ca_file(tls_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(path))
    return path


def _server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


def _run(controller: Controller, server: Server) -> Iterator[Server]:
    controller.start()
    try:
        yield server
    finally:
        controller.stop()


@pytest.fixture
def plain_server(ca_file: Path) -> Iterator[Server]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    yield from _run(controller, Server("127.0.0.1", port, "none", str(ca_file), inbox))


@pytest.fixture
def starttls_server(tls_ca: trustme.CA, ca_file: Path) -> Iterator[Server]:
    """STARTTLS required before anything, then AUTH required before MAIL."""
    inbox = Inbox()
    port = free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=_server_context(tls_ca),
        require_starttls=True,
        auth_required=True,
        auth_require_tls=True,
        authenticator=_authenticate,
    )
    server = Server("127.0.0.1", port, "starttls", str(ca_file), inbox, auth=True)
    yield from _run(controller, server)


@pytest.fixture
def ssl_server(tls_ca: trustme.CA, ca_file: Path) -> Iterator[Server]:
    """Implicit TLS (SMTPS)."""
    inbox = Inbox()
    port = free_port()
    controller = Controller(
        inbox, hostname="127.0.0.1", port=port, ssl_context=_server_context(tls_ca)
    )
    yield from _run(controller, Server("127.0.0.1", port, "ssl", str(ca_file), inbox))
