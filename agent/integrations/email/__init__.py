"""An SMTP server for the run summaries (ReportPortal's e-mail server integration)."""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import parseaddr
from typing import TYPE_CHECKING, Any

from rp_bts_agent.config_types import ConfigError
from rp_bts_agent.kinds import Kind, Mailer
from rp_bts_agent.settings import SettingsContext, TlsSettings, choice, flag, number, secret, text

if TYPE_CHECKING:
    from email.message import EmailMessage

    from rp_bts_agent.config_types import Integration
    from rp_bts_agent.connection import CheckOptions, CheckResult

#: the port each security mode listens on by default
_PORTS = {"none": 25, "starttls": 587, "ssl": 465}


@dataclass(frozen=True, slots=True)
class EmailSettings(TlsSettings):
    """``kind = "email"``: where mail goes out, how it logs in, and who it is from."""

    host: str = text()
    port: int = number(0, "default: 25, 587 or 465 by security")
    security: str = choice("none", "starttls", "ssl", default="starttls")
    #: a bool here, unlike the trackers' auth method: SMTP either logs in or does not
    auth: bool = flag(False, "log in with username and password")
    username: str = text()
    password: str = secret()
    sender: str = text(help="the From address (default: username when it is an address)")
    sender_name: str = text(help="the From display name (ReportPortal's default sender name)")
    allow_plaintext_auth: bool = flag(False, "allow a login over a connection without TLS")

    @classmethod
    def complete(cls, values: dict[str, Any], context: SettingsContext) -> dict[str, Any]:
        security = values.get("security", "starttls")
        if not values.get("port"):
            values["port"] = _PORTS[security]
        if values.get("auth") and security == "none" and not values.get("allow_plaintext_auth"):
            raise ConfigError(
                context.file,
                f"{context.loc}.auth",
                'a login without TLS sends the password in clear; use security = "starttls"'
                ' or "ssl", or set allow_plaintext_auth = true',
            )
        sender = values.get("sender")
        if sender:
            name, address = parseaddr(sender)
            if "@" not in address:
                raise ConfigError(
                    context.file,
                    f"{context.loc}.sender",
                    f"{sender!r} is not an e-mail address; put the address in sender"
                    " and a display name in sender_name",
                )
            values["sender"] = address
            if name and not values.get("sender_name"):
                values["sender_name"] = name
        return values


def _check(integration: Integration, options: CheckOptions) -> CheckResult:
    from .smtp import check_connection

    return check_connection(integration, options)


def _send(integration: Integration, message: EmailMessage) -> None:
    from .smtp import send

    send(integration, message)


def _sender(integration: Integration) -> str:
    from .smtp import sender_of

    return sender_of(integration)


KIND = Kind(
    name="email",
    settings=EmailSettings,
    summary="an SMTP server for run summaries",
    check=_check,
    mail=Mailer(send=_send, sender=_sender),
)
