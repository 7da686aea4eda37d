"""The e-mail server integration (kind ``email``): send over SMTP, keep what could not go.

Security ``none``, ``starttls`` or ``ssl`` (implicit TLS); certificates are verified unless
``verify_tls = false``, against ``ca_file`` when one is given. Connecting waits at most
:data:`CONNECT_TIMEOUT`, each reply at most :data:`READ_TIMEOUT`, and no wait (connect, TLS
handshake, command, reply) outlasts the run end's deadline (``time_budget``, see
:mod:`rp_bts_agent.deadline`). Every failure becomes one :class:`SendError` line without the
password; the message then waits under ``.rp-bts/outbox/pending/`` for ``rp-bts flush``.
"""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid
from typing import TYPE_CHECKING, Final

from rp_bts_agent.config_types import Integration
from rp_bts_agent.connection import CheckOptions, CheckResult
from rp_bts_agent.deadline import Spent, cap
from rp_bts_agent.kinds import SendError
from rp_bts_agent.redact import Redactor

from . import EmailSettings

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

__all__ = [
    "CONNECT_TIMEOUT",
    "READ_TIMEOUT",
    "SendError",
    "check_connection",
    "probe_message",
    "send",
    "tls_context",
]

CONNECT_TIMEOUT: Final = 5.0
READ_TIMEOUT: Final = 20.0
DEFAULT_SENDER: Final = "rp-bts <rp-bts@localhost>"
_SAFE_NAME: Final = re.compile(r"[^A-Za-z0-9._-]+")


def _settings(integration: Integration) -> EmailSettings:
    return integration.settings_as(EmailSettings)


class _BoundedTLS(ssl.SSLSocket):
    """A TLS handshake (implicit TLS, STARTTLS) waits as long as its socket would, never past
    the deadline."""

    def do_handshake(self, block: bool = False) -> None:
        self.settimeout(cap(self.gettimeout() or READ_TIMEOUT))
        super().do_handshake(block)


def tls_context(integration: Integration) -> ssl.SSLContext:
    """Verified by default (system CAs, or ``ca_file``); ``verify_tls = false`` turns it off."""
    context = ssl.create_default_context(cafile=_settings(integration).ca_file or None)
    context.sslsocket_class = _BoundedTLS
    if not _settings(integration).verify_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class _Timeouts:
    """The connect timeout for the TCP (and implicit TLS) set-up, the read timeout after it,
    each cut to the time left before the deadline: set again before every command and reply
    (smtplib writes only through ``send`` and reads only through ``getreply``)."""

    _host: str  # smtplib's: the name STARTTLS verifies the certificate against
    sock: socket.socket | None

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock: socket.socket = super()._get_socket(host, port, cap(timeout))  # type: ignore[misc]
        sock.settimeout(cap(READ_TIMEOUT))
        return sock

    def send(self, s: ReadableBuffer | str) -> None:
        self._bound()
        super().send(s)  # type: ignore[misc]

    def getreply(self) -> tuple[int, bytes]:
        self._bound()
        reply: tuple[int, bytes] = super().getreply()  # type: ignore[misc]
        return reply

    def _bound(self) -> None:
        if self.sock is not None:
            self.sock.settimeout(cap(READ_TIMEOUT))


class _SMTP(_Timeouts, smtplib.SMTP):
    pass


class _SMTPSSL(_Timeouts, smtplib.SMTP_SSL):
    pass


def _where(integration: Integration) -> str:
    return f"{_settings(integration).host}:{_settings(integration).port}"


def _open(integration: Integration) -> smtplib.SMTP:
    """Connected, TLS set up as configured, logged in when ``auth = true``."""
    if not _settings(integration).host:
        raise SendError(f"e-mail integration {integration.name!r} has no host; set `host`")
    security = _settings(integration).security
    client: smtplib.SMTP
    if security == "ssl":
        client = _SMTPSSL(timeout=CONNECT_TIMEOUT, context=tls_context(integration))
    else:
        client = _SMTP(timeout=CONNECT_TIMEOUT)
    # smtplib sets it only when the constructor connects (which would leak a socket on error)
    client._host = _settings(integration).host
    try:
        client.connect(_settings(integration).host, _settings(integration).port)
        client.ehlo()
        if security == "starttls":
            if not client.has_extn("starttls"):
                raise SendError(
                    f"{_where(integration)} does not offer STARTTLS; "
                    "set security = 'ssl' or 'none' to match the server"
                )
            client.starttls(context=tls_context(integration))
            client.ehlo()
        if _settings(integration).auth:
            if not client.has_extn("auth"):
                raise SendError(
                    f"{_where(integration)} offers no AUTH"
                    + (" before TLS; set security = 'starttls'" if security == "none" else "")
                )
            client.login(_settings(integration).username, _settings(integration).password)
    except BaseException:
        _close(client)
        raise
    return client


def _close(client: smtplib.SMTP) -> None:
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        client.close()


def _explain(integration: Integration, exc: BaseException) -> str:
    where = _where(integration)
    if isinstance(exc, SendError):
        return str(exc)
    if isinstance(exc, Spent):
        return f"{where}: the time budget is spent"
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return (
            f"{where} refused the login of {_settings(integration).username!r} ({exc.smtp_code}); "
            "check username and password"
        )
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        refused = ", ".join(sorted(exc.recipients))
        return f"{where} refused the recipients {refused}"
    if isinstance(exc, smtplib.SMTPSenderRefused):
        return f"{where} refused the sender {exc.sender!r} ({exc.smtp_code}); check `sender`"
    if isinstance(exc, smtplib.SMTPResponseException):
        raw = exc.smtp_error
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        return f"{where} answered {exc.smtp_code} {text}".strip()
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"TLS certificate of {where} not trusted ({exc.verify_message}); "
            "set ca_file to your CA bundle"
        )
    if isinstance(exc, ssl.SSLError):
        return f"TLS with {where} failed ({exc.reason or exc}); check `security` and `port`"
    if isinstance(exc, (socket.timeout, TimeoutError)) or "timed out" in str(exc):
        return f"{where} did not answer in time; check host, port and firewall"
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return f"{where} closed the connection; check `security` and `port`"
    if isinstance(exc, OSError):
        return f"cannot reach {where} ({exc.strerror or exc}); check host and port"
    return f"{where}: {type(exc).__name__}: {exc}"


def _one_line(integration: Integration, exc: BaseException) -> str:
    text = " ".join(_explain(integration, exc).split())
    return Redactor(integration.secrets()).redact(text)


def send(integration: Integration, message: EmailMessage) -> None:
    """Deliver ``message`` to its To / Cc / Bcc addresses; :class:`SendError` when it cannot."""
    try:
        client = _open(integration)
        try:
            client.send_message(message)
        finally:
            _close(client)
    except (SendError, smtplib.SMTPException, OSError, ValueError) as exc:
        raise SendError(_one_line(integration, exc)) from None


#: the From name when ``sender_name`` is not set: who really sends it (ReportPortal's integration
#: docs name no default; ``sender_name = "Report Portal"`` gives its look)
DEFAULT_SENDER_NAME = "rp-bts"


def sender_of(integration: Integration) -> str:
    """The From header: ``sender_name <sender>``; the address defaults to the login user
    when that is an address (ReportPortal's default sender)."""
    settings = _settings(integration)
    address = settings.sender or (settings.username if "@" in settings.username else "")
    if not address:
        return ""
    return formataddr((settings.sender_name or DEFAULT_SENDER_NAME, address))


def probe_message(integration: Integration, to: str) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = f"rp-bts: test message from the e-mail integration {integration.name!r}"
    message["From"] = sender_of(integration) or DEFAULT_SENDER
    message["To"] = to
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid("rp-bts")
    message.set_content(
        f"This is a test message from rp-bts.\n\nServer: {_where(integration)} "
        f"({_settings(integration).security})\nIntegration: {integration.name}\n"
    )
    return message


def check_connection(integration: Integration, options: CheckOptions) -> CheckResult:
    """ReportPortal sends a test message when the integration is saved; without ``--to``, log in."""
    where = f"{_where(integration)} ({_settings(integration).security})"
    try:
        if options.to:
            send(integration, probe_message(integration, options.to.strip()))
            return CheckResult(True, f"sent a test message to {options.to.strip()} via {where}")
        try:
            client = _open(integration)
        except (SendError, smtplib.SMTPException, OSError, ValueError) as exc:
            raise SendError(_one_line(integration, exc)) from None
        _close(client)
    except SendError as exc:
        return CheckResult(False, str(exc), ("add --to ADDRESS to send a test message",))
    login = (
        f", logged in as {_settings(integration).username!r}" if _settings(integration).auth else ""
    )
    return CheckResult(
        True, f"connected to {where}{login}", ("add --to ADDRESS to send a test message",)
    )
